"""lakeFS and S3-gateway failures as this project's errors, each naming what to fix.

5xx, 429, resets and timeouts become `TransientError` (worth a retry); every other answer fails at
once with the operation (repository, ref, path) and a hint for the usual causes.
"""

from __future__ import annotations

import json

import botocore.exceptions
import urllib3
from lakefs_sdk.exceptions import ApiException
from s3transfer.exceptions import RetriesExceededError

from edge_deploy.errors import NotFoundError, StorageError, TransientError

API_HINTS = {
    401: "check LAKEFS_ACCESS_KEY_ID and LAKEFS_SECRET_ACCESS_KEY",
    403: "the lakeFS user lacks permission for this repository or branch",
    404: "check the repository, ref and path",
}
# What lakeFS's S3 gateway answers when it refuses a request (pkg/gateway/errors/errors.go).
GATEWAY_HINTS = {
    "SignatureDoesNotMatch": "the S3 gateway rejected the request signature: check LAKEFS_SECRET_ACCESS_KEY",
    "InvalidAccessKeyId": "the S3 gateway does not know the access key: check LAKEFS_ACCESS_KEY_ID",
    "AccessDenied": "check LAKEFS_ACCESS_KEY_ID (lakeFS denies unknown keys) and the user's permissions",
    "RequestTimeTooSkewed": "this machine's clock differs from lakeFS's by more than 15 minutes",
    "NoSuchBucket": "check the repository name (and that writes go to a branch)",
    "NoSuchKey": "check the repository, ref and path",
    # a HEAD answer has no body, so only the status is known
    "403": "check LAKEFS_ACCESS_KEY_ID and LAKEFS_SECRET_ACCESS_KEY, and the user's permissions",
    "404": "check the repository, ref and path",
}


class ConflictError(StorageError):
    """lakeFS answered 409: the branch (or tag, or repository) exists already, or a merge conflicts."""


class MergeConflictError(ConflictError):
    """A merge lakeFS refused with 409: both sides changed the same paths differently."""


def status_error(what: str, status: int, body: str) -> Exception:
    message = api_message(body)
    if status >= 500 or status == 429:
        return TransientError(f"{what}: lakeFS answered {status}: {message}")
    hint = API_HINTS.get(status, "")
    error_type = {404: NotFoundError, 409: ConflictError}.get(status, StorageError)
    return error_type(f"{what}: lakeFS answered {status}: {message}" + (f" ({hint})" if hint else ""))


def api_error(what: str, exc: ApiException) -> Exception:
    return status_error(what, exc.status or 0, exc.body or exc.reason or "")


def connection_error(what: str, endpoint: str, exc: Exception) -> TransientError:
    return TransientError(f"{what}: lakeFS at {endpoint} unreachable: {exc}")


CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def api_message(body: str) -> str:
    try:
        return str(json.loads(body).get("message", body))[:300]
    except (ValueError, AttributeError):
        return body[:300]


def s3_error(what: str, exc: Exception) -> Exception:
    """A failure of a transfer through lakeFS's S3 gateway."""
    what = f"{what} (S3 gateway)"
    if isinstance(exc, RetriesExceededError):
        # s3transfer already re-fetched a body that kept arriving short or reset
        return TransientError(f"{what}: the body kept arriving incomplete: {exc.last_exception}")
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "") or str(status)
        if status >= 500 or status == 429:
            return TransientError(f"{what}: lakeFS answered {status} {code}")
        hint = GATEWAY_HINTS.get(code, "")
        error_type = NotFoundError if status == 404 else StorageError
        return error_type(f"{what}: lakeFS answered {status} {code}" + (f" ({hint})" if hint else ""))
    if isinstance(exc, (botocore.exceptions.BotoCoreError, *CONNECTION_ERRORS, OSError)):
        return TransientError(f"{what}: {exc}")
    return StorageError(f"{what}: {exc}")
