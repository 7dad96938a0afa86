"""Tasks `identify_model` and `convert_model`: a model directory to ONNX, cached on content.

`convert_model`'s cache key is its `identity` input (sha256 of the config, checkpoint, manifest and
resolved deploy config, plus the converter versions); the directory input is ignored for caching,
so the same model downloaded to a new place (every run does that) is converted once. The task
checks that the directory really has that identity before converting, so a wrong identity can
never put a different model's ONNX in the cache.
"""

import tempfile
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

from flytekit import Cache, Resources, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy.conversion import ConversionResult, ModelIdentity, convert, load_model_dir, model_identity
from edge_deploy.errors import EdgeDeployError
from edge_deploy.validation.gate import other_sizes_problem
from tasks.cluster import (
    CONVERSION_IMAGE,
    CONVERSION_LIMITS,
    CONVERSION_POD,
    CONVERSION_REQUESTS,
    STANDARD_POD,
    STATUS_SECRETS,
)
from tasks.stage import reported_stage

# Bump when a change in edge-deploy's conversion code changes what it produces for the same inputs
# (package versions are already part of the identity).
CONVERSION_CACHE_VERSION = "1"


class ConvertOutputs(NamedTuple):
    onnx_dir: FlyteDirectory
    result: ConversionResult


class IdentityMismatchError(EdgeDeployError):
    """The model directory's content is not the content the identity input describes."""


# Not cached: it reads the files to compute the identity the conversion cache is keyed on.
# The conversion image, as convert_model's: the identity holds the converter versions that convert_model checks.
@task(
    requests=Resources(cpu="1", mem="1Gi"),
    timeout=1800,
    container_image=CONVERSION_IMAGE,
    pod_template=STANDARD_POD,
)
def identify_model(model_dir: FlyteDirectory) -> ModelIdentity:
    """Content identity of a model directory (hashes of its files, deploy profile, versions)."""
    return model_identity(load_model_dir(Path(model_dir.download())))


@task(
    requests=CONVERSION_REQUESTS,
    limits=CONVERSION_LIMITS,
    timeout=3600,
    cache=Cache(version=CONVERSION_CACHE_VERSION, ignored_inputs=("model_dir",)),
    container_image=CONVERSION_IMAGE,
    pod_template=CONVERSION_POD,
    secret_requests=STATUS_SECRETS,
)
def convert_model(model_dir: FlyteDirectory, identity: ModelIdentity) -> ConvertOutputs:
    """Convert with MMDeploy: end2end.onnx, deploy/pipeline/detail.json, deploy config, conversion.json."""
    with reported_stage("convert"):
        loaded = load_model_dir(Path(model_dir.download()))
        check_identity(model_identity(loaded), identity)
        out_dir = Path(tempfile.mkdtemp(prefix="conversion-")) / "onnx"
        result = convert(loaded, out_dir, size_check=other_sizes_problem)
        return ConvertOutputs(FlyteDirectory(str(out_dir)), result)


def check_identity(actual: ModelIdentity, expected: ModelIdentity) -> None:
    differing = [f.name for f in fields(ModelIdentity) if getattr(actual, f.name) != getattr(expected, f.name)]
    if differing:
        details = "; ".join(
            f"{name}: directory has {getattr(actual, name)!r}, identity says {getattr(expected, name)!r}"
            for name in differing
        )
        raise IdentityMismatchError(f"the model directory does not match the identity it was sent with: {details}")
