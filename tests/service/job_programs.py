"""Job processes that misbehave on purpose, for the worker's tests: `python -m tests.service.job_programs NAME`.

They speak the worker's real protocol (edge_deploy.jobs.child) in place of app/run/job.py, because a
real conversion cannot be made to segfault, hang or lie about its outcome on demand. Each reports a
stage first, as a real job does, then:

    segfault        dies of SIGSEGV
    exit-silently   exits with code 3 without saying how the run ended
    hang            sleeps until it is stopped
    claim-success   says it succeeded but writes no record
    succeed         writes a succeeded record (the store of EDGE_WORK_DIR / MONGODB_URI), then says so
    work            as a real job with the service's Redis: its status goes to REDIS_URL (best effort),
                    it works for EDGE_TEST_JOB_SECONDS, then, as before any side effect, checks its
                    fence (edge_deploy.jobs.fence); if it still holds the job it notes one side effect
                    in EDGE_TEST_EFFECTS (a line per effect, to count), writes a succeeded record and
                    says so
"""

from __future__ import annotations

import os
import signal
import sys
import time

from edge_deploy.config import Settings
from edge_deploy.jobs.child import (
    PARENT_PID_VARIABLE,
    PIPE_FD_VARIABLE,
    StatusForwarder,
    die_with_parent,
    outcome_message,
)
from edge_deploy.jobs.executor import ExecutionOutcome
from edge_deploy.jobs.fence import FENCE_VARIABLE, FencedOff, check_fence
from edge_deploy.jobs.model import SUCCEEDED, Job
from edge_deploy.records import DeploymentRecord, ModelSource, open_record_store
from edge_deploy.status import InProcessStatus, RunTracker, open_status


def main(behaviour: str) -> int:
    die_with_parent(int(os.environ[PARENT_PID_VARIABLE]))
    job = Job.from_json(sys.stdin.read())
    if behaviour == "work":
        return work(job)
    pipe = os.fdopen(int(os.environ[PIPE_FD_VARIABLE]), "w", buffering=1)
    status = InProcessStatus()
    tracker = RunTracker(status, job.run_id)
    forwarder = StatusForwarder(status, job.run_id, pipe)
    tracker.start_stage("convert")
    forwarder.flush()
    if behaviour == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if behaviour == "exit-silently":
        return 3
    if behaviour == "hang":
        time.sleep(600)
    if behaviour == "succeed":
        store = open_record_store(Settings.from_env())
        source = ModelSource(job.request.repo, job.request.ref, job.source_commit, job.request.prefix)
        store.upsert(DeploymentRecord.new(job.run_id, source).succeeded())
        store.close()
        tracker.finish_stage("convert", 0.1)
        tracker.succeeded()
        forwarder.flush()
    pipe.write(outcome_message(ExecutionOutcome(SUCCEEDED)))
    return 0


def work(job: Job) -> int:
    settings = Settings.from_env()
    pipe = os.fdopen(int(os.environ[PIPE_FD_VARIABLE]), "w", buffering=1)
    tracker = RunTracker(open_status(settings), job.run_id)
    tracker.start_stage("convert")
    deadline = time.monotonic() + float(os.environ.get("EDGE_TEST_JOB_SECONDS", "6"))
    while time.monotonic() < deadline:
        time.sleep(0.1)
    tracker.finish_stage("convert", 1.0)
    try:
        check_fence(job.run_id, "record", settings)
    except FencedOff as exc:
        print(f"fenced off: {exc}", file=sys.stderr, flush=True)
        return 4
    with open(os.environ["EDGE_TEST_EFFECTS"], "a") as effects:
        effects.write(f"{job.run_id} {os.environ[FENCE_VARIABLE]}\n")
    store = open_record_store(settings)
    source = ModelSource(job.request.repo, job.request.ref, job.source_commit, job.request.prefix)
    store.upsert(DeploymentRecord.new(job.run_id, source).succeeded())
    store.close()
    tracker.succeeded()
    pipe.write(outcome_message(ExecutionOutcome(SUCCEEDED)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
