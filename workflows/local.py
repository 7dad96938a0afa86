"""Run `deploy_model` in this process, as `pyflyte run workflows/deploy.py deploy_model` does.

For callers that are not a shell: `edge-deploy demo`, which follows the run's live status in the
same process while it goes. Flyte's local execution is the same engine `pyflyte run` uses.
"""

from pathlib import Path

from flytekit.types.directory import FlyteDirectory

from edge_deploy.records import DeploymentRecord
from tasks.options import DeployOptions
from workflows.deploy import deploy_model


def run_local_model(
    model_dir: Path, targets: list[str], build_images: bool = True, base_images: dict[str, str] | None = None
) -> DeploymentRecord:
    """Deploy a local model directory on the embedded default (settings from the environment)."""
    options = DeployOptions(build_images=build_images, base_images=dict(base_images or {}))
    return deploy_model(local_dir=FlyteDirectory(str(model_dir)), targets=list(targets), options=options)
