"""Built-in MMDeploy deploy profiles (ONNX Runtime), shipped as data because the mmdeploy wheel has none.

The files below this package are mmengine configs laid out like mmdeploy's own `configs/` tree
(same `_base_` chain, same values as mmdeploy 1.3.1), so a user can read them side by side with
mmdeploy's documentation. A profile is picked by name in a model directory's manifest; a deploy
config file in the model directory replaces it entirely.
"""

from __future__ import annotations

from pathlib import Path

from edge_deploy.errors import EdgeDeployError

PROFILE_ROOT = Path(__file__).resolve().parent

# name -> (file under PROFILE_ROOT, codebase, task). Names follow mmdeploy's file names.
BUILTIN_PROFILES: dict[str, tuple[str, str, str]] = {
    "classification_onnxruntime_static": (
        "mmpretrain/classification_onnxruntime_static.py",
        "mmpretrain",
        "classification",
    ),
    "classification_onnxruntime_dynamic": (
        "mmpretrain/classification_onnxruntime_dynamic.py",
        "mmpretrain",
        "classification",
    ),
    "detection_onnxruntime_static": ("mmdet/detection/detection_onnxruntime_static.py", "mmdet", "detection"),
    "detection_onnxruntime_dynamic": ("mmdet/detection/detection_onnxruntime_dynamic.py", "mmdet", "detection"),
    "instance-seg_onnxruntime_static": (
        "mmdet/instance-seg/instance-seg_onnxruntime_static.py",
        "mmdet",
        "instance-segmentation",
    ),
    "instance-seg_onnxruntime_dynamic": (
        "mmdet/instance-seg/instance-seg_onnxruntime_dynamic.py",
        "mmdet",
        "instance-segmentation",
    ),
    "segmentation_onnxruntime_static": ("mmseg/segmentation_onnxruntime_static.py", "mmseg", "segmentation"),
    "segmentation_onnxruntime_dynamic": ("mmseg/segmentation_onnxruntime_dynamic.py", "mmseg", "segmentation"),
    # Opt-in: mmdeploy's class map instead of the logits (a smaller output, boundaries approximate).
    "segmentation-argmax_onnxruntime_static": (
        "mmseg/segmentation-argmax_onnxruntime_static.py",
        "mmseg",
        "segmentation",
    ),
    "segmentation-argmax_onnxruntime_dynamic": (
        "mmseg/segmentation-argmax_onnxruntime_dynamic.py",
        "mmseg",
        "segmentation",
    ),
}
# The profile a task gets when the manifest names none: mmdeploy's file-name prefix per task.
DEFAULT_PREFIX = {
    "classification": "classification",
    "detection": "detection",
    "instance-segmentation": "instance-seg",
    "segmentation": "segmentation",
}


class UnknownProfileError(EdgeDeployError):
    """A deploy profile name that is neither built in nor a file in the model directory."""


def available_profiles() -> list[str]:
    return sorted(BUILTIN_PROFILES)


def is_builtin(name: str) -> bool:
    return name in BUILTIN_PROFILES


def profile_path(name: str) -> Path:
    """The config file of a built-in profile; the error lists every available name."""
    try:
        relative, _, _ = BUILTIN_PROFILES[name]
    except KeyError:
        raise UnknownProfileError(
            f"unknown deploy profile {name!r}; available: {', '.join(available_profiles())}"
        ) from None
    return PROFILE_ROOT / relative


def default_profile(task: str, dynamic: bool = False) -> str:
    """The built-in profile for a task: static shapes unless asked (static exports every model)."""
    kind = "dynamic" if dynamic else "static"
    if task not in DEFAULT_PREFIX:
        raise UnknownProfileError(f"no built-in {kind} deploy profile for task {task!r}")
    return f"{DEFAULT_PREFIX[task]}_onnxruntime_{kind}"


def load_profile(path: Path):
    """Load a deploy config (built-in file or user file) as an mmengine Config."""
    from mmengine.config import Config

    return Config.fromfile(str(path))
