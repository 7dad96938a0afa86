"""The live status interface, and the in-process backend used when no Redis is configured.

A backend keeps, per run, the current `RunProgress` and the ordered feed of `StageEvent`s.
`follow` replays a run's feed from the start and then waits for more, ending after the event that
ends the run (or after `idle_timeout` seconds without news).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Protocol

from edge_deploy.status.events import RunProgress, StageEvent


class StatusBackend(Protocol):
    where: str  # a human description, without credentials

    def publish(self, event: StageEvent, progress: RunProgress) -> StageEvent:
        """Append `event` to the run's feed and set its progress; returns the event with its id."""
        ...

    def progress(self, run_id: str) -> RunProgress | None: ...

    def events(self, run_id: str) -> list[StageEvent]: ...

    def follow(self, run_id: str, idle_timeout: float | None = None) -> Iterator[StageEvent]: ...


class InProcessStatus:
    """Status held in this process's memory: visible to `follow` in the same process only."""

    where = "in-process status"

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._feeds: dict[str, list[StageEvent]] = {}
        self._progress: dict[str, RunProgress] = {}

    def publish(self, event: StageEvent, progress: RunProgress) -> StageEvent:
        with self._changed:
            feed = self._feeds.setdefault(event.run_id, [])
            stored = event.with_id(f"{len(feed) + 1}-0")
            feed.append(stored)
            self._progress[progress.run_id] = progress
            self._changed.notify_all()
        return stored

    def progress(self, run_id: str) -> RunProgress | None:
        with self._changed:
            return self._progress.get(run_id)

    def events(self, run_id: str) -> list[StageEvent]:
        with self._changed:
            return list(self._feeds.get(run_id, []))

    def follow(self, run_id: str, idle_timeout: float | None = None) -> Iterator[StageEvent]:
        seen = 0
        while True:
            deadline = None if idle_timeout is None else time.monotonic() + idle_timeout
            with self._changed:
                while len(self._feeds.get(run_id, [])) <= seen:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._changed.wait(remaining)
                fresh = self._feeds[run_id][seen:]
            for event in fresh:
                seen += 1
                yield event
                if event.ends_run:
                    return
