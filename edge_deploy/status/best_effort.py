"""Best-effort status: Redis while it answers, in-process while it does not, Redis again once it is back.

Live status is a convenience for people watching; a deployment must never fail or stall because
Redis is down. The first Redis error is logged as ONE warning, and calls go to the in-process
backend; Redis is tried again only every `retry_seconds`, so a dead Redis costs one connection
timeout per interval, not one per status call. When it answers again, the events published
meanwhile are replayed into it, in order, so that its followers see the whole run (its end event
included) rather than a run that stopped at the outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

import redis

from edge_deploy.status.backend import InProcessStatus, StatusBackend
from edge_deploy.status.events import RunProgress, StageEvent

log = logging.getLogger(__name__)

# A misconfigured or failing Redis (refused, timed out, auth, wrong type) must not fail a run either.
REDIS_FAILURES = (redis.RedisError, OSError)
RETRY_SECONDS = 15.0
MAX_MISSED = 10_000  # events kept for the replay; a run publishes a few dozen


class BestEffortStatus:
    def __init__(self, primary: StatusBackend, fallback: InProcessStatus, retry_seconds: float = RETRY_SECONDS):
        self.primary, self.fallback, self.retry_seconds = primary, fallback, retry_seconds
        self._degraded_at: float | None = None
        self._missed: deque[tuple[StageEvent, RunProgress]] = deque(maxlen=MAX_MISSED)
        self._lock = threading.RLock()

    @property
    def degraded(self) -> bool:
        return self._degraded_at is not None

    @property
    def where(self) -> str:
        return f"{self.fallback.where} ({self.primary.where} unreachable)" if self.degraded else self.primary.where

    def publish(self, event: StageEvent, progress: RunProgress) -> StageEvent:
        with self._lock:
            if self._primary_usable():
                try:
                    return self.primary.publish(event, progress)
                except REDIS_FAILURES as exc:
                    self._degrade(exc)
            published = self.fallback.publish(event, progress)
            self._missed.append((published, progress))
            return published

    def progress(self, run_id: str) -> RunProgress | None:
        if self._primary_usable():
            try:
                return self.primary.progress(run_id)
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        return self.fallback.progress(run_id)

    def events(self, run_id: str) -> list[StageEvent]:
        if self._primary_usable():
            try:
                return self.primary.events(run_id)
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        return self.fallback.events(run_id)

    def follow(self, run_id: str, idle_timeout: float | None = None) -> Iterator[StageEvent]:
        if self._primary_usable():
            try:
                yield from self.primary.follow(run_id, idle_timeout)
                return
            except REDIS_FAILURES as exc:
                self._degrade(exc)
        # From here on only what this process publishes is visible.
        yield from self.fallback.follow(run_id, idle_timeout)

    def _primary_usable(self) -> bool:
        with self._lock:
            if self._degraded_at is None:
                return True
            if time.monotonic() - self._degraded_at < self.retry_seconds:
                return False
            return self._recover()

    def _recover(self) -> bool:
        """Replay what Redis missed; True once all of it landed (Redis is used again)."""
        try:
            while self._missed:
                event, progress = self._missed[0]
                self.primary.publish(event.with_id(""), progress)
                self._missed.popleft()
        except REDIS_FAILURES:
            self._degraded_at = time.monotonic()  # still down: next try after another interval
            return False
        self._degraded_at = None
        log.info("live status: %s answers again; what it missed was replayed into it", self.primary.where)
        return True

    def _degrade(self, exc: BaseException) -> None:
        with self._lock:
            if self._degraded_at is not None:
                return
            self._degraded_at = time.monotonic()
        log.warning(
            "live status: %s failed (%s: %s); status continues in-process, the deployment is not affected",
            self.primary.where,
            type(exc).__name__,
            exc,
        )
