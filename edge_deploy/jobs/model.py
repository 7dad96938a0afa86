"""What the job queue carries: a deployment request, the job made of it, and the ids that keep it unique.

A job is one request to run the `deploy_model` workflow. Its run id is chosen when it is queued and
is the run id of everything the run leaves behind (live status, events, the deployment record, the
Flyte execution name), so a job that is taken up again after its worker died still ends with one
record. Run ids are 20 characters, a lower-case letter then letters and digits, the shape of the
execution names Flyte generates, so the same id is a valid Flyte execution name.

Two fingerprints decide what counts as "the same":
- `request_fingerprint`: the request exactly as asked; an `Idempotency-Key` replay must match it.
- `deployment_key`: model repository + prefix + source commit + targets; while a job with this key
  is queued or running, the same deployment is not started again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edge_deploy.errors import EdgeDeployError
from edge_deploy.records.model import utc_timestamp

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
JOB_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE_STATES = (QUEUED, RUNNING)
ENDED_STATES = (SUCCEEDED, FAILED, CANCELLED)

RUN_ID_LENGTH = 20
_RUN_ID_TAIL = string.ascii_lowercase + string.digits


class JobFormatError(EdgeDeployError):
    """A stored job or a job message is malformed; the message names the field."""


def new_run_id() -> str:
    """A fresh run id: 'e' and 19 random lower-case letters and digits (about 98 bits)."""
    return "e" + "".join(secrets.choice(_RUN_ID_TAIL) for _ in range(RUN_ID_LENGTH - 1))


def is_run_id(text: str) -> bool:
    return (
        len(text) == RUN_ID_LENGTH
        and text[0] in string.ascii_lowercase
        and all(character in _RUN_ID_TAIL for character in text)
    )


@dataclass(frozen=True)
class DeploymentRequest:
    """The inputs of `deploy_model` as a client gave them (targets already resolved to device classes)."""

    repo: str = ""
    ref: str = "main"
    prefix: str = "model/"
    local_dir: str = ""  # a directory on the worker's machine (embedded mode), instead of lakeFS
    targets: tuple[str, ...] = ()  # device classes; empty: the model manifest's own targets
    repository: str = ""
    publish_branch: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # DeployOptions as JSON

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentRequest:
        try:
            return cls(**{**data, "targets": tuple(data.get("targets") or ())})
        except TypeError as exc:
            raise JobFormatError(f"deployment request: {exc}") from None

    @property
    def source(self) -> str:
        return (
            f"local directory {self.local_dir}" if self.local_dir else f"lakefs://{self.repo}/{self.ref}/{self.prefix}"
        )

    def request_fingerprint(self) -> str:
        return _digest(self.to_dict())


def deployment_key(request: DeploymentRequest, source_commit: str) -> str:
    """Same model version to the same targets: one job at a time (see the module docstring)."""
    model = request.local_dir or request.repo
    return _digest(
        {"model": model, "prefix": request.prefix, "commit": source_commit, "targets": sorted(request.targets)}
    )


def deployment_fingerprint(request: DeploymentRequest, source_commit: str) -> str:
    """What the run would produce: a duplicate with other options is a conflict, not the same run."""
    described = request.to_dict()
    described.pop("ref")  # "main" and the commit it points at are the same deployment
    return _digest({**described, "commit": source_commit, "targets": sorted(request.targets)})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    """One queued deployment and how far it got."""

    run_id: str
    request: DeploymentRequest
    source_commit: str  # the lakeFS commit the ref pointed at when queued (local: the directory digest)
    principal: str = ""  # who asked: a token name or a JWT subject, never a token
    state: str = QUEUED
    submitted_at: str = ""
    started_at: str = ""
    ended_at: str = ""
    attempts: int = 0  # how many times a worker took it up
    worker: str = ""  # the worker that holds (or last held) it
    error: str = ""
    cancel_requested: bool = False
    cancelled_by: str = ""  # who asked for the cancel (a token name or a JWT subject)

    def __post_init__(self) -> None:
        if self.state not in JOB_STATES:
            raise JobFormatError(f"job {self.run_id}: state must be one of {', '.join(JOB_STATES)}, got {self.state!r}")
        if not self.submitted_at:
            object.__setattr__(self, "submitted_at", utc_timestamp())

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def cancel_reason(self) -> str:
        """The error a cancelled run ends with, naming who cancelled it."""
        return f"cancelled by {self.cancelled_by}" if self.cancelled_by else "cancelled by request"

    def updated(self, **changes: Any) -> Job:
        return replace(self, **changes)

    def to_fields(self) -> dict[str, str]:
        """Flat string fields, as a Redis hash holds them."""
        return {
            "run_id": self.run_id,
            "request": json.dumps(self.request.to_dict(), sort_keys=True),
            "source_commit": self.source_commit,
            "principal": self.principal,
            "state": self.state,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "attempts": str(self.attempts),
            "worker": self.worker,
            "error": self.error,
            "cancel": "1" if self.cancel_requested else "0",
            "cancelled_by": self.cancelled_by,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Job:
        try:
            return cls(
                run_id=fields["run_id"],
                request=DeploymentRequest.from_dict(json.loads(fields["request"])),
                source_commit=fields.get("source_commit", ""),
                principal=fields.get("principal", ""),
                state=fields["state"],
                submitted_at=fields.get("submitted_at", ""),
                started_at=fields.get("started_at", ""),
                ended_at=fields.get("ended_at", ""),
                attempts=int(fields.get("attempts") or 0),
                worker=fields.get("worker", ""),
                error=fields.get("error", ""),
                cancel_requested=fields.get("cancel") == "1",
                cancelled_by=fields.get("cancelled_by", ""),
            )
        except (KeyError, ValueError) as exc:
            raise JobFormatError(f"stored job {fields.get('run_id', '?')!r} is malformed: {exc!r}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_fields())

    @classmethod
    def from_json(cls, text: str) -> Job:
        try:
            return cls.from_fields(json.loads(text))
        except ValueError as exc:
            raise JobFormatError(f"job message is not JSON: {exc}") from None
