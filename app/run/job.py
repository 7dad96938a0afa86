"""`python -m app.run.job`: run one job, in the child process a worker started for it.

The job comes as JSON on stdin; the outcome goes back on the pipe the worker named (see
edge_deploy.jobs.child), and in the embedded mode so does every status event. SIGTERM (a cancel,
or the worker shutting down) stops the run: the flyte executor terminates its execution first.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from app.core.config import ServiceSettings
from app.run.executors import make_executor
from edge_deploy.jobs.child import (
    FORWARD_STATUS_VARIABLE,
    PARENT_PID_VARIABLE,
    PIPE_FD_VARIABLE,
    StatusForwarder,
    die_with_parent,
    outcome_message,
)
from edge_deploy.jobs.executor import ExecutionOutcome
from edge_deploy.jobs.model import FAILED, Job
from edge_deploy.status import PROCESS_STATUS

log = logging.getLogger("app.run.job")


def main() -> int:
    die_with_parent(int(os.environ[PARENT_PID_VARIABLE]))
    # Before flytekit loads: its local cache would answer a rerun from outputs in temporary folders that are gone.
    os.environ.setdefault("FLYTE_LOCAL_CACHE_ENABLED", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    job = Job.from_json(sys.stdin.read())
    pipe = os.fdopen(int(os.environ[PIPE_FD_VARIABLE]), "w", buffering=1)
    executor = make_executor(ServiceSettings.from_env())

    def stop(signum, frame) -> None:
        log.info("run %s: stopping (signal %d)", job.run_id, signum)
        try:
            executor.cancel()
        finally:
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    forwarder = None
    if os.environ.get(FORWARD_STATUS_VARIABLE) == "1":
        forwarder = StatusForwarder(PROCESS_STATUS, job.run_id, pipe).start()
    log.info("run %s: %s with the %s executor", job.run_id, job.request.source, executor.name)
    try:
        outcome = executor.run(job)
    except Exception as exc:  # the executor failed to run it at all (e.g. the cluster refused)
        log.exception("run %s: the %s executor failed", job.run_id, executor.name)
        outcome = ExecutionOutcome(FAILED, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        if forwarder is not None:
            forwarder.stop()
    pipe.write(outcome_message(outcome))
    pipe.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
