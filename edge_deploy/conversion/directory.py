"""`load_model_dir`: a model directory read with its manifest, or with one inferred from the model config."""

from __future__ import annotations

import logging
from pathlib import Path

from edge_deploy.conversion.contract import ModelDir
from edge_deploy.conversion.errors import ModelDirError
from edge_deploy.conversion.inference import infer_model_dir
from edge_deploy.conversion.manifest import find_manifest, load_with_manifest

log = logging.getLogger(__name__)


def load_model_dir(path: Path) -> ModelDir:
    """Read and check a model directory; a ModelDirError names every bad field at once."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise ModelDirError(f"model directory {path} does not exist or is not a directory")
    manifest_path = find_manifest(root)
    if manifest_path is None:
        model_dir = infer_model_dir(root)
        log.info("%s has no manifest; inferred: %s", root.name, "; ".join(model_dir.inferred))
        return model_dir
    return load_with_manifest(root, manifest_path)
