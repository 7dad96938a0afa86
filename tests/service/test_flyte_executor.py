"""The `flyte` executor against FlyteRemote's own client, offline: a flyteadmin stand-in speaking the
AdminService gRPC API (tests/service/flyte_admin.py) serves the launch plan flytekit serializes from
workflows/launch_plans.py. What a real cluster would do with the execution is not run here."""

from __future__ import annotations

import threading
import typing

import pytest
from flyteidl.core import execution_pb2 as core_execution
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.type_engine import TypeEngine
from flytekit.models.literals import Literal

from app.core.config import ServiceSettings
from app.run.flyte import CANCEL_CAUSE, FlyteExecutor
from edge_deploy.jobs.model import FAILED, SUCCEEDED, DeploymentRequest, Job, new_run_id
from edge_deploy.validation.report import ValidationSettings
from tasks.options import DeployOptions
from tests.fixtures.processes import wait_until
from tests.service.flyte_admin import DOMAIN, PROJECT, VERSION, AdminServer, FakeAdmin, admin_objects
from tests.service.processes import service_env, serving, start_worker, stop_worker

PHASE = core_execution.WorkflowExecution.Phase
COMMIT = "9f" * 32


@pytest.fixture(scope="module")
def registered():
    return admin_objects()


@pytest.fixture
def admin(registered):
    plan, workflow = registered
    server = AdminServer(FakeAdmin(plan, workflow))
    yield server
    server.stop()


def flyte_env(tmp_path, admin: AdminServer) -> dict[str, str]:
    config = tmp_path / "flyte.config"  # flytekit's INI format, as flyte.config in the repository
    config.write_text(f"[platform]\nurl={admin.endpoint}\ninsecure=True\n")
    return {"EDGE_EXECUTOR": "flyte", "EDGE_FLYTE_CONFIG": str(config), "EDGE_FLYTE_POLL_SECONDS": "0.05"}


def executor(tmp_path, admin: AdminServer, **more: str) -> FlyteExecutor:
    settings = ServiceSettings.from_env({**flyte_env(tmp_path, admin), "EDGE_WORK_DIR": str(tmp_path), **more})
    return FlyteExecutor(settings)


def a_job(**request) -> Job:
    defaults = {
        "repo": "models",
        "ref": "main",
        "prefix": "detector/model/",
        "targets": ("x86_64-cpu", "arm64-cpu"),
        "repository": "edge/detector",
        "options": {"release_tag": "r7", "build_images": False, "validation": {"samples": 2, "atol": 0.001}},
    }
    return Job(new_run_id(), DeploymentRequest(**{**defaults, **request}), COMMIT)


def python_input(execution, name: str, python_type):
    literal = Literal.from_flyte_idl(execution.inputs.literals[name])
    return TypeEngine.to_python_value(FlyteContextManager.current_context(), literal, python_type)


def test_the_launch_plan_runs_under_the_run_id_with_the_jobs_inputs(tmp_path, admin):
    job = a_job()
    outcome = executor(tmp_path, admin).run(job)
    assert outcome.state == SUCCEEDED and job.run_id in outcome.execution
    (execution,) = admin.admin.executions.values()
    assert (execution.id.project, execution.id.domain, execution.id.name) == (PROJECT, DOMAIN, job.run_id)
    plan = execution.spec.launch_plan
    assert (plan.name, plan.version) == ("deploy_model_on_demand", VERSION)
    assert python_input(execution, "ref", str) == COMMIT, "the commit resolved at request time, not the branch"
    assert python_input(execution, "publish_branch", str) == "main", "published to the branch the request named"
    assert python_input(execution, "prefix", str) == "detector/model/"
    targets = python_input(execution, "targets", typing.Optional[list[str]])  # noqa: UP045 (as the interface says)
    assert targets == ["x86_64-cpu", "arm64-cpu"]
    assert python_input(execution, "repository", str) == "edge/detector"
    options = python_input(execution, "options", DeployOptions)
    assert options == DeployOptions(
        release_tag="r7", build_images=False, validation=ValidationSettings(samples=2, atol=0.001)
    )
    assert "local_dir" not in execution.inputs.literals


def test_a_job_taken_up_again_follows_its_execution_instead_of_starting_another(tmp_path, admin):
    job = a_job()
    first = executor(tmp_path, admin).run(job)
    again = executor(tmp_path, admin).run(job)  # another worker, after the first died
    assert first.state == again.state == SUCCEEDED
    # flytekit's client asks again on ALREADY_EXISTS (its retry interceptor), then follows the existing one
    assert admin.admin.create_calls > 1 and list(admin.admin.executions) == [job.run_id]


@pytest.mark.parametrize("ending", ["FAILED", "TIMED_OUT"])
def test_an_execution_that_does_not_succeed_fails_the_job_saying_how(tmp_path, admin, ending):
    admin.admin.phases = ["QUEUED", "RUNNING", ending]
    outcome = executor(tmp_path, admin).run(a_job())
    assert outcome.state == FAILED and f"ended {ending}" in outcome.error
    if ending == "FAILED":
        assert outcome.error.endswith("StorageError: lakeFS answered 404")


def test_cancel_terminates_the_execution(tmp_path, admin):
    admin.admin.phases = ["QUEUED", "RUNNING"]  # runs until terminated
    job, flyte = a_job(), executor(tmp_path, admin)
    ended = []
    runner = threading.Thread(target=lambda: ended.append(flyte.run(job)))
    runner.start()
    wait_until(lambda: job.run_id in admin.admin.executions, "the execution to be created", timeout=30)
    flyte.cancel()
    runner.join(timeout=30)
    assert admin.admin.executions[job.run_id].abort_cause == CANCEL_CAUSE
    assert ended[0].state == FAILED and "ended ABORTED" in ended[0].error


def test_a_local_directory_is_refused_on_a_cluster(tmp_path, admin):
    outcome = executor(tmp_path, admin).run(a_job(repo="", local_dir="/models/x"))
    assert outcome.state == FAILED and "local_dir" in outcome.error
    assert not admin.admin.executions


def test_the_health_check_fetches_the_launch_plan(tmp_path, admin):
    health = executor(tmp_path, admin).check()
    assert health.ok and f"version {VERSION}" in health.detail
    missing = executor(tmp_path, admin, EDGE_FLYTE_LAUNCH_PLAN="deploy_model_nowhere").check()
    assert not missing.ok and "deploy_model_nowhere" in missing.detail
    admin.stop()
    down = executor(tmp_path, admin).check()
    assert not down.ok


def test_through_the_service_a_cancel_terminates_the_flyte_execution(
    tmp_path, admin, redis_url, lakefs_server, lakefs_repo, api_tokens
):
    """API -> Redis queue -> edge-deploy worker (flyte executor) -> job process -> FlyteRemote -> admin."""
    admin.admin.phases = ["QUEUED", "RUNNING"]
    env = service_env(
        tmp_path / "work",
        REDIS_URL=redis_url,
        EDGE_API_TOKENS_FILE=str(api_tokens.file),
        EDGE_JOB_LEASE_SECONDS="4",
        **lakefs_server.env(),
        **flyte_env(tmp_path, admin),
    )
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with serving(env, tmp_path / "serve.log", api_tokens.deployer) as service, service.client() as client:
            wait_until(lambda: client.get("/readyz").json()["workers"]["ok"], "the worker's flyte check", timeout=60)
            assert "executor flyte" in client.get("/readyz").json()["workers"]["detail"]
            body = {"repo": lakefs_repo, "targets": ["arm64-cpu"], "options": {"build_images": False}}
            run_id = client.post("/api/v1/deployments", json=body).json()["run_id"]
            wait_until(lambda: run_id in admin.admin.executions, "the Flyte execution", timeout=120)
            assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202
            wait_until(lambda: client.get(f"/api/v1/runs/{run_id}").json()["state"] == "cancelled", "the cancel", 60)
            assert admin.admin.executions[run_id].abort_cause == CANCEL_CAUSE
            record = client.get(f"/api/v1/deployments/{run_id}").json()
            assert record["status"]["error"] == "cancelled by release-pipeline"  # the caller, by its token's name

            admin.admin.phases = ["RUNNING", "FAILED"]
            failing = client.post("/api/v1/deployments", json={**body, "targets": ["x86_64-cpu"]}).json()["run_id"]
            wait_until(lambda: client.get(f"/api/v1/runs/{failing}").json()["state"] == "failed", "the failure", 120)
            error = client.get(f"/api/v1/runs/{failing}").json()["error"]
            assert f"Flyte execution {failing} ended FAILED" in error
            assert client.get(f"/api/v1/deployments/{failing}").json()["status"]["state"] == "failed"
    finally:
        stop_worker(worker)
