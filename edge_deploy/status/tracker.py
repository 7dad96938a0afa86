"""`RunTracker`: how a stage reports itself. Emits the events and progress, and keeps the timings.

    tracker = RunTracker(status, run_id, plan=PIPELINE_STAGES)
    with tracker.stage("convert"):
        ...                       # stage-started, then stage-finished with seconds (or stage-failed)
    tracker.succeeded()           # run-succeeded: followers stop here

Progress is the position in the plan of the last finished stage, so trackers in separate
processes (one per Flyte task) agree without sharing state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from edge_deploy.records.model import FAILED, RUNNING, SUCCEEDED
from edge_deploy.status.backend import StatusBackend
from edge_deploy.status.events import (
    RUN_FAILED,
    RUN_SUCCEEDED,
    STAGE_FAILED,
    STAGE_FINISHED,
    STAGE_STARTED,
    RunProgress,
    StageEvent,
)

PIPELINE_STAGES = (
    "download",
    "decrypt",
    "convert",
    "validate",
    "platforms",
    "encrypt",
    "build",
    "accept",
    "push",
    "index",
    "publish",
    "record",
)


class RunTracker:
    def __init__(self, status: StatusBackend, run_id: str, plan: Sequence[str] = PIPELINE_STAGES) -> None:
        self.status, self.run_id, self.plan = status, run_id, tuple(plan)
        self.timings: dict[str, float] = {}
        self.current_stage = ""
        self._progress = 0.0

    def _fraction_done(self, stage: str) -> float:
        if stage in self.plan:
            return (self.plan.index(stage) + 1) / len(self.plan)
        return self._progress  # a stage outside the plan does not move the bar

    def _publish(self, kind: str, stage: str, state: str = RUNNING, **details) -> StageEvent:
        event = StageEvent(self.run_id, kind, stage, seconds=details.get("seconds"), error=details.get("error"))
        progress = RunProgress(self.run_id, stage, state, self._progress, error=details.get("error"))
        return self.status.publish(event, progress)

    def start_stage(self, stage: str) -> None:
        self.current_stage = stage
        self._publish(STAGE_STARTED, stage)

    def finish_stage(self, stage: str, seconds: float) -> None:
        self.timings[stage] = seconds
        self._progress = max(self._progress, self._fraction_done(stage))
        self._publish(STAGE_FINISHED, stage, seconds=seconds)

    def fail_stage(self, stage: str, seconds: float, error: str) -> None:
        self.timings[stage] = seconds
        self._publish(STAGE_FAILED, stage, FAILED, seconds=seconds, error=error)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Report `stage` around the block; an exception is reported as the stage's failure and re-raised."""
        self.start_stage(stage)
        started = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.fail_stage(stage, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
            raise
        self.finish_stage(stage, time.perf_counter() - started)

    def succeeded(self) -> None:
        self._progress = 1.0
        self._publish(RUN_SUCCEEDED, self.current_stage or "run", SUCCEEDED)

    def failed(self, stage: str, error: str) -> None:
        self._publish(RUN_FAILED, stage, FAILED, error=error)
