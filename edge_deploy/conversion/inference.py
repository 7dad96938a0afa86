"""A manifest made up from the model config, for a model directory that has none.

- codebase: the config's `default_scope`, else the codebase whose registry knows `model.type`;
- task: what the codebase does; an mmdet model with a mask head is instance segmentation;
- input size: the codebase's own test pipeline and the model's data preprocessor are run on
  synthetic images of a few sizes, so the size is the one the model really receives (crops,
  keep-ratio resizes, padding to a size divisor included). When it is the same for every image, the
  static profile is used at that size; when it depends on the image (a keep-ratio resize), the
  dynamic profile, traced at the size a VGA camera frame (480x640) becomes;
- opset and outputs: the deploy profile's.

What is inferred is listed in `ModelDir.inferred` and logged, so nothing is silent.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from edge_deploy.conversion import profiles
from edge_deploy.conversion.contract import (
    CODEBASE_TASKS,
    DEFAULT_TARGETS,
    DEPLOY_CONFIG_NAME,
    MASKS_OUTPUT,
    MMDEPLOY_TASK,
    InputSpec,
    Manifest,
    ModelDir,
    Task,
)
from edge_deploy.conversion.errors import describe
from edge_deploy.conversion.manifest import (
    Problems,
    check_against_profile,
    pick_file,
    profile_dynamic_axes,
    profile_opset,
)
from edge_deploy.conversion.openmmlab import load_model_config, pipeline_output_sizes

log = logging.getLogger(__name__)

# Synthetic images (H, W) the test pipeline is run on: a landscape and a portrait camera frame and a
# square one. The first is the size a dynamic model is traced at.
PROBE_IMAGES = ((480, 640), (640, 480), (1024, 1024))


def infer_model_dir(root: Path) -> ModelDir:
    problems = Problems(f"{root.name} (no manifest: inferring from the model config)")
    inferred: list[str] = []
    config_path = pick_file(root, None, "config", ".py", problems, exclude={DEPLOY_CONFIG_NAME})
    checkpoint_path = pick_file(root, None, "checkpoint", ".pth", problems)
    problems.raise_if_any()
    inferred.append(f"config={config_path.name}, checkpoint={checkpoint_path.name} (the only such files)")

    model_cfg = load_model_config(config_path)
    codebase, how = infer_codebase(model_cfg)
    if codebase is None:
        problems.add("codebase", f"cannot infer it from {config_path.name} ({how}); write a manifest")
        problems.raise_if_any()
    task, task_how = _task_of_deploy_file(root) or infer_task(model_cfg, codebase)
    inferred.append(f"codebase={codebase} ({how}), task={task.value} ({task_how})")

    shape, dynamic, shape_source = _infer_input_size(root, model_cfg, task, problems)
    profile_name, deploy_config_path = _pick_profile(root, task, dynamic, inferred)
    deploy_cfg = profiles.load_profile(deploy_config_path)
    onnx_cfg = deploy_cfg.onnx_config
    input_axes = profile_dynamic_axes(deploy_cfg).get(onnx_cfg.input_names[0], {})
    if dynamic and not {2, 3} <= set(input_axes) and profile_name != DEPLOY_CONFIG_NAME:
        problems.add(
            "inputs",
            f"cannot infer the input shape: {shape_source}, and the {task.value} profiles fix height and width; "
            "write a manifest with inputs[0].shape (or give the test pipeline a fixed-size crop)",
        )
    opset = profile_opset(deploy_cfg, profile_name, problems)
    problems.raise_if_any()
    inferred.append(f"opset={opset} (from the deploy profile)")
    inferred.append(f"input shape 1x3x{shape[0]}x{shape[1]} ({shape_source})")
    inferred.append(f"targets={list(DEFAULT_TARGETS)} (default)")

    input_name = onnx_cfg.input_names[0]
    manifest = Manifest(
        task=task,
        codebase=codebase,
        inputs=[InputSpec(input_name, [1, 3, *shape], input_axes)],
        outputs=list(onnx_cfg.output_names),
        deploy_profile=profile_name,
        opset=opset,
        targets=list(DEFAULT_TARGETS),
        tolerances=None,
        config=config_path.name,
        checkpoint=checkpoint_path.name,
    )
    check_against_profile(manifest, deploy_cfg, problems)
    problems.raise_if_any()
    return ModelDir(
        root,
        manifest,
        config_path,
        checkpoint_path,
        inferred,
        deploy_config_path,
        None,
        profile_pinned=profile_name == DEPLOY_CONFIG_NAME,
    )


def _pick_profile(root: Path, task: Task, dynamic: bool, inferred: list[str]) -> tuple[str, Path]:
    if (root / DEPLOY_CONFIG_NAME).is_file():
        inferred.append(f"deploy_profile={DEPLOY_CONFIG_NAME} (found in the directory)")
        return DEPLOY_CONFIG_NAME, root / DEPLOY_CONFIG_NAME
    name = profiles.default_profile(task.value, dynamic=dynamic)
    why = "the input size depends on the image" if dynamic else "the input size is fixed"
    inferred.append(f"deploy_profile={name} (built-in {'dynamic' if dynamic else 'static'} profile: {why})")
    return name, profiles.profile_path(name)


def _infer_input_size(root: Path, model_cfg, task: Task, problems: Problems) -> tuple[tuple[int, int], bool, str]:
    """((H, W), whether it depends on the image, where it came from)."""
    deploy_file = root / DEPLOY_CONFIG_NAME
    deploy_cfg = profiles.load_profile(
        deploy_file if deploy_file.is_file() else profiles.profile_path(profiles.default_profile(task.value))
    )
    fixed = deploy_cfg.onnx_config.get("input_shape")
    if fixed:
        width, height = fixed
        return (int(height), int(width)), False, f"{DEPLOY_CONFIG_NAME} onnx_config.input_shape"
    try:
        sizes = pipeline_output_sizes(model_cfg, deploy_cfg, list(PROBE_IMAGES))
    except Exception as exc:  # any codebase's pipeline code may fail on a config it was not written for
        problems.add(
            "inputs",
            "cannot infer the input shape: the test pipeline failed on a synthetic image "
            f"({describe(exc)}); write a manifest with inputs[0].shape",
        )
        problems.raise_if_any()
    seen = ", ".join(f"{h}x{w} -> {s[0]}x{s[1]}" for (h, w), s in zip(PROBE_IMAGES, sizes, strict=True))
    if len(set(sizes)) == 1:
        return sizes[0], False, f"the test pipeline gives every image this size: {seen}"
    return sizes[0], True, f"the test pipeline's size depends on the image ({seen}); traced at the first"


def _task_of_deploy_file(root: Path) -> tuple[Task, str] | None:
    deploy_file = root / DEPLOY_CONFIG_NAME
    if not deploy_file.is_file():
        return None
    deploy_cfg = profiles.load_profile(deploy_file)
    named = (deploy_cfg.get("codebase_config") or {}).get("task")
    task = next((task for task, mmdeploy_name in MMDEPLOY_TASK.items() if mmdeploy_name == named), None)
    if task is Task.DETECTION and MASKS_OUTPUT in (deploy_cfg.get("onnx_config") or {}).get("output_names", []):
        task = Task.INSTANCE_SEGMENTATION
    return (task, f"{DEPLOY_CONFIG_NAME} exports {named}") if task else None


def infer_task(model_cfg, codebase: str) -> tuple[Task, str]:
    """The codebase's task; an mmdet model with a mask head (Mask R-CNN, RTMDet-Ins, SOLO...) segments instances."""
    if codebase == "mmdet":
        head = _mask_head(model_cfg.get("model") or {})
        if head:
            return Task.INSTANCE_SEGMENTATION, f"the model has a mask head ({head})"
    return CODEBASE_TASKS[codebase][0], f"what {codebase} models do"


def _mask_head(model: Any) -> str | None:
    """The type of the first mask head in a model config (a `mask_head`, or a head type naming instances)."""
    if not isinstance(model, dict):
        return None
    for key, value in model.items():
        if not isinstance(value, dict):
            continue
        kind = str(value.get("type", ""))
        if key == "mask_head" or (key.endswith("head") and "Ins" in kind):
            return kind or key
        found = _mask_head(value)
        if found:
            return found
    return None


def infer_codebase(model_cfg) -> tuple[str | None, str]:
    """The codebase from `default_scope`, else by finding `model.type` in each codebase's registry."""
    scope = model_cfg.get("default_scope")
    if scope in CODEBASE_TASKS:
        return scope, f"default_scope={scope}"
    model_type = (model_cfg.get("model") or {}).get("type")
    if not model_type:
        return None, "no default_scope and no model.type"
    from edge_deploy.conversion.environment import ensure_torchvision_importable

    ensure_torchvision_importable()  # mmpretrain's registry imports torchvision
    for codebase in CODEBASE_TASKS:
        registry = importlib.import_module(f"{codebase}.registry").MODELS
        if registry.get(model_type) is not None:
            return codebase, f"model.type={model_type} is registered in {codebase}"
    return None, f"model.type={model_type} is in none of {', '.join(CODEBASE_TASKS)}"
