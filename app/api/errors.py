"""Error answers: every 4xx and 5xx has the same JSON body (`ErrorBody`) naming what to fix.

Validation errors name the field (`body.targets[1]`, `query.limit`, `header Idempotency-Key`), an
unreachable dependency is a 503 with Retry-After (a retry can cure it), and anything unexpected is
logged with its traceback and answered with a plain 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.schemas import PLAIN_TEXT_PATTERN, PLAIN_TEXT_PROBLEM, ErrorBody, FieldProblem
from app.core.auth import AuthError, AuthUnavailable
from edge_deploy.errors import TransientError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}
        self.problem = message


def invalid(field: str, problem: str) -> ApiError:
    """422 naming the field: `message` is "field: problem", the field's problem is the bare text."""
    error = ApiError(422, f"{field}: {problem}", field)
    error.problem = problem
    return error


def error_response(
    status: int, message: str, field: str | None = None, problems: list[FieldProblem] | None = None, headers=None
) -> JSONResponse:
    body = ErrorBody(
        status=status, error=_CODES.get(status, "error"), message=message, field=field, problems=problems or []
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'targets', 1) -> 'body.targets[1]'; ('header', 'idempotency-key') -> 'header Idempotency-Key'."""
    if location and location[0] == "header":
        return "header " + "-".join(part.capitalize() for part in str(location[1]).replace("_", "-").split("-"))
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _validation_problem(error: dict[str, Any]) -> FieldProblem:
    location = [part for part in error.get("loc", ()) if part not in ("function-after[_one_source()]",)]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == PLAIN_TEXT_PATTERN:
        message = PLAIN_TEXT_PROBLEM
    if error.get("type") == "json_invalid":
        message = f"the body is not valid JSON: {error.get('ctx', {}).get('error', message)}"
        location = ["body"]
    return FieldProblem(field=field_path(location), message=message)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_validation_problem(error) for error in exc.errors()]
        first = problems[0] if problems else FieldProblem(field="body", message="invalid")
        return error_response(422, f"{first.field}: {first.message}", first.field, problems)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        problems = [FieldProblem(field=exc.field, message=exc.problem)] if exc.field else []
        return error_response(exc.status, exc.message, exc.field, problems, exc.headers)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        challenge = 'Bearer realm="edge-deploy"'
        if exc.bearer_error:
            challenge += f', error="{exc.bearer_error}"'
        return error_response(exc.status, exc.message, headers={"WWW-Authenticate": challenge})

    @app.exception_handler(AuthUnavailable)
    async def _auth_unavailable(request: Request, exc: AuthUnavailable) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(TransientError)
    async def _unavailable(request: Request, exc: TransientError) -> JSONResponse:
        log.warning("%s %s: 503: %s", request.method, request.url.path, exc)
        return error_response(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(redis.RedisError)
    async def _redis_unavailable(request: Request, exc: redis.RedisError) -> JSONResponse:
        # the live status is read straight from Redis (app.core.service): its outage is a 503, not a 500
        log.warning("%s %s: 503: Redis: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        message = f"the live status (Redis) does not answer: {type(exc).__name__}"
        return error_response(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 400 and request.method in ("POST", "PUT", "PATCH"):
            # FastAPI's answer to a body it cannot even decode (e.g. not UTF-8): the body is to blame
            problem = FieldProblem(field="body", message="the body is not valid JSON (UTF-8 text)")
            return error_response(422, f"body: {problem.message}", "body", [problem])
        if exc.status_code == 404 and message == "Not Found":
            message = (
                f"no such endpoint: {request.method} {request.url.path} (the API is under /api/v1, see /openapi.json)"
            )
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal error; the service log has the details")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route may give, for the OpenAPI document."""
    descriptions = {
        401: "No or an unknown bearer token",
        403: "The token lacks the scope",
        404: "Not found",
        409: "Conflict",
        413: "Body too large",
        422: "Invalid input; `field` names what to fix",
        429: "The caller has as many queued and running runs as it may (EDGE_API_MAX_ACTIVE_RUNS); see Retry-After",
        503: "A dependency (Redis, the record store, lakeFS, the issuer's keys) does not answer; retry later",
    }
    return {status: {"model": ErrorBody, "description": descriptions[status]} for status in statuses}
