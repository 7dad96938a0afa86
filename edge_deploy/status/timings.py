"""Per-stage timings of a run, read back from its event feed (every task reports its own stage)."""

from edge_deploy.status.backend import StatusBackend
from edge_deploy.status.events import STAGE_FINISHED


def stage_timings(status: StatusBackend, run_id: str) -> dict[str, float]:
    """{stage: seconds} of every finished stage, in run order (a retried stage keeps its last time)."""
    timings: dict[str, float] = {}
    for event in status.events(run_id):
        if event.kind == STAGE_FINISHED and event.seconds is not None:
            timings.pop(event.stage, None)
            timings[event.stage] = event.seconds
    return timings
