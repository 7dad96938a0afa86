"""The executors by name (EDGE_EXECUTOR), and the health a worker reports for its executor."""

from __future__ import annotations

import functools
import sys

from app.core.config import ServiceSettings
from edge_deploy.jobs.executor import Executor, ExecutorHealth

# What a worker starts for each job: app/run/job.py, in a process of its own.
JOB_COMMAND = (sys.executable, "-m", "app.run.job")


def make_executor(settings: ServiceSettings) -> Executor:
    if settings.executor == "flyte":
        from app.run.flyte import FlyteExecutor

        return FlyteExecutor(settings)
    from app.run.local import LocalExecutor

    return LocalExecutor(settings)


@functools.cache
def _checking_executor(settings: ServiceSettings) -> Executor:
    return make_executor(settings)  # one per process: a flyte executor keeps its connection


def executor_health(settings: ServiceSettings) -> ExecutorHealth:
    return _checking_executor(settings).check()
