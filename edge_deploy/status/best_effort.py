"""Best-effort status: Redis while it answers, in-process from its first failure on.

Live status is a convenience for people watching; a deployment must never fail or stall because
Redis is down. The first Redis error is logged as ONE warning and every later call (in this
wrapper) goes to the in-process backend without trying Redis again, so a dead Redis costs one
connection timeout, not one per status call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import redis

from edge_deploy.status.backend import InProcessStatus, StatusBackend
from edge_deploy.status.events import RunProgress, StageEvent

log = logging.getLogger(__name__)

# A misconfigured or failing Redis (refused, timed out, auth, wrong type) must not fail a run either.
REDIS_FAILURES = (redis.RedisError, OSError)


class BestEffortStatus:
    def __init__(self, primary: StatusBackend, fallback: InProcessStatus) -> None:
        self.primary, self.fallback = primary, fallback
        self._degraded = False
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return self._degraded

    @property
    def where(self) -> str:
        return f"{self.fallback.where} ({self.primary.where} unreachable)" if self._degraded else self.primary.where

    def publish(self, event: StageEvent, progress: RunProgress) -> StageEvent:
        if not self._degraded:
            try:
                return self.primary.publish(event, progress)
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        return self.fallback.publish(event, progress)

    def progress(self, run_id: str) -> RunProgress | None:
        if not self._degraded:
            try:
                return self.primary.progress(run_id)
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        return self.fallback.progress(run_id)

    def events(self, run_id: str) -> list[StageEvent]:
        if not self._degraded:
            try:
                return self.primary.events(run_id)
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        return self.fallback.events(run_id)

    def follow(self, run_id: str, idle_timeout: float | None = None) -> Iterator[StageEvent]:
        if not self._degraded:
            try:
                yield from self.primary.follow(run_id, idle_timeout)
                return
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        # From here on only what this process publishes is visible.
        yield from self.fallback.follow(run_id, idle_timeout)

    def _degrade(self, exc: BaseException) -> None:
        with self._lock:
            if self._degraded:
                return
            self._degraded = True
        log.warning(
            "live status: %s failed (%s: %s); status continues in-process, the deployment is not affected",
            self.primary.where,
            type(exc).__name__,
            exc,
        )
