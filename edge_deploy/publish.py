"""Assemble what a deployment publishes to `{branch}/edge/`: the model, its reports and records.

The directory holds the SDK metadata (deploy.json, pipeline.json, detail.json), the runtime's
serving.json, conversion.json, validation.json and validation.html, images.json (the per-platform
images and the index), acceptance/<device class>.html (each target's image answering the gate's
photos beside PyTorch; validation.html shows them too, after the gate's own sections) and
record.json (the deployment record, so a MongoDB outage never loses it), plus the model: the
plaintext ONNX only when the source model was plaintext too; when the source was encrypted the
sealed copy (`.onnx.enc`) is published instead, so publishing never leaks what was protected.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from edge_deploy.errors import EdgeDeployError
from edge_deploy.files import atomic_directory

if TYPE_CHECKING:
    from edge_deploy.images.push import ReleaseResult
    from edge_deploy.records.model import DeploymentRecord

RECORD_NAME = "record.json"
IMAGES_NAME = "images.json"
ACCEPTANCE_DIR = "acceptance"
REPORT_PAGE = "validation.html"
# What the conversion/validation directory holds that is worth publishing besides the model.
METADATA_FILES = (
    "deploy.json",
    "pipeline.json",
    "detail.json",
    "serving.json",
    "conversion.json",
    "validation.json",
    REPORT_PAGE,
)


def assemble_artifacts(
    validated_dir: Path,
    sealed_model: Path,
    model_file: str,
    out_dir: Path,
    record: DeploymentRecord,
    release: ReleaseResult | None,
    source_was_encrypted: bool,
    acceptance_pages: Sequence[Path] = (),
) -> list[str]:
    """Fill the new directory `out_dir` with the artifacts to publish; returns their names."""
    if out_dir.exists():
        raise EdgeDeployError(f"artifact directory {out_dir} already exists")
    model = validated_dir / model_file
    if not model.is_file():
        raise EdgeDeployError(f"{model_file} is missing from the validated model directory {validated_dir}")
    with atomic_directory(out_dir) as staging:
        for name in METADATA_FILES:
            if (validated_dir / name).is_file():
                shutil.copy2(validated_dir / name, staging / name)
        if source_was_encrypted:
            shutil.copy2(sealed_model, staging / sealed_model.name)
        else:
            shutil.copy2(model, staging / model_file)
        if release is not None:
            (staging / IMAGES_NAME).write_text(json.dumps(asdict(release), indent=2) + "\n")
        _add_acceptance_pages(staging, acceptance_pages)
        (staging / RECORD_NAME).write_text(record.to_json())
    return sorted(p.name for p in out_dir.iterdir())


def _add_acceptance_pages(staging: Path, directories: Sequence[Path]) -> None:
    """acceptance/<device class>.html from the build's `acceptance-<device class>.html` pages, and
    the same pages after the gate's sections in validation.html, so one page shows the whole proof."""
    pages = sorted(page for directory in directories for page in directory.glob("acceptance-*.html"))
    if not pages:
        return
    (staging / ACCEPTANCE_DIR).mkdir()
    for page in pages:
        shutil.copy2(page, staging / ACCEPTANCE_DIR / page.name.removeprefix("acceptance-"))
    report = staging / REPORT_PAGE
    if report.is_file():
        sections = "\n".join(page.read_text() for page in pages)
        report.write_text(report.read_text() + "\n<h2>Acceptance: each target's image on the photos</h2>\n" + sections)
