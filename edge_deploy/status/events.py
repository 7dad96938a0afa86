"""What live status is made of: stage events (a run's feed) and the run's current progress."""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_deploy.records.model import FAILED, RUNNING, SUCCEEDED, utc_timestamp

STAGE_STARTED = "stage-started"
STAGE_FINISHED = "stage-finished"
STAGE_FAILED = "stage-failed"
RUN_SUCCEEDED = "run-succeeded"
RUN_FAILED = "run-failed"
EVENT_KINDS = (STAGE_STARTED, STAGE_FINISHED, STAGE_FAILED, RUN_SUCCEEDED, RUN_FAILED)
RUN_ENDS = (RUN_SUCCEEDED, RUN_FAILED)


@dataclass(frozen=True)
class StageEvent:
    run_id: str
    kind: str  # one of EVENT_KINDS
    stage: str  # the stage; for run-succeeded/run-failed, the last stage
    at: str = ""  # UTC ISO 8601, set to now when empty
    seconds: float | None = None  # how long the stage took (finished/failed)
    error: str | None = None
    event_id: str = ""  # the position in the run's feed, set by the backend

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown status event kind {self.kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        object.__setattr__(self, "at", utc_timestamp(self.at or None))

    @property
    def ends_run(self) -> bool:
        return self.kind in RUN_ENDS

    def with_id(self, event_id: str) -> StageEvent:
        return replace(self, event_id=event_id)

    def to_fields(self) -> dict[str, str]:
        """Flat string fields, as a Redis stream entry holds them (absent values left out)."""
        fields = {"run_id": self.run_id, "kind": self.kind, "stage": self.stage, "at": self.at}
        if self.seconds is not None:
            fields["seconds"] = repr(self.seconds)
        if self.error is not None:
            fields["error"] = self.error
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str], event_id: str = "") -> StageEvent:
        seconds = fields.get("seconds")
        return cls(
            run_id=fields["run_id"],
            kind=fields["kind"],
            stage=fields["stage"],
            at=fields["at"],
            seconds=float(seconds) if seconds is not None else None,
            error=fields.get("error"),
            event_id=event_id,
        )


@dataclass(frozen=True)
class RunProgress:
    """The latest word on a run: which stage, how far along (0..1), and whether it has ended."""

    run_id: str
    stage: str
    state: str = RUNNING  # running | succeeded | failed
    progress: float = 0.0
    updated_at: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        if self.state not in (RUNNING, SUCCEEDED, FAILED):
            raise ValueError(f"unknown run state {self.state!r}")
        object.__setattr__(self, "updated_at", utc_timestamp(self.updated_at or None))

    def to_fields(self) -> dict[str, str]:
        fields = {"stage": self.stage, "state": self.state, "progress": repr(self.progress), "updated": self.updated_at}
        if self.error is not None:
            fields["error"] = self.error
        return fields

    @classmethod
    def from_fields(cls, run_id: str, fields: dict[str, str]) -> RunProgress:
        return cls(
            run_id=run_id,
            stage=fields["stage"],
            state=fields["state"],
            progress=float(fields["progress"]),
            updated_at=fields["updated"],
            error=fields.get("error"),
        )
