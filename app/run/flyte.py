"""The `flyte` executor: launch the registered launch plan on a Flyte cluster and follow it to its end.

The execution is named after the job's run id, so the execution id is the run id: the tasks on the
cluster report their stages and write the record under it, and the API shows them. Launching is
idempotent: a job taken up again after its worker died asks for the same execution name, Flyte
answers that it exists, and flytekit returns the existing execution, which is then followed
instead of started twice. A cancelled job terminates its execution.

flytekit reads how to reach and authenticate to the cluster from EDGE_FLYTE_CONFIG (a flytectl
config file) or its own FLYTE_* variables (FLYTE_PLATFORM_URL, FLYTE_PLATFORM_INSECURE, and for an
Entra ID-protected cluster FLYTE_CREDENTIALS_CLIENT_ID with FLYTE_CREDENTIALS_CLIENT_SECRET_FILE).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from app.core.config import ServiceSettings
from app.run.inputs import INPUT_TYPES, lakefs_inputs
from edge_deploy.jobs.executor import ExecutionOutcome, ExecutorHealth
from edge_deploy.jobs.model import FAILED, SUCCEEDED, Job

log = logging.getLogger(__name__)

CANCEL_CAUSE = "cancelled through the edge-deploy API"


class FlyteExecutor:
    name = "flyte"

    def __init__(self, settings: ServiceSettings, remote=None) -> None:
        self.settings, self.flyte = settings, settings.flyte
        self._remote = remote
        self._execution = None
        self._lock = threading.Lock()

    def remote(self):
        if self._remote is None:
            from flytekit.configuration import Config
            from flytekit.remote import FlyteRemote

            config_file = str(self.flyte.config_file) if self.flyte.config_file else None
            self._remote = FlyteRemote(
                Config.auto(config_file), default_project=self.flyte.project, default_domain=self.flyte.domain
            )
        return self._remote

    def launch_plan(self):
        return self.remote().fetch_launch_plan(name=self.flyte.launch_plan, version=self.flyte.launch_plan_version)

    def run(self, job: Job) -> ExecutionOutcome:
        if job.request.local_dir:
            return ExecutionOutcome(
                FAILED, "the flyte executor runs on a cluster: give a model in lakeFS, not local_dir"
            )
        remote = self.remote()
        plan = self.launch_plan()
        inputs = lakefs_inputs(job)
        hints = {name: INPUT_TYPES[name] for name in inputs}
        execution = remote.execute(plan, inputs=inputs, execution_name=job.run_id, type_hints=hints, wait=False)
        with self._lock:
            self._execution = execution
        where = remote.generate_console_url(execution)
        log.info("run %s: Flyte execution %s (%s)", job.run_id, execution.id.name, where)
        done = remote.wait(execution, poll_interval=timedelta(seconds=self.flyte.poll_seconds), sync_nodes=False)
        return outcome(done, where)

    def cancel(self) -> None:
        with self._lock:
            execution = self._execution
        if execution is not None:
            self.remote().terminate(execution, cause=CANCEL_CAUSE)
            log.info("Flyte execution %s terminated: %s", execution.id.name, CANCEL_CAUSE)

    def check(self) -> ExecutorHealth:
        try:
            plan = self.launch_plan()
        except Exception as exc:  # any failure here means: this worker cannot launch runs now
            return ExecutorHealth(False, f"launch plan {self.flyte.launch_plan} cannot be fetched: {_short(exc)}")
        return ExecutorHealth(
            True, f"launch plan {plan.id.name} version {plan.id.version} in {plan.id.project}/{plan.id.domain}"
        )


def outcome(execution, where: str) -> ExecutionOutcome:
    from flytekit.models.core.execution import WorkflowExecutionPhase

    phase = execution.closure.phase
    if phase == WorkflowExecutionPhase.SUCCEEDED:
        return ExecutionOutcome(SUCCEEDED, execution=where)
    name = WorkflowExecutionPhase.enum_to_string(phase)
    error = execution.closure.error
    detail = f": {error.message.strip().splitlines()[-1]}" if error is not None and error.message else ""
    return ExecutionOutcome(FAILED, f"Flyte execution {execution.id.name} ended {name}{detail}", where)


def _short(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
