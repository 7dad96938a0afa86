"""The `local` executor: `deploy_model` run in this (the job's) process, as `pyflyte run` runs it.

Every stage reports to the live status and the workflow records its own outcome (its failure
handler included) under the job's run id, which the worker put in EDGE_RUN_ID.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from app.core.config import ServiceSettings
from app.run.inputs import deploy_options, lakefs_inputs
from edge_deploy.jobs.executor import ExecutionOutcome, ExecutorHealth
from edge_deploy.jobs.model import FAILED, SUCCEEDED, Job

log = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    def run(self, job: Job) -> ExecutionOutcome:
        from workflows.deploy import deploy_model  # flytekit, and the tasks, load here: in the job's process

        try:
            record = deploy_model(**self.inputs(job))
        except Exception as exc:  # the workflow's failure handler has recorded the failed stage
            return ExecutionOutcome(FAILED, _last_line(exc))
        if record.status.state != SUCCEEDED:
            return ExecutionOutcome(FAILED, record.status.error or f"the run ended {record.status.state}")
        return ExecutionOutcome(SUCCEEDED)

    def inputs(self, job: Job) -> dict[str, Any]:
        if not job.request.local_dir:
            return lakefs_inputs(job)
        from flytekit.types.directory import FlyteDirectory

        inputs: dict[str, Any] = {
            "local_dir": FlyteDirectory(job.request.local_dir),
            "repository": job.request.repository,
            "options": deploy_options(job.request.options),
        }
        if job.request.targets:
            inputs["targets"] = list(job.request.targets)
        return inputs

    def cancel(self) -> None:
        return None  # the worker ends this process; the workflow runs nowhere else

    def check(self) -> ExecutorHealth:
        missing = [name for name in ("flytekit", "workflows.deploy") if importlib.util.find_spec(name) is None]
        if missing:
            return ExecutorHealth(False, f"cannot import {', '.join(missing)}")
        return ExecutorHealth(True, "runs deploy_model in each job's process")


def _last_line(exc: BaseException) -> str:
    """flytekit wraps a task's error in a multi-line message whose last line is the original one."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:500]
