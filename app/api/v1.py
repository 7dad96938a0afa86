"""The endpoints under /api/v1. Reads need the `read` scope, queueing and cancelling need `deploy`.

POST /deployments                        queue a deployment (202; Idempotency-Key honoured)
GET  /deployments                        records, newest first: model, device_class, status, cursor
GET  /deployments/{run_id}               one run's record
GET  /models/{model}/releases/latest     which image a device class should run (newest passing)
GET  /runs/{run_id}                      live status: state, stage, progress, stages
GET  /runs/{run_id}/events               Server-Sent Events of the run (resumable: Last-Event-ID)
POST /runs/{run_id}/cancel               cancel a queued or running run
GET  /platforms                          the device classes
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse

from app.api import submission
from app.api.errors import ApiError, invalid, responses
from app.api.events import ENDED, RUNNING, UNKNOWN, is_event_id, run_event_stream
from app.api.schemas import (
    DEVICE_CLASS_PATTERN,
    PLAIN_TEXT_PATTERN,
    REPO_PATTERN,
    RUN_ID_PATTERN,
    AcceptanceView,
    DeploymentAccepted,
    DeploymentCreate,
    Links,
    PlatformView,
    RecordPageView,
    RecordView,
    ReleaseView,
    RunView,
    StageView,
    record_view,
    request_view,
    validation_view,
)
from app.core.auth import DEPLOY, READ, Principal
from app.core.service import Service
from edge_deploy.jobs.model import CANCELLED, Job
from edge_deploy.jobs.queue import (
    DUPLICATE,
    REPLAYED,
    DeploymentInProgress,
    IdempotencyKeyReused,
    JobAlreadyEnded,
    JobNotFound,
    JobQueueUnavailable,
    QuotaExceeded,
    ReplayedRunGone,
)
from edge_deploy.records import DeploymentRecord, RecordFormatError, RecordQuery, RecordStoreError
from edge_deploy.records.pages import PageCursor, find_page, latest_release
from edge_deploy.status.events import STAGE_FAILED, STAGE_FINISHED, STAGE_STARTED, RunProgress, StageEvent
from edge_deploy.status.tracker import RunTracker

PREFIX = "/api/v1"
QUOTA_RETRY_SECONDS = 60  # a run takes minutes: asking again sooner is no use


async def known_query_parameters(request: Request) -> None:
    """A query parameter the endpoint does not take is an error, not ignored: `?modle=x` would
    otherwise silently list everything."""
    route = request.scope.get("route")
    known = {field.alias for field in getattr(getattr(route, "dependant", None), "query_params", [])}
    for name in request.query_params:
        if name not in known:
            takes = ", ".join(sorted(known)) or "none"
            raise invalid(f"query.{name}", f"unknown query parameter (this endpoint takes: {takes})")


router = APIRouter(prefix=PREFIX, dependencies=[Depends(known_query_parameters)])
bearer = HTTPBearer(auto_error=False, description="An API token (edt_...) or an OIDC access token (a JWT)")

RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run id")]


def service_of(request: Request) -> Service:
    return request.app.state.service


def needs(scope: str):
    """A dependency: the caller, who must hold `scope` (see app.core.auth)."""

    # async: it runs on the event loop, so a slow key server never holds the endpoints' threads
    async def caller(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        auth = service_of(request).auth
        principal = await auth.authenticate(request.headers.get("authorization"))
        request.state.principal = principal
        auth.require(principal, scope)
        return principal

    return caller


def links(run_id: str) -> Links:
    return Links(
        run=f"{PREFIX}/runs/{run_id}",
        events=f"{PREFIX}/runs/{run_id}/events",
        deployment=f"{PREFIX}/deployments/{run_id}",
        cancel=f"{PREFIX}/runs/{run_id}/cancel",
    )


# -- deployments --------------------------------------------------------------------------------


@router.post(
    "/deployments",
    status_code=202,
    response_model=DeploymentAccepted,
    responses=responses(401, 403, 409, 413, 422, 429, 503),
    summary="Queue a deployment of one model version",
)
def create_deployment(
    body: DeploymentCreate,
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(needs(DEPLOY))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="A retried request with the same key (and body) gets the same run back.",
        ),
    ] = None,
) -> DeploymentAccepted:
    service = service_of(request)
    wanted = submission.deployment_request(body, service, principal)
    key = submission.idempotency_scope(principal, idempotency_key)
    try:
        earlier = service.queue.replayed(key, wanted.request_fingerprint()) if key else None
        if earlier is not None:
            return _accepted(earlier, response, replayed=True, deduplicated=False)
        commit = submission.resolve_source(wanted, service)
        queued = submission.submit(wanted, commit, principal, key, service)
    except IdempotencyKeyReused as exc:
        raise invalid("header Idempotency-Key", str(exc)) from None
    except QuotaExceeded as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": str(QUOTA_RETRY_SECONDS)}) from None
    except ReplayedRunGone as exc:
        raise ApiError(409, str(exc), "header Idempotency-Key", {"Location": links(exc.run_id).deployment}) from None
    except DeploymentInProgress as exc:
        raise ApiError(409, str(exc), headers={"Location": links(exc.run_id).run}) from None
    return _accepted(
        queued.job, response, replayed=queued.outcome == REPLAYED, deduplicated=queued.outcome == DUPLICATE
    )


def _accepted(job: Job, response: Response, replayed: bool, deduplicated: bool) -> DeploymentAccepted:
    response.headers["Location"] = links(job.run_id).run
    return DeploymentAccepted(
        run_id=job.run_id,
        state=job.state,
        source_commit=job.source_commit,
        replayed=replayed,
        deduplicated=deduplicated,
        links=links(job.run_id),
    )


@router.get(
    "/deployments",
    response_model=RecordPageView,
    responses=responses(401, 403, 422, 503),
    summary="Deployment records, newest first, a page at a time",
)
def list_deployments(
    request: Request,
    _caller: Annotated[Principal, Depends(needs(READ))],
    model: Annotated[str | None, Query(pattern=REPO_PATTERN, description="lakeFS repository of the model")] = None,
    device_class: Annotated[str | None, Query(pattern=DEVICE_CLASS_PATTERN, description="has an image for it")] = None,
    status: Annotated[Literal["running", "succeeded", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=512, pattern=PLAIN_TEXT_PATTERN, description="next_cursor of the previous page")
    ] = None,
) -> RecordPageView:
    service = service_of(request)
    if device_class is not None:
        _known_device_class(device_class, service, "query.device_class")
    try:
        after = PageCursor.decode(cursor) if cursor is not None else None
    except RecordFormatError as exc:
        raise invalid("query.cursor", str(exc).removeprefix("cursor: ")) from None
    page = find_page(service.records, RecordQuery(model_repo=model, state=status), device_class, after, limit)
    next_cursor = page.next_cursor.encode() if page.next_cursor else None
    root = service.settings.local_model_root
    return RecordPageView(items=[record_view(record, root) for record in page.records], next_cursor=next_cursor)


@router.get(
    "/deployments/{run_id}",
    response_model=RecordView,
    responses=responses(401, 403, 404, 422, 503),
    summary="One run's deployment record",
)
def get_deployment(
    run_id: RunIdPath, request: Request, _caller: Annotated[Principal, Depends(needs(READ))]
) -> RecordView:
    service = service_of(request)
    record = service.records.get(run_id)
    if record is not None:
        return record_view(record, service.settings.local_model_root)
    job = service.queue.get(run_id)
    if job is not None:
        raise ApiError(404, f"run {run_id} has no deployment record yet: it is {job.state}; see {links(run_id).run}")
    raise ApiError(404, f"no run {run_id!r}")


@router.get(
    "/models/{model}/releases/latest",
    response_model=ReleaseView,
    responses=responses(401, 403, 404, 422, 503),
    summary="The image a device class should run for a model: its newest passing release",
)
def latest_model_release(
    request: Request,
    _caller: Annotated[Principal, Depends(needs(READ))],
    model: Annotated[str, Path(pattern=REPO_PATTERN, description="lakeFS repository of the model")],
    device_class: Annotated[str, Query(pattern=DEVICE_CLASS_PATTERN, description="The device's class")],
    prefix: Annotated[
        str | None, Query(max_length=1024, pattern=PLAIN_TEXT_PATTERN, description="Only the model under this prefix")
    ] = None,
) -> ReleaseView:
    service = service_of(request)
    _known_device_class(device_class, service, "query.device_class")
    signed = service.settings.base.signing_configured
    found = latest_release(service.records, model, device_class, prefix, signed=signed)
    if found is None:
        which = "passing, accepted" + (", signed" if signed else "")
        raise ApiError(404, f"no {which} release of model {model!r} has an image for device class {device_class!r}")
    record, image = found
    return ReleaseView(
        model=model,
        device_class=device_class,
        platform=image.platform,
        reference=image.reference,
        digest=image.digest,
        pinned_reference=f"{image.reference.rsplit(':', 1)[0]}@{image.digest}",
        run_id=record.run_id,
        model_commit=record.model.commit_id,
        released_at=record.updated_at,
        validation=validation_view(record),
        acceptance=AcceptanceView.model_validate(asdict(image.acceptance)),
        signature=image.signature,
        provenance=image.provenance,
    )


def _known_device_class(name: str, service: Service, field: str) -> None:
    if name not in service.matrix.platforms:
        raise invalid(field, f"unknown device class {name!r}; {service.matrix.describe_supported()}")


# -- runs ---------------------------------------------------------------------------------------


@router.get(
    "/runs/{run_id}", response_model=RunView, responses=responses(401, 403, 404, 422, 503), summary="Live status"
)
def get_run(run_id: RunIdPath, request: Request, _caller: Annotated[Principal, Depends(needs(READ))]) -> RunView:
    return _run_view(service_of(request), run_id)


def _run_view(service: Service, run_id: str) -> RunView:
    job = service.queue.get(run_id)
    progress = service.status.progress(run_id)
    events = service.status.events(run_id)
    record = service.records.get(run_id) if job is None or job.ended else None
    if job is None and progress is None and record is None and not events:
        raise ApiError(404, f"no run {run_id!r}")
    state = job.state if job else (record.status.state if record else progress.state if progress else "running")
    if state == "running" and progress is not None and progress.state != "running":
        state = progress.state  # the run has ended; its job ends a moment later, when its process exits
    return RunView(
        run_id=run_id,
        state=state,
        stage=progress.stage if progress else (record.status.failed_stage if record else None),
        progress=_fraction(progress, record),
        source_commit=job.source_commit if job else (record.model.commit_id if record else None),
        principal=job.principal if job else None,
        submitted_at=job.submitted_at if job else (record.created_at if record else None),
        started_at=job.started_at or None if job else None,
        ended_at=(job.ended_at or None) if job else (record.updated_at if record and state != "running" else None),
        attempts=job.attempts if job else None,
        cancel_requested=job.cancel_requested if job else False,
        cancelled_by=(job.cancelled_by or None) if job else None,
        error=(job.error or None) if job else (record.status.error if record else progress.error if progress else None),
        stages=_stages(events),
        request=request_view(job, service.settings.local_model_root) if job else None,
    )


def _fraction(progress: RunProgress | None, record: DeploymentRecord | None) -> float:
    if progress is not None:
        return min(max(progress.progress, 0.0), 1.0)
    return 1.0 if record is not None and record.status.state == "succeeded" else 0.0


def _stages(events: list[StageEvent]) -> list[StageView]:
    """The last word on each stage, in the order the stages started."""
    stages: dict[str, StageView] = {}
    for event in events:
        if event.kind == STAGE_STARTED:
            stages[event.stage] = StageView(stage=event.stage, state="running")
        elif event.kind in (STAGE_FINISHED, STAGE_FAILED):
            state = "finished" if event.kind == STAGE_FINISHED else "failed"
            stages[event.stage] = StageView(stage=event.stage, state=state, seconds=event.seconds, error=event.error)
    return list(stages.values())


@router.get(
    "/runs/{run_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `id` is the feed position, `event` the kind, `data` the event as JSON",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **responses(401, 403, 404, 422, 503),
    },
    summary="The run's events as Server-Sent Events",
)
async def run_events(
    run_id: RunIdPath,
    request: Request,
    _caller: Annotated[Principal, Depends(needs(READ))],
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=41, description="Resume after this event (the `id` last received)"),
    ] = None,
) -> EventSourceResponse:
    service = service_of(request)
    if last_event_id is not None and not is_event_id(last_event_id):
        expected = "<milliseconds>-<sequence>, each below 2^64"
        raise invalid("header Last-Event-ID", f"not an event id ({expected}): {last_event_id!r}")
    await run_in_threadpool(_run_view, service, run_id)  # 404 before the stream starts

    async def state() -> str:
        return await run_in_threadpool(_run_state, service, run_id)

    stream = run_event_stream(service.feed, run_id, last_event_id or "0-0", state)
    return EventSourceResponse(stream, ping=15, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _run_state(service: Service, run_id: str) -> str:
    try:
        job = service.queue.get(run_id)
        if job is not None:  # a job ends only after its end event is out (edge_deploy.jobs.worker)
            return ENDED if job.ended else RUNNING
        record = service.records.get(run_id)
    except (JobQueueUnavailable, RecordStoreError):
        return RUNNING  # unknown for now: the stream goes on, and looks again later
    if record is None:
        return UNKNOWN
    return RUNNING if record.status.state == "running" else ENDED


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=RunView,
    responses=responses(401, 403, 404, 409, 422, 503),
    summary="Cancel a queued run at once, or ask a running one's worker to stop it",
)
def cancel_run(run_id: RunIdPath, request: Request, caller: Annotated[Principal, Depends(needs(DEPLOY))]) -> RunView:
    service = service_of(request)
    try:
        job = service.queue.request_cancel(run_id, by=caller.name)
    except JobNotFound:
        raise ApiError(
            404, f"no queued or running run {run_id!r} (only runs queued through this API can be cancelled)"
        ) from None
    except JobAlreadyEnded as exc:
        raise ApiError(409, f"run {run_id} has already ended ({exc.job.state}); nothing to cancel") from None
    if job.state == CANCELLED:  # it never started: its followers learn it here
        RunTracker(service.status, run_id).failed("queued", job.error or "cancelled before it started")
    return _run_view(service, run_id)


# -- platforms ----------------------------------------------------------------------------------


@router.get("/platforms", response_model=list[PlatformView], responses=responses(401, 403), summary="Device classes")
def list_platforms(request: Request, _caller: Annotated[Principal, Depends(needs(READ))]) -> list[PlatformView]:
    return [
        PlatformView(
            name=spec.name,
            description=spec.description,
            platform=str(spec.platform),
            default_for_platform=spec.default_for_platform,
            execution_providers=list(spec.execution_providers),
            supported=spec.supported,
            reason=spec.reason,
        )
        for spec in service_of(request).matrix.platforms.values()
    ]
