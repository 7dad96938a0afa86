"""Live status (per-run progress and an event feed) and deployment locks.

`open_status(settings)`: Redis when REDIS_URL is set, wrapped so that a Redis failure costs one
warning and status continues in-process; without REDIS_URL, in-process status (one per process,
so `follow` works within the process). `open_locks(settings)`: Redis locks, or local file locks in
EDGE_WORK_DIR/locks when Redis is not configured or not answering.
"""

from __future__ import annotations

import logging

from edge_deploy.config import Settings
from edge_deploy.status.backend import InProcessStatus, StatusBackend
from edge_deploy.status.best_effort import BestEffortStatus
from edge_deploy.status.events import RunProgress, StageEvent
from edge_deploy.status.lock import DeploymentLocks, LockHeldError, LockTarget
from edge_deploy.status.tracker import PIPELINE_STAGES, RunTracker

log = logging.getLogger(__name__)

# Without Redis, every component of this process shares one in-process status.
PROCESS_STATUS = InProcessStatus()


def open_status(settings: Settings) -> StatusBackend:
    if settings.redis_url is None:
        log.info("live status: in-process (REDIS_URL is not set)")
        return PROCESS_STATUS
    from edge_deploy.status.redis_status import RedisStatus

    primary = RedisStatus.from_url(settings.redis_url)
    log.info("live status: %s", primary.where)
    return BestEffortStatus(primary, PROCESS_STATUS)


def open_locks(settings: Settings) -> DeploymentLocks:
    lock_dir = settings.work_dir / "locks"
    if settings.redis_url is None:
        return DeploymentLocks(lock_dir)
    from edge_deploy.status.redis_status import redis_client, redis_where

    return DeploymentLocks(lock_dir, redis_client(settings.redis_url), redis_where(settings.redis_url))


__all__ = [
    "PIPELINE_STAGES",
    "PROCESS_STATUS",
    "BestEffortStatus",
    "DeploymentLocks",
    "InProcessStatus",
    "LockHeldError",
    "LockTarget",
    "RunProgress",
    "RunTracker",
    "StageEvent",
    "StatusBackend",
    "open_locks",
    "open_status",
]
