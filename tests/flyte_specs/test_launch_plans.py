"""The launch plans as registered: on demand, and one nightly per model in workflows/schedules.yaml."""

from flyteidl.admin import launch_plan_pb2
from flyteidl.core import execution_pb2
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.type_engine import TypeEngine
from flytekit.models.literals import Literal

from edge_deploy.platforms import PlatformMatrix
from edge_deploy.schedules import load_schedules
from tests.flyte_specs.conftest import CONFIGURED
from workflows.launch_plans import SCHEDULES_FILE, known_targets

FAILURE_PHASES = {execution_pb2.WorkflowExecution.FAILED, execution_pb2.WorkflowExecution.TIMED_OUT}
FAILURE_PHASES |= {execution_pb2.WorkflowExecution.ABORTED}
SCHEDULES = load_schedules(SCHEDULES_FILE, known_targets(PlatformMatrix.load()))


def python_value(literal, python_type):
    ctx = FlyteContextManager.current_context()
    return TypeEngine.to_python_value(ctx, Literal.from_flyte_idl(literal), python_type)


def fixed(plan: launch_plan_pb2.LaunchPlan, name: str, python_type=str):
    return python_value(plan.spec.fixed_inputs.literals[name], python_type)


def default(plan: launch_plan_pb2.LaunchPlan, name: str, python_type=str):
    return python_value(plan.spec.default_inputs.parameters[name].default, python_type)


def test_the_schedules_file_lists_more_than_one_model():
    assert len(SCHEDULES) >= 2


def test_one_nightly_launch_plan_per_configured_model(specs):
    nightly = {name for name in specs.launch_plans if name.startswith("deploy_model_nightly_")}
    assert nightly == {f"deploy_model_nightly_{deploy.name}" for deploy in SCHEDULES}


def test_nightly_plans_redeploy_the_configured_branch_with_fixed_registry_and_targets(specs):
    for deploy in SCHEDULES:
        plan = specs.launch_plans[f"deploy_model_nightly_{deploy.name}"]
        assert plan.spec.workflow_id.name == "workflows.deploy.deploy_model"
        assert plan.spec.entity_metadata.schedule.cron_schedule.schedule == deploy.cron
        assert fixed(plan, "repo") == deploy.repo and fixed(plan, "ref") == deploy.branch
        assert fixed(plan, "prefix") == deploy.prefix
        assert fixed(plan, "targets", list[str] | None) == list(deploy.targets)
        assert fixed(plan, "repository") == deploy.repository
        assert fixed(plan, "publish_branch") == deploy.publish_branch
        # fixed means nobody can override them at launch: they are not among the defaults
        assert not {"repo", "ref", "targets", "repository"} & set(plan.spec.default_inputs.parameters)
        assert dict(plan.spec.labels.values)["edge-deploy/model"] == deploy.name


def test_the_two_example_models_run_at_their_own_times(specs):
    crons = {
        specs.launch_plans[f"deploy_model_nightly_{d.name}"].spec.entity_metadata.schedule.cron_schedule.schedule
        for d in SCHEDULES
    }
    assert crons == {"0 2 * * *", "30 2 * * *"}


def test_the_on_demand_plan_has_defaults_and_no_schedule(specs):
    plan = specs.launch_plans["deploy_model_on_demand"]
    assert not plan.spec.entity_metadata.HasField("schedule")
    assert not plan.spec.fixed_inputs.literals
    assert default(plan, "ref") == "main" and default(plan, "prefix") == "model/"
    assert default(plan, "repo") == ""  # a run names its repo (or a local_dir)
    assert plan.spec.max_parallelism == 8


def test_every_plan_tells_the_default_recipients_of_failed_timed_out_and_aborted_runs(specs):
    for name in ["deploy_model_on_demand", *(f"deploy_model_nightly_{d.name}" for d in SCHEDULES)]:
        (notification,) = specs.launch_plans[name].spec.entity_metadata.notifications
        assert set(notification.phases) == FAILURE_PHASES
        assert list(notification.email.recipients_email) == ["edge-deploy-alerts@example.com"]


def test_recipients_come_from_the_registration_environment(configured_specs):
    for name, plan in configured_specs.launch_plans.items():
        if name == "workflows.deploy.deploy_model":
            continue
        email, slack = plan.spec.entity_metadata.notifications
        assert list(email.email.recipients_email) == ["ml-oncall@corp.example", "edge-team@corp.example"]
        assert list(slack.slack.recipients_email) == [CONFIGURED["EDGE_NOTIFY_SLACK"]]
        assert set(slack.phases) == FAILURE_PHASES


def test_register_dry_run_registers_every_entity_offline(serialized, specs):
    output = serialized.register_output
    for task in specs.tasks:
        assert f"Task: {task} (Dry run Mode)" in output
    assert "Workflow: workflows.deploy.deploy_model (Dry run Mode)" in output
    for plan in specs.launch_plans:
        assert f"Launch Plan: {plan} (Dry run Mode)" in output
    assert f"Successfully registered {len(specs.tasks) + 1 + len(specs.launch_plans)} entities" in output
