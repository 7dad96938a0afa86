"""Task `plan_targets`: which images to build, from the manifest's targets or an override."""

from pathlib import Path

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy.conversion import load_model_dir
from edge_deploy.platforms import detect_targets
from tasks.cluster import CONVERSION_IMAGE, STANDARD_POD, STATUS_SECRETS
from tasks.stage import reported_stage

# Every built-in deploy profile exports for ONNX Runtime; the matrix says which platforms have it.
BACKEND = "onnxruntime"


# The conversion image: a model directory without a manifest is inferred by loading its config (mmengine).
@task(
    retries=0,
    timeout=300,
    requests=Resources(cpu="500m", mem="1Gi"),
    container_image=CONVERSION_IMAGE,
    pod_template=STANDARD_POD,
    secret_requests=STATUS_SECRETS,
)
def plan_targets(model_dir: FlyteDirectory, targets: list[str] | None = None) -> list[str]:
    """Device classes to build for: `targets` when given (device classes or OCI platforms such as
    linux/arm64), else the manifest's. Unknown or unsupported ones fail listing what is supported."""
    with reported_stage("platforms"):
        requested = targets or load_model_dir(Path(model_dir.download())).manifest.targets
        return [target.name for target in detect_targets(requested, BACKEND)]
