"""Launch plans of `deploy_model`: one on demand, and one nightly per model listed in workflows/schedules.yaml.

Read when `pyflyte register` / `package` loads this module (the registering shell's environment decides):

| variable            | effect                                                                       |
|---------------------|------------------------------------------------------------------------------|
| EDGE_SCHEDULES_FILE | the schedules file instead of workflows/schedules.yaml                       |
| EDGE_NOTIFY_EMAILS  | comma-separated addresses told of FAILED / TIMED_OUT / ABORTED runs          |
| EDGE_NOTIFY_SLACK   | comma-separated Slack channel e-mail addresses, told of the same             |

Schedules run only once activated: `pyflyte register --activate-launchplans ...` (make register does), or
`flytectl update launchplan -p PROJECT -d DOMAIN NAME --version V --activate`.
"""

import os
from pathlib import Path

from flytekit import CronSchedule, Email, LaunchPlan, Slack
from flytekit.models.common import Labels
from flytekit.models.core.execution import WorkflowExecutionPhase

from edge_deploy.errors import ConfigError
from edge_deploy.platforms import PlatformMatrix
from edge_deploy.schedules import DEFAULT_RECIPIENTS, NightlyDeploy, load_schedules, notification_recipients
from tasks.options import DEFAULT_OPTIONS
from workflows.deploy import deploy_model

SCHEDULES_FILE = Path(os.environ.get("EDGE_SCHEDULES_FILE", "").strip() or Path(__file__).with_name("schedules.yaml"))
ON_DEMAND_NAME = "deploy_model_on_demand"
NIGHTLY_PREFIX = "deploy_model_nightly_"
FAILURE_PHASES = [WorkflowExecutionPhase.FAILED, WorkflowExecutionPhase.TIMED_OUT, WorkflowExecutionPhase.ABORTED]
# Image builds run one node per target; a bound keeps a many-target release from flooding the cluster.
MAX_PARALLELISM = 8


def failure_notifications() -> list:
    emails = notification_recipients(os.environ.get("EDGE_NOTIFY_EMAILS"), "EDGE_NOTIFY_EMAILS", DEFAULT_RECIPIENTS)
    slack = notification_recipients(os.environ.get("EDGE_NOTIFY_SLACK"), "EDGE_NOTIFY_SLACK")
    notifications: list = [Email(phases=FAILURE_PHASES, recipients_email=emails)]
    if slack:
        notifications.append(Slack(phases=FAILURE_PHASES, recipients_email=slack))
    return notifications


def known_targets(matrix: PlatformMatrix) -> set[str]:
    """What a schedule may name: supported device classes, and the raw OCI platforms that stand for one."""
    supported = matrix.supported
    return {spec.name for spec in supported} | {str(spec.platform) for spec in supported if spec.default_for_platform}


def nightly_launch_plan(deploy: NightlyDeploy, notifications: list) -> LaunchPlan:
    """Redeploy the head of `deploy.branch`: the source, registry repository and targets are fixed."""
    try:
        schedule = CronSchedule(schedule=deploy.cron)
    except ValueError as exc:
        raise ConfigError(f"{SCHEDULES_FILE}: nightly entry {deploy.name}: cron {deploy.cron!r}: {exc}") from None
    return LaunchPlan.get_or_create(
        workflow=deploy_model,
        name=NIGHTLY_PREFIX + deploy.name,
        fixed_inputs={
            "repo": deploy.repo,
            "ref": deploy.branch,
            "prefix": deploy.prefix,
            "targets": list(deploy.targets),
            "repository": deploy.repository,
            "publish_branch": deploy.publish_branch,
        },
        schedule=schedule,
        notifications=notifications,
        labels=Labels({"app.kubernetes.io/part-of": "edge-deploy", "edge-deploy/model": deploy.name}),
        max_parallelism=MAX_PARALLELISM,
    )


NOTIFICATIONS = failure_notifications()

# For a person or a script: give repo (and a targets override, a registry repository) per run.
on_demand = LaunchPlan.get_or_create(
    workflow=deploy_model,
    name=ON_DEMAND_NAME,
    default_inputs={"ref": "main", "prefix": "model/", "publish_branch": "", "options": DEFAULT_OPTIONS},
    notifications=NOTIFICATIONS,
    labels=Labels({"app.kubernetes.io/part-of": "edge-deploy"}),
    max_parallelism=MAX_PARALLELISM,
)

NIGHTLY = {
    deploy.name: nightly_launch_plan(deploy, NOTIFICATIONS)
    for deploy in load_schedules(SCHEDULES_FILE, known_targets(PlatformMatrix.load()))
}
