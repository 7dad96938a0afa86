"""Task `validate_onnx`: the validation gate as a Flyte task, cached on content, with a Deck.

The cache key is the model's content identity (the same `ModelIdentity` conversion is keyed on),
the sha256 of the ONNX model conversion produced, and the validation settings; the two directory
inputs are ignored for caching, since every run downloads them to new places. The task checks that
the directories really hold that content before validating, so a cached report always belongs to
the model it names.

A failing gate fails the task (nothing downstream runs) with the message naming the output and the
size of the difference; the Deck with the full report is attached first, so the Flyte console
shows what failed.
"""

import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from flytekit import Cache, Deck, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy.acceptance.reference import REFERENCE_DIR as PHOTO_REFERENCE_DIR
from edge_deploy.conversion import ModelIdentity, load_model_dir, model_identity
from edge_deploy.files import sha256_file
from edge_deploy.validation.deck import render_html
from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.gate import DECK_NAME, ONNX_NAME, validate
from edge_deploy.validation.report import ValidationFailed, ValidationReport, ValidationSettings
from tasks.cluster import CONVERSION_IMAGE, CONVERSION_LIMITS, CONVERSION_POD, CONVERSION_REQUESTS, STATUS_SECRETS
from tasks.convert import check_identity
from tasks.stage import reported_stage

# Bump when a change in the gate's code changes its verdict or report for the same inputs.
VALIDATION_CACHE_VERSION = "3"  # 2: the photo reference; 3: what was loosened
DECK_TITLE = "ONNX validation"
DEFAULT_SETTINGS = ValidationSettings()


class ValidateOutputs(NamedTuple):
    # The conversion output plus validation.json, validation.html and, when kept, the optimized model;
    # `report.shipped_onnx` names the file to ship.
    validated_dir: FlyteDirectory
    report: ValidationReport
    # The gate's photos and PyTorch's answers to them, which every built image must match (empty
    # when the codebase's API could not answer: `report.photos.unavailable` says why).
    photo_reference: FlyteDirectory


@task(
    requests=CONVERSION_REQUESTS,
    limits=CONVERSION_LIMITS,
    timeout=3600,
    cache=Cache(version=VALIDATION_CACHE_VERSION, ignored_inputs=("model_dir", "onnx_dir")),
    enable_deck=True,
    container_image=CONVERSION_IMAGE,
    pod_template=CONVERSION_POD,
    secret_requests=STATUS_SECRETS,
)
def validate_onnx(
    model_dir: FlyteDirectory,
    onnx_dir: FlyteDirectory,
    identity: ModelIdentity,
    onnx_sha256: str,
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> ValidateOutputs:
    """Structure, parity against PyTorch, speed and optional optimization of `onnx_dir/end2end.onnx`."""
    with reported_stage("validate"):
        loaded = load_model_dir(Path(model_dir.download()))
        check_identity(model_identity(loaded), identity)
        out = Path(tempfile.mkdtemp(prefix="validation-")) / "validated"
        shutil.copytree(onnx_dir.download(), out)
        actual = sha256_file(out / ONNX_NAME) if (out / ONNX_NAME).is_file() else "missing"
        if actual != onnx_sha256:
            raise ValidationError(
                f"{ONNX_NAME} in the ONNX directory has sha256 {actual}, the input says {onnx_sha256}"
            )
        try:
            report = validate(loaded, out, settings=settings)
        except ValidationFailed as failure:
            Deck(DECK_TITLE, render_html(failure.report))  # shown by the console although the task fails
            raise
        Deck(DECK_TITLE, (out / DECK_NAME).read_text())  # the report and the gate's photos
        photos = out / PHOTO_REFERENCE_DIR
        if not photos.is_dir():
            photos.mkdir()
        return ValidateOutputs(FlyteDirectory(str(out)), report, FlyteDirectory(str(photos)))
