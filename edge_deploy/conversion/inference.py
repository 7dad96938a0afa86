"""A manifest made up from the model config, for a model directory that has none.

What is inferred is listed in `ModelDir.inferred` and logged, so nothing is silent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge_deploy.conversion import profiles
from edge_deploy.conversion.contract import (
    CODEBASE_TASK,
    DEFAULT_TARGETS,
    DEPLOY_CONFIG_NAME,
    MIN_OPSET,
    InputSpec,
    Manifest,
    ModelDir,
)
from edge_deploy.conversion.manifest import (
    Problems,
    check_against_profile,
    check_opset,
    pick_file,
    profile_dynamic_axes,
)
from edge_deploy.conversion.openmmlab import load_model_config

log = logging.getLogger(__name__)


def infer_model_dir(root: Path) -> ModelDir:
    problems = Problems(f"{root.name} (no manifest: inferring from the model config)")
    inferred: list[str] = []
    has_deploy_file = (root / DEPLOY_CONFIG_NAME).is_file()
    config_path = pick_file(root, None, "config", ".py", problems, exclude={DEPLOY_CONFIG_NAME})
    checkpoint_path = pick_file(root, None, "checkpoint", ".pth", problems)
    problems.raise_if_any()
    inferred.append(f"config={config_path.name}, checkpoint={checkpoint_path.name} (the only such files)")

    model_cfg = load_model_config(config_path)
    codebase, how = infer_codebase(model_cfg)
    if codebase is None:
        problems.add("codebase", f"cannot infer it from {config_path.name} ({how}); write a manifest")
        problems.raise_if_any()
    task = CODEBASE_TASK[codebase]
    inferred.append(f"codebase={codebase} ({how}), task={task.value}")

    if has_deploy_file:
        profile_name = DEPLOY_CONFIG_NAME
        deploy_config_path = root / DEPLOY_CONFIG_NAME
        inferred.append(f"deploy_profile={DEPLOY_CONFIG_NAME} (found in the directory)")
    else:
        profile_name = profiles.default_profile(task.value)
        deploy_config_path = profiles.profile_path(profile_name)
        inferred.append(f"deploy_profile={profile_name} (built-in default for {task.value})")
    deploy_cfg = profiles.load_profile(deploy_config_path)
    onnx_cfg = deploy_cfg.onnx_config

    opset = int(onnx_cfg.get("opset_version", MIN_OPSET))
    check_opset(opset, problems, f"{profile_name}: onnx_config.opset_version")
    height_width, shape_source = _infer_height_width(model_cfg, onnx_cfg)
    if height_width is None:
        problems.add("inputs", f"cannot infer the input shape: {shape_source}; write a manifest with inputs[0].shape")
    problems.raise_if_any()
    inferred.append(f"opset={opset} (from the deploy profile)")
    inferred.append(f"input shape 1x3x{height_width[0]}x{height_width[1]} ({shape_source})")
    inferred.append(f"targets={list(DEFAULT_TARGETS)} (default)")

    input_name = onnx_cfg.input_names[0]
    dynamic_axes = profile_dynamic_axes(deploy_cfg).get(input_name, {})
    manifest = Manifest(
        task=task,
        codebase=codebase,
        inputs=[InputSpec(input_name, [1, 3, *height_width], dynamic_axes)],
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
    return ModelDir(root, manifest, config_path, checkpoint_path, inferred, deploy_config_path, None)


def infer_codebase(model_cfg) -> tuple[str | None, str]:
    """The codebase from `default_scope`, else by finding `model.type` in each codebase's registry."""
    scope = model_cfg.get("default_scope")
    if scope in CODEBASE_TASK:
        return scope, f"default_scope={scope}"
    model_type = (model_cfg.get("model") or {}).get("type")
    if not model_type:
        return None, "no default_scope and no model.type"
    import importlib

    from edge_deploy.conversion.environment import ensure_torchvision_importable

    ensure_torchvision_importable()  # mmpretrain's registry imports torchvision
    for codebase in CODEBASE_TASK:
        registry = importlib.import_module(f"{codebase}.registry").MODELS
        if registry.get(model_type) is not None:
            return codebase, f"model.type={model_type} is registered in {codebase}"
    return None, f"model.type={model_type} is in none of {', '.join(CODEBASE_TASK)}"


def _infer_height_width(model_cfg, onnx_cfg) -> tuple[tuple[int, int] | None, str]:
    """(H, W) from the deploy config's input_shape, else from the test pipeline's last sizing step."""
    input_shape = onnx_cfg.get("input_shape")
    if input_shape:
        width, height = input_shape
        return (int(height), int(width)), "deploy config onnx_config.input_shape"
    pipeline = _test_pipeline(model_cfg)
    if pipeline is None:
        return None, "the model config has no test pipeline"
    found: tuple[int, int] | None = None
    source = "no fixed-size Resize/CenterCrop/Pad step in the test pipeline"
    for step in pipeline:
        size = _step_output_size(step)
        if size is not None:
            found, source = size, f"test pipeline {step['type']}"
    return found, source


def _test_pipeline(model_cfg) -> list | None:
    loader = model_cfg.get("test_dataloader") or {}
    dataset = loader.get("dataset") or {}
    while "pipeline" not in dataset and isinstance(dataset.get("dataset"), dict):
        dataset = dataset["dataset"]  # wrappers such as RepeatDataset
    return dataset.get("pipeline") or model_cfg.get("test_pipeline")


def _step_output_size(step: dict) -> tuple[int, int] | None:
    """(H, W) a pipeline step fixes; OpenMMLab sizes are (w, h) or a single int."""
    kind = step.get("type", "")
    if kind == "CenterCrop":
        return _hw(step.get("crop_size"))
    if kind in ("Resize", "mmdet.Resize", "mmseg.Resize") and step.get("scale") is not None:
        return _hw(step["scale"])
    if kind in ("Pad", "mmdet.Pad") and step.get("size") is not None:
        return _hw(step["size"])
    return None


def _hw(size: Any) -> tuple[int, int] | None:
    if isinstance(size, int):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        width, height = size
        return height, width
    return None
