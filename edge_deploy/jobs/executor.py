"""What runs a job: the executor interface both implementations answer (they live in app/run/).

`local` runs the `deploy_model` workflow in the job's own process, as `pyflyte run` does; `flyte`
launches the registered launch plan on a Flyte cluster and follows it to its end. Either way the
run id of the job is the run id of the workflow run, so its status, events and record line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge_deploy.jobs.model import FAILED, SUCCEEDED, Job

EXECUTOR_NAMES = ("local", "flyte")


@dataclass(frozen=True)
class ExecutionOutcome:
    state: str  # succeeded | failed
    error: str = ""
    execution: str = ""  # where the run can be looked at (a Flyte execution URL), if anywhere

    def __post_init__(self) -> None:
        if self.state not in (SUCCEEDED, FAILED):
            raise ValueError(f"an execution ends succeeded or failed, not {self.state!r}")


@dataclass(frozen=True)
class ExecutorHealth:
    ok: bool
    detail: str


class Executor(Protocol):
    name: str

    def run(self, job: Job) -> ExecutionOutcome:
        """Run the job to its end (in the job's child process)."""
        ...

    def cancel(self) -> None:
        """Stop the run this process started (called on SIGTERM); best effort."""
        ...

    def check(self) -> ExecutorHealth:
        """Whether this executor could run a job now (the workflow imports; the cluster answers)."""
        ...
