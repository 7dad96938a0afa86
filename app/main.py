"""The application: `create_app()` builds it; `edge-deploy serve` runs it with uvicorn.

    GET /healthz   the process answers (no token)
    GET /readyz    Redis (or the in-process queue) and the record store answer; 503 naming what is
                   not ready; the workers are reported beside, not required (no token)
    GET /metrics   Prometheus text (the `read` scope, unless EDGE_API_PUBLIC_METRICS=true)
    /api/v1/...    the API (app/api/v1.py); GET /openapi.json describes it (the `read` scope)

Without Redis the queue, the live status and one worker live in this process (the embedded
default); the worker runs each job in a child process like any other worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.api import v1
from app.api.errors import error_response, install_error_handlers, responses
from app.api.schemas import Check, Health, Readiness
from app.core.auth import READ
from app.core.config import ServiceSettings, is_loopback
from app.core.middleware import BodySizeLimit, RequestObserver
from app.core.service import Service
from edge_deploy import __version__
from edge_deploy.errors import EdgeDeployError

log = logging.getLogger(__name__)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.open(settings)
        app.state.service = service
        if service.runs_worker:
            service.start_worker()
        try:
            yield
        finally:
            await service.feed.close()
            service.close()

    app = FastAPI(
        title="edge-deploy",
        version=__version__,
        summary="Deploy OpenMMLab models from lakeFS to validated ONNX edge images, and ask what a device should run.",
        lifespan=lifespan,
        # The document is served below, behind a token like every endpoint but health; no docs UI
        # (it would load its scripts from a CDN, and could not fetch the document without a token).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(v1.router)
    _health_routes(app, settings)
    _openapi_route(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestObserver)
    if not settings.auth_configured:
        app.middleware("http")(_loopback_clients_only)
    return app


async def _loopback_clients_only(request: Request, call_next):
    """No authentication configured: whatever address was bound, only local callers get answers."""
    client = request.client.host if request.client else ""
    if client and not is_loopback(client):
        return error_response(403, "no authentication is configured, so only loopback clients are served")
    return await call_next(request)


def _openapi_route(app: FastAPI) -> None:
    @app.get(
        "/openapi.json",
        include_in_schema=False,
        dependencies=[Depends(v1.known_query_parameters), Depends(v1.needs(READ))],
    )
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())


def _health_routes(app: FastAPI, settings: ServiceSettings) -> None:
    checked = [Depends(v1.known_query_parameters)]

    @app.get("/healthz", response_model=Health, dependencies=checked, tags=["health"], summary="The process answers")
    async def healthz() -> Health:  # on the event loop: answers while every worker thread is busy
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Something the service needs does not answer"}},
        dependencies=checked,
        tags=["health"],
        summary="The queue and the record store answer (the workers are reported, not required)",
    )
    def readyz(request: Request) -> JSONResponse:
        readiness = _readiness(request.app.state.service)
        return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)

    metrics_caller = checked if settings.public_metrics else [*checked, Depends(v1.needs(READ))]

    @app.get(
        "/metrics",
        response_class=Response,
        dependencies=metrics_caller,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
            **responses(401, 403),
        },
        tags=["health"],
        summary="Prometheus metrics",
    )
    def metrics(request: Request) -> Response:
        service: Service = request.app.state.service
        return Response(service.metrics.render(), media_type=service.metrics.content_type)


def _readiness(service: Service) -> Readiness:
    """Ready when this process can answer: the queue and the record store. Workers are reported, not
    required: with every worker down, queueing still works and devices still get `releases/latest`
    (a readiness that needed a worker would take every API pod out of its Service)."""
    checks = {
        "queue": _check(lambda: (service.queue.ping(), service.queue.where)[1]),
        "records": _check(lambda: (service.records.get("readyz-probe"), service.records.where)[1]),
    }
    workers = _check(lambda: _executor_detail(service))
    return Readiness(ready=all(check.ok for check in checks.values()), checks=checks, workers=workers)


def _check(probe) -> Check:
    try:
        return Check(ok=True, detail=probe())
    except (EdgeDeployError, OSError) as exc:
        return Check(ok=False, detail=str(exc))


def _executor_detail(service: Service) -> str:
    workers = service.queue.live_workers()
    able = [worker for worker in workers if worker.executor_ok]
    if not able:
        seen = "; ".join(f"{w.name}: {w.executor_detail}" for w in workers) or "no worker has reported in"
        raise EdgeDeployError(f"no worker can run jobs ({seen})")
    executors = ", ".join(sorted({worker.executor for worker in able}))
    return f"{len(able)} worker(s) ready (executor {executors})"
