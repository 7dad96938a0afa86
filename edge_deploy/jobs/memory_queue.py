"""The job queue in this process's memory: the embedded default (no REDIS_URL), one worker thread.

Same answers as the Redis queue for submit, idempotency, duplicates and cancel. There is no lease
to lose: the only worker lives and dies with this process, and so do queued jobs. An ended job (and
the idempotency keys that named it) is forgotten after ENDED_RETENTION_SECONDS, or sooner when more
than MAX_ENDED_JOBS have ended, so a long-lived process does not grow; its record stays for good.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from edge_deploy.jobs.model import ACTIVE_STATES, CANCELLED, QUEUED, RUNNING, Job
from edge_deploy.jobs.queue import (
    CANCEL,
    CREATED,
    DUPLICATE,
    LOST,
    OWNED,
    REPLAYED,
    Claim,
    DeploymentInProgress,
    IdempotencyKeyReused,
    JobAlreadyEnded,
    JobNotFound,
    QueueDepth,
    QuotaExceeded,
    ReplayedRunGone,
    Submission,
    WorkerInfo,
    queued_cancel_error,
)
from edge_deploy.records.model import utc_timestamp

MAX_ENDED_JOBS = 1000
ENDED_RETENTION_SECONDS = 24 * 3600


@dataclass
class _Entry:
    job: Job
    deployment_key: str
    deployment_fingerprint: str
    idempotency_keys: list[str] = field(default_factory=list)


class InProcessJobQueue:
    where = "in-process queue"

    def __init__(self, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts
        self._changed = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._waiting: deque[str] = deque()
        self._active: dict[str, str] = {}  # deployment key -> run id
        self._idempotency: dict[str, tuple[str, str]] = {}  # key -> (run id, request fingerprint)
        self._outcomes: Counter[str] = Counter()
        self._workers: dict[str, WorkerInfo] = {}
        self._ended: deque[tuple[float, str]] = deque()  # (monotonic time, run id), oldest first

    # -- the API's side ---------------------------------------------------------------------------

    def submit(
        self,
        job: Job,
        deployment_key: str,
        deployment_fingerprint: str,
        idempotency_key: str | None,
        max_active: int = 0,
    ) -> Submission:
        fingerprint = job.request.request_fingerprint()
        with self._changed:
            self._forget_ended()
            if idempotency_key and idempotency_key in self._idempotency:
                run_id, seen = self._idempotency[idempotency_key]
                if seen != fingerprint:
                    raise IdempotencyKeyReused(run_id)
                if run_id not in self._entries:
                    raise ReplayedRunGone(run_id)
                return Submission(self._entries[run_id].job, REPLAYED)
            current = self._entries.get(self._active.get(deployment_key, ""))
            if current is not None and current.job.state in ACTIVE_STATES:
                if current.deployment_fingerprint != deployment_fingerprint:
                    raise DeploymentInProgress(current.job.run_id)
                self._remember(idempotency_key, current.job.run_id, fingerprint)
                return Submission(current.job, DUPLICATE)
            if max_active > 0:
                mine = [e.job for e in self._entries.values() if e.job.principal == job.principal]
                active = sum(1 for other in mine if other.state in ACTIVE_STATES)
                if active >= max_active:
                    raise QuotaExceeded(job.principal, active, max_active)
            self._entries[job.run_id] = _Entry(job, deployment_key, deployment_fingerprint)
            self._waiting.append(job.run_id)
            self._active[deployment_key] = job.run_id
            self._remember(idempotency_key, job.run_id, fingerprint)
            self._changed.notify_all()
            return Submission(job, CREATED)

    def _remember(self, key: str | None, run_id: str, fingerprint: str) -> None:
        if key:
            self._idempotency[key] = (run_id, fingerprint)
            self._entries[run_id].idempotency_keys.append(key)

    def replayed(self, idempotency_key: str, request_fingerprint: str) -> Job | None:
        with self._changed:
            seen = self._idempotency.get(idempotency_key)
            if seen is None:
                return None
            if seen[1] != request_fingerprint:
                raise IdempotencyKeyReused(seen[0])
            if seen[0] not in self._entries:
                raise ReplayedRunGone(seen[0])
            return self._entries[seen[0]].job

    def get(self, run_id: str) -> Job | None:
        with self._changed:
            entry = self._entries.get(run_id)
            return entry.job if entry else None

    def request_cancel(self, run_id: str, by: str = "") -> Job:
        with self._changed:
            entry = self._entries.get(run_id)
            if entry is None:
                raise JobNotFound(f"no run {run_id!r}")
            if entry.job.state == QUEUED:
                self._waiting.remove(run_id)
                self._end(entry, CANCELLED, queued_cancel_error(by), cancel_requested=True, cancelled_by=by)
            elif entry.job.state == RUNNING:
                entry.job = entry.job.updated(cancel_requested=True, cancelled_by=by)
            else:
                raise JobAlreadyEnded(entry.job)
            return entry.job

    def depth(self) -> QueueDepth:
        with self._changed:
            running = sum(1 for entry in self._entries.values() if entry.job.state == RUNNING)
            return QueueDepth(queued=len(self._waiting), running=running)

    def outcomes(self) -> dict[str, int]:
        with self._changed:
            return dict(self._outcomes)

    def ping(self) -> None:
        return None

    def live_workers(self) -> list[WorkerInfo]:
        with self._changed:
            horizon = time.time() - 30
            return [info for info in self._workers.values() if info.seen_at >= horizon]

    # -- a worker's side --------------------------------------------------------------------------

    def claim(self, worker: str, block_seconds: float) -> Claim | None:
        deadline = time.monotonic() + block_seconds
        with self._changed:
            while not self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
            entry = self._entries[self._waiting.popleft()]
            attempt = entry.job.attempts + 1
            entry.job = entry.job.updated(state=RUNNING, attempts=attempt, worker=worker, started_at=utc_timestamp())
            return Claim(entry.job, attempt, worker, exhausted=attempt > self.max_attempts)

    def renew(self, claim: Claim) -> str:
        with self._changed:
            job = self._entries[claim.job.run_id].job
            if job.worker != claim.worker or job.attempts != claim.attempt or job.state != RUNNING:
                return LOST
            return CANCEL if job.cancel_requested else OWNED

    def reestablish(self, claim: Claim) -> Claim:
        return claim  # this queue lives and dies with its only worker: a job cannot vanish from it

    def release(self, claim: Claim) -> None:
        with self._changed:
            entry = self._entries[claim.job.run_id]
            entry.job = entry.job.updated(state=QUEUED, worker="", attempts=claim.attempt - 1)
            self._waiting.appendleft(claim.job.run_id)
            self._changed.notify_all()

    def finish(self, claim: Claim, state: str, error: str = "") -> bool:
        with self._changed:
            entry = self._entries[claim.job.run_id]
            job = entry.job
            if job.worker != claim.worker or job.attempts != claim.attempt or job.state != RUNNING:
                return False
            self._end(entry, state, error)
            return True

    def heartbeat(self, info: WorkerInfo) -> None:
        with self._changed:
            self._workers[info.name] = WorkerInfo(**{**info.__dict__, "seen_at": time.time()})

    def forget_dead_consumers(self) -> list[str]:
        return []  # one worker, in this process

    def close(self) -> None:
        return None

    def _end(self, entry: _Entry, state: str, error: str, **changes) -> None:
        entry.job = entry.job.updated(state=state, error=error, ended_at=utc_timestamp(), **changes)
        if self._active.get(entry.deployment_key) == entry.job.run_id:
            del self._active[entry.deployment_key]
        self._outcomes[state] += 1
        self._ended.append((time.monotonic(), entry.job.run_id))
        self._forget_ended()

    def _forget_ended(self) -> None:
        horizon = time.monotonic() - ENDED_RETENTION_SECONDS
        while self._ended and (len(self._ended) > MAX_ENDED_JOBS or self._ended[0][0] < horizon):
            _, run_id = self._ended.popleft()
            entry = self._entries.pop(run_id, None)
            for key in entry.idempotency_keys if entry else []:
                if self._idempotency.get(key, ("",))[0] == run_id:
                    del self._idempotency[key]
