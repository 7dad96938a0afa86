"""Which run a task belongs to, and how a task reports its stage to the live status.

On a cluster every task of one execution sees the same execution name, which is the run id. A
local `pyflyte run` executes the whole workflow in one process whose execution name is always
"local", so that process draws one run id of its own for all its tasks (and its failure handler),
unless EDGE_RUN_ID names one (a CI job id, say).
"""

import contextlib
import os
import secrets
import time
from collections.abc import Iterator

import flytekit

from edge_deploy.config import Settings
from edge_deploy.jobs.fence import check_fence
from edge_deploy.status import RunTracker, open_status
from tasks.errors import retry_transient_failures

# Stages with effects outside the run (the registry, lakeFS, the record store): a job process of the
# service checks, before each, that its attempt still holds the job (edge_deploy.jobs.fence).
FENCED_STAGES = ("push", "index", "publish", "record")
_LOCAL_RUN_ID = f"local-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def current_run_id() -> str:
    name = flytekit.current_context().execution_id.name
    if name and name != "local":
        return name
    return os.environ.get("EDGE_RUN_ID", "").strip() or _LOCAL_RUN_ID


@contextlib.contextmanager
def reported_stage(stage: str) -> Iterator[RunTracker]:
    """Report `stage` as started/finished/failed for this run; transient errors become recoverable."""
    settings, run_id = Settings.from_env(), current_run_id()
    tracker = RunTracker(open_status(settings), run_id)
    if stage in FENCED_STAGES:  # before the stage is reported: a fenced-off attempt says nothing of the run
        check_fence(run_id, stage, settings)
    with retry_transient_failures(), tracker.stage(stage):
        yield tracker
