"""The model directory contract: what a model version in lakeFS (`{branch}/model/`) holds.

A model directory holds an OpenMMLab model config (`.py`), its checkpoint (`.pth`; plaintext here,
decrypted upstream when the source is encrypted) and a manifest (`manifest.yaml`) that says what the
model is and how to export it. docs/model-directory.md is the user-facing description. These are
the types; `manifest` reads them from a directory, `inference` makes them up when there is no manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from edge_deploy.conversion import profiles

MANIFEST_NAMES = ("manifest.yaml", "manifest.yml", "manifest.json")
# The deploy config a manifest-less directory may carry; with a manifest, any file name works.
DEPLOY_CONFIG_NAME = "deploy_config.py"
MANIFEST_VERSION = 1

# mmdeploy 1.3.1's rewriters and symbolic functions emit opset-11 operators (NonMaxSuppression,
# dynamic Resize/TopK/Range), so 11 is the floor. Its opset-aware code only distinguishes < 13 and
# >= 13 (Squeeze/Unsqueeze axes), and its own deploy configs stop at 17; opset 18 moved the axes of
# Reduce*/Split/Pad into inputs, which mmdeploy was never tested against. (ResNet-18 and RTMDet-tiny
# did export and run at 18 here; raise MAX_OPSET once the validation gate passes at that opset.)
MIN_OPSET = 11
MAX_OPSET = 17
DEFAULT_TARGETS = ("linux/amd64",)


class Task(StrEnum):
    CLASSIFICATION = "classification"
    DETECTION = "detection"
    INSTANCE_SEGMENTATION = "instance-segmentation"
    SEGMENTATION = "segmentation"


# What each codebase does (its first task is what a model of it does unless it says otherwise).
CODEBASE_TASKS = {
    "mmpretrain": (Task.CLASSIFICATION,),
    "mmdet": (Task.DETECTION, Task.INSTANCE_SEGMENTATION),
    "mmseg": (Task.SEGMENTATION,),
}
# mmdeploy's codebase_config.task for each task. mmdeploy exports instance segmentation as an
# ObjectDetection task whose outputs include `masks` (configs/mmdet/_base_/base_instance-seg_static.py).
MMDEPLOY_TASK = {
    Task.CLASSIFICATION: "Classification",
    Task.DETECTION: "ObjectDetection",
    Task.INSTANCE_SEGMENTATION: "ObjectDetection",
    Task.SEGMENTATION: "Segmentation",
}
MASKS_OUTPUT = "masks"


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: list[int]  # NCHW, e.g. [1, 3, 224, 224]: the shape the model is exported (traced) at
    dynamic_axes: dict[int, str] = field(default_factory=dict)  # axis index -> name, e.g. {0: "batch"}
    dtype: str = "float32"

    @property
    def height_width(self) -> tuple[int, int]:
        return self.shape[2], self.shape[3]


@dataclass(frozen=True)
class Tolerances:
    """Parity tolerances for validation; fields left None fall back to the per-task defaults."""

    atol: float
    rtol: float
    # Task-level agreement the gate requires (fraction 0..1): top-1 labels for classification,
    # matched detections for detection, pixel argmax for segmentation.
    min_task_agreement: float | None = None


@dataclass(frozen=True)
class Manifest:
    task: Task
    codebase: str
    inputs: list[InputSpec]
    outputs: list[str]
    deploy_profile: str  # a built-in profile name or a deploy config file name in the directory
    opset: int
    targets: list[str]
    tolerances: Tolerances | None = None
    config: str | None = None  # model config file name; default: the only other `.py` file
    checkpoint: str | None = None  # checkpoint file name; default: the only `.pth` file
    classes: list[str] | None = None  # class names in label order; default: the checkpoint's or the config's

    def to_dict(self) -> dict[str, Any]:
        """The manifest as written to `manifest.yaml` (only the fields that are set)."""
        data = asdict(self)
        data["task"] = self.task.value
        data = {"version": MANIFEST_VERSION, **data}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Back from `to_dict` (also after a JSON round trip, which turns axis indices into strings).
        For manifests this package wrote; a user's manifest goes through `manifest.load_with_manifest`."""
        inputs = [
            InputSpec(i["name"], list(i["shape"]), {int(k): v for k, v in i["dynamic_axes"].items()}, i["dtype"])
            for i in data["inputs"]
        ]
        tolerances = Tolerances(**data["tolerances"]) if data.get("tolerances") else None
        fields = {key: data[key] for key in ("codebase", "outputs", "deploy_profile", "opset", "targets")}
        return cls(
            task=Task(data["task"]),
            inputs=inputs,
            tolerances=tolerances,
            config=data.get("config"),
            checkpoint=data.get("checkpoint"),
            classes=data.get("classes"),
            **fields,
        )


@dataclass(frozen=True)
class ModelDir:
    root: Path
    manifest: Manifest
    config_path: Path
    checkpoint_path: Path
    inferred: list[str]  # what was inferred (no manifest, or fields the manifest left out)
    deploy_config_path: Path  # the deploy config actually used: a built-in profile or a file here
    manifest_path: Path | None = None
    opset_pinned: bool = False  # the manifest names the opset; otherwise the conversion may raise it
    profile_pinned: bool = True  # False when inference chose a built-in profile the conversion may change

    @property
    def profile_is_builtin(self) -> bool:
        return profiles.is_builtin(self.manifest.deploy_profile)


def write_manifest(root: Path, manifest: Manifest) -> Path:
    path = root / MANIFEST_NAMES[0]
    text = "# edge-deploy model manifest: see docs/model-directory.md\n"
    text += yaml.safe_dump(manifest.to_dict(), sort_keys=False, default_flow_style=None)
    path.write_text(text)
    return path
