"""A job's request as the inputs of `deploy_model` (workflows/deploy.py), for either executor.

A lakeFS model runs at the commit its ref pointed at when it was queued (`source_commit`), and
publishes to `publish_branch`, or else to the branch the request named: what a request deploys
cannot change because a branch moved while it waited in the queue.
"""

from __future__ import annotations

import typing
from typing import Any

from edge_deploy.jobs.model import Job
from edge_deploy.validation.report import ValidationSettings
from tasks.options import DeployOptions

# The Python types of the inputs passed, for flytekit's literal conversion against the launch plan.
INPUT_TYPES: dict[str, Any] = {
    "repo": str,
    "ref": str,
    "prefix": str,
    "targets": typing.Optional[list[str]],  # noqa: UP045 (flytekit reads typing.Optional)
    "repository": str,
    "publish_branch": str,
    "options": DeployOptions,
}


def deploy_options(options: dict[str, Any]) -> DeployOptions:
    return DeployOptions(
        release_tag=options.get("release_tag", ""),
        base_images=dict(options.get("base_images") or {}),
        build_images=bool(options.get("build_images", True)),
        validation=ValidationSettings(**(options.get("validation") or {})),
    )


def lakefs_inputs(job: Job) -> dict[str, Any]:
    """Inputs for a model in lakeFS (local_dir is the local executor's business)."""
    request = job.request
    inputs: dict[str, Any] = {
        "repo": request.repo,
        "ref": job.source_commit,
        "prefix": request.prefix,
        "repository": request.repository,
        "publish_branch": request.publish_branch or request.ref,
        "options": deploy_options(request.options),
    }
    if request.targets:
        inputs["targets"] = list(request.targets)
    return inputs
