"""The fence of a job process: before each side effect it checks that its attempt still holds the job.

A worker that loses its lease (Redis down longer than the lease, a worker too slow to renew) learns
it at its next renewal, and meanwhile another worker may already run the same job. So the job
process itself checks, just before it pushes images, publishes to lakeFS or writes the record,
that the job still names its worker and attempt (the fencing token the worker hands it in
EDGE_JOB_FENCE). Another attempt holding the job stops this one with `FencedOff`, before the side
effect: two attempts never both act. While Redis does not answer, the check waits (up to
FENCE_PATIENCE_SECONDS): nobody can take the job over while the queue is down, and acting without
knowing is what the fence is for. A job the queue lost altogether passes: its worker writes it back
as this very attempt.

Without EDGE_JOB_FENCE (a run started by `pyflyte run`, a schedule or the Flyte cluster, where
the execution's name is already unique) there is nothing to check.
"""

from __future__ import annotations

import logging
import os
import time

from edge_deploy.config import Settings
from edge_deploy.errors import EdgeDeployError

log = logging.getLogger(__name__)

FENCE_VARIABLE = "EDGE_JOB_FENCE"  # "<worker name>|<attempt>"
FENCE_PATIENCE_SECONDS = 120.0


class FencedOff(EdgeDeployError):
    """Another attempt holds the job: this one must not act."""


def fence_token(worker: str, attempt: int) -> str:
    return f"{worker}|{attempt}"


def check_fence(run_id: str, action: str, settings: Settings, env: dict[str, str] | None = None) -> None:
    """Return when this process's attempt still holds run `run_id`; raise FencedOff naming `action` if not."""
    token = (os.environ if env is None else env).get(FENCE_VARIABLE)
    if not token or settings.redis_url is None:
        return
    worker, _, attempt = token.rpartition("|")
    holder = _holder(run_id, settings)
    if holder is None:
        return  # the queue lost the job (Redis restarted without its data): no one else can hold it
    if holder != (worker, attempt, "running"):
        who, attempts, state = holder
        raise FencedOff(
            f"run {run_id}: attempt {attempt} of worker {worker} no longer holds the job "
            f"(it is {state}, attempt {attempts} of worker {who or '-'}); stopped before {action}"
        )


def _holder(run_id: str, settings: Settings) -> tuple[str, str, str] | None:
    import redis

    from edge_deploy.jobs.redis_queue import job_key
    from edge_deploy.status.redis_status import redis_client

    assert settings.redis_url is not None
    client = redis_client(settings.redis_url)
    deadline, pause = time.monotonic() + FENCE_PATIENCE_SECONDS, 0.5
    while True:
        try:
            worker, attempts, state = client.hmget(job_key(run_id), "worker", "attempts", "state")
            return None if state is None else (worker or "", attempts or "", state)
        except (redis.RedisError, OSError) as exc:
            if time.monotonic() >= deadline:
                raise FencedOff(f"run {run_id}: cannot tell whether this attempt still holds the job: {exc}") from None
            log.warning("run %s: the queue does not answer the fence check (%s); waiting", run_id, exc)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
