"""Conversion: a model directory (config, checkpoint, manifest) to `end2end.onnx` and MMDeploy's SDK files.

The modules, in the order a model directory goes through them:

- `contract`: what a model directory holds (`ModelDir`, `Manifest`, `InputSpec`, `Task`, limits)
- `manifest`: the manifest read and checked, field by field and against its deploy profile
- `inference`: a manifest made up from the model config when the directory has none
- `directory`: `load_model_dir`, which takes one of the two ways
- `profiles/`: the built-in MMDeploy deploy profiles (the mmdeploy wheel ships none)
- `environment`: what MMDeploy 1.3.1 needs on this torch, entered around every use of it
- `openmmlab`: the configs loaded with the manifest applied, the PyTorch model built as MMDeploy does
- `checkpoint`: strict checkpoint loading that names missing, unexpected and mismatched keys
- `export`: `convert`, which runs MMDeploy's export and writes the output directory atomically
- `result`: `ConversionResult` (conversion.json) and `ModelIdentity` (the conversion's cache key)
- `errors`, `memory`: the error types; the peak memory of a block

Importing this package is cheap: torch, mmengine and mmdeploy load when a conversion starts.
"""

from edge_deploy.conversion.contract import InputSpec, Manifest, ModelDir, Task, Tolerances
from edge_deploy.conversion.directory import load_model_dir
from edge_deploy.conversion.errors import ConversionError, ModelDirError
from edge_deploy.conversion.export import convert
from edge_deploy.conversion.result import ConversionResult, ModelIdentity, model_identity

__all__ = [
    "ConversionError",
    "ConversionResult",
    "InputSpec",
    "Manifest",
    "ModelDir",
    "ModelDirError",
    "ModelIdentity",
    "Task",
    "Tolerances",
    "convert",
    "load_model_dir",
    "model_identity",
]
