"""The job queue's interface: what the API asks of it and what a worker asks of it.

Two implementations answer it: `RedisJobQueue` (Redis Streams with a consumer group; many API
processes and workers on many machines) and `InProcessJobQueue` (the embedded default: one process,
one worker thread). A job is taken with `claim`, kept with `renew` (a lease a worker must renew
while it runs the job) and ended with `finish`. A claim whose lease is not renewed in time, because
its worker died, is handed to the next worker that asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge_deploy.errors import EdgeDeployError, TransientError
from edge_deploy.jobs.model import Job

CREATED, REPLAYED, DUPLICATE = "created", "replayed", "duplicate"
# What a lease renewal finds: still ours; ours and a cancel was asked for; taken over by another
# worker (a later attempt); or gone, because the queue lost the job (Redis restarted without its data).
OWNED, LOST, CANCEL, VANISHED = "owned", "lost", "cancel", "vanished"


def queued_cancel_error(by: str) -> str:
    """The error of a run cancelled before a worker took it, naming who cancelled it."""
    return f"cancelled before it started, by {by}" if by else "cancelled before it started"


class JobQueueError(EdgeDeployError):
    """The queue refused a request; the message says why."""


class JobQueueUnavailable(JobQueueError, TransientError):
    """The queue's store (Redis) did not answer; a later retry may succeed."""


class JobNotFound(JobQueueError):
    """No job has this run id."""


class JobAlreadyEnded(JobQueueError):
    """The job has already ended, so it cannot be cancelled."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"run {job.run_id} has already ended ({job.state})")
        self.job = job


class ReplayedRunGone(JobQueueError):
    """The Idempotency-Key names a run whose job the queue no longer holds (expired, or evicted by Redis)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"this Idempotency-Key was used for run {run_id}, whose job the queue no longer holds "
            "(its record, if it got one, is under /deployments); use a new key to deploy again"
        )
        self.run_id = run_id


class IdempotencyKeyReused(JobQueueError):
    """The Idempotency-Key was used before for a different request."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"this Idempotency-Key was already used for a different request (run {run_id}); "
            "use a new key for a new request"
        )
        self.run_id = run_id


class QuotaExceeded(JobQueueError):
    """The caller already has as many queued and running runs as it may."""

    def __init__(self, principal: str, active: int, limit: int) -> None:
        super().__init__(
            f"{principal} already has {active} queued or running runs (at most {limit}, EDGE_API_MAX_ACTIVE_RUNS); "
            "wait for one to end"
        )
        self.principal, self.active, self.limit = principal, active, limit


class DeploymentInProgress(JobQueueError):
    """The same model commit and targets are already queued or running with other inputs."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"this model commit is already being deployed to these targets by run {run_id} with other inputs; "
            "wait for it to end or cancel it"
        )
        self.run_id = run_id


@dataclass(frozen=True)
class Submission:
    job: Job
    outcome: str  # CREATED, REPLAYED (same Idempotency-Key) or DUPLICATE (same deployment already active)

    @property
    def created(self) -> bool:
        return self.outcome == CREATED


@dataclass(frozen=True)
class Claim:
    """A job a worker holds, with what the queue needs to renew and end that hold."""

    job: Job
    attempt: int
    worker: str
    entry_id: str = ""  # the stream entry (Redis)
    exhausted: bool = False  # taken up too often: the worker must fail it without running it


@dataclass(frozen=True)
class QueueDepth:
    queued: int
    running: int


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    executor: str
    executor_ok: bool
    executor_detail: str
    run_id: str = ""  # the job it runs now
    seen_at: float = 0.0  # unix time of its last heartbeat


class JobQueue(Protocol):
    where: str  # a human description, without credentials

    # -- the API's side --
    def submit(
        self,
        job: Job,
        deployment_key: str,
        deployment_fingerprint: str,
        idempotency_key: str | None,
        max_active: int = 0,
    ) -> Submission:
        """Queue `job`, unless the idempotency key names an earlier run (REPLAYED) or the same
        deployment is already queued or running (DUPLICATE). Raises IdempotencyKeyReused or
        DeploymentInProgress when the earlier request differs, and QuotaExceeded when `max_active`
        (0: no limit) of the job's principal's runs are already queued or running."""
        ...

    def replayed(self, idempotency_key: str, request_fingerprint: str) -> Job | None:
        """The job an earlier request with this key made (IdempotencyKeyReused if the request differs)."""
        ...

    def get(self, run_id: str) -> Job | None: ...

    def request_cancel(self, run_id: str, by: str = "") -> Job:
        """A queued job is cancelled at once; a running one is marked for its worker to stop. `by`
        names the caller, whom the job and its record name."""
        ...

    def depth(self) -> QueueDepth: ...

    def outcomes(self) -> dict[str, int]:
        """How many jobs ended in each state, since the queue's store was created."""
        ...

    def ping(self) -> None: ...

    def live_workers(self) -> list[WorkerInfo]: ...

    # -- a worker's side --
    def claim(self, worker: str, block_seconds: float) -> Claim | None: ...

    def renew(self, claim: Claim) -> str:
        """Extend the lease: OWNED, CANCEL (owned, and a cancel was asked for), LOST (taken over) or
        VANISHED (the queue no longer holds the job or its entry: see `reestablish`)."""
        ...

    def reestablish(self, claim: Claim) -> Claim:
        """Write a vanished job back, held by this claim's worker and attempt, with a new entry that a
        worker takes over if this one dies; raises JobQueueError when another attempt holds it now."""
        ...

    def release(self, claim: Claim) -> None:
        """Give the job back for another worker to take at once (this worker is shutting down)."""
        ...

    def finish(self, claim: Claim, state: str, error: str = "") -> bool:
        """End the job; False when the claim was lost meanwhile (the new holder ends it)."""
        ...

    def heartbeat(self, info: WorkerInfo) -> None: ...

    def forget_dead_consumers(self) -> list[str]:
        """Forget workers gone long ago that hold nothing; returns their names."""
        ...

    def close(self) -> None: ...
