"""serving.json: what the edge runtime needs to answer for the model in the device's terms.

Written beside end2end.onnx at conversion, from the same configs the export used:
- the task, the model type, and the ONNX input's name;
- `transforms`: the model config's test pipeline, as OpenMMLab's own inferencers run it. When the
  export is static and that pipeline does not yield the exported size for every frame shape, the
  pipeline MMDeploy fits to the static shape (`process_model_config`: resize to the input size)
  is recorded instead, and `pipeline_source` says so;
- `normalization`: the data preprocessor (mean, std, channel order, batch padding);
- `postprocess`: the test_cfg's score threshold, detections per image and mask threshold, whether
  masks are per box (Mask R-CNN) or whole-input (RTMDet-Ins), and for whole-input ones what mmdet
  resizes to the photo (`mask_resize`: "input", the whole input's logits, RTMDet-Ins and CondInst;
  "image", the probabilities within the resized image, SOLO), the decode head's align_corners;
- `classes` and `classes_source`: the manifest's `classes`, else the checkpoint's
  `meta.dataset_meta`, else the config's dataset metainfo, else the dataset class's METAINFO.
The runtime (edge_deploy.runtime.serving) reads it; it imports nothing from here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from edge_deploy.conversion.checkpoint import checkpoint_meta
from edge_deploy.conversion.contract import ModelDir, Task
from edge_deploy.runtime.preprocess import Normalization, PipelineError, Preprocess
from edge_deploy.runtime.serving import PROBE_FRAMES, SERVING_FILE, SERVING_FORMAT

log = logging.getLogger(__name__)

# Mask heads whose export already gives whole-input masks (mmdeploy's End2EndModel treats these so)
WHOLE_INPUT_MASK_MODELS = ("RTMDet", "CondInst", "SOLO", "SOLOv2")
# ...of which these, in mmdet, cut the padding off and resize the mask probabilities to the photo;
# RTMDet-Ins and CondInst resize the logits of the whole input instead
IMAGE_MASK_MODELS = ("SOLO", "SOLOv2")
# where MMDeploy fits a codebase's test pipeline to a static input shape
PROCESS_MODEL_CONFIG = {
    "mmdet": "mmdeploy.codebase.mmdet.deploy.object_detection",
    "mmseg": "mmdeploy.codebase.mmseg.deploy.segmentation",
    "mmpretrain": "mmdeploy.codebase.mmpretrain.deploy.classification",
}


def write_serving_recipe(model_dir: ModelDir, deploy_cfg, model_cfg, work_dir: Path) -> dict[str, Any]:
    recipe = serving_recipe(model_dir, deploy_cfg, model_cfg)
    (work_dir / SERVING_FILE).write_text(json.dumps(recipe, indent=1) + "\n")
    return recipe


def serving_recipe(model_dir: ModelDir, deploy_cfg, model_cfg) -> dict[str, Any]:
    """The recipe; for a pipeline the runtime cannot replay, one that says why (`unservable`): the
    model still converts and serves tensors, and /v1/predict answers with that reason."""
    manifest = model_dir.manifest
    spec = manifest.inputs[0]
    classes, classes_source = _classes(model_dir, model_cfg)
    recipe: dict[str, Any] = {
        "format": SERVING_FORMAT,
        "task": manifest.task.value,
        "codebase": manifest.codebase,
        "model_type": str(model_cfg.model.get("type", "")),
        "input": spec.name,
        "classes": classes,
        "classes_source": classes_source,
        "postprocess": _postprocess(model_cfg, deploy_cfg, manifest.task),
    }
    static_hw = None if {2, 3} & set(spec.dynamic_axes) else tuple(spec.height_width)
    try:
        transforms, normalization, source = _transforms(
            model_cfg, deploy_cfg, manifest.codebase, _normalization(model_cfg, manifest.codebase), static_hw
        )
    except PipelineError as exc:
        log.warning("%s: /v1/predict will be off: %s", model_dir.root.name, exc)
        return {**recipe, "unservable": str(exc)}
    return {
        **recipe,
        "transforms": transforms,
        "pipeline_source": source,
        "normalization": {
            "mean": list(normalization.mean),
            "std": list(normalization.std),
            "to_rgb": normalization.to_rgb,
            "pad_size_divisor": normalization.pad_size_divisor,
            "pad_value": normalization.pad_value,
            "pad_size": list(normalization.pad_size) if normalization.pad_size else None,
        },
    }


def _plain(value: Any) -> Any:
    """mmengine ConfigDicts and tuples as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _test_pipeline(model_cfg) -> list[dict[str, Any]]:
    pipeline = model_cfg.get("test_pipeline")
    if pipeline is None:
        pipeline = model_cfg.get("test_dataloader", {}).get("dataset", {}).get("pipeline")
    if not pipeline:
        raise PipelineError("the model config has no test_pipeline (nor test_dataloader.dataset.pipeline)")
    return _plain(list(pipeline))


def _transforms(
    model_cfg, deploy_cfg, codebase: str, normalization: Normalization, static_hw
) -> tuple[list[dict], Normalization, str]:
    """The pipeline to record, the normalization it needs, and where it comes from."""
    own = _test_pipeline(model_cfg)
    Preprocess(own, normalization)  # a transform or parameter the runtime cannot replay: PipelineError
    if static_hw is None or _fits(own, normalization, static_hw):
        return own, normalization, "the model config's test_pipeline"
    # a keep-ratio resize within the static size: padded at the bottom and right to it, which the
    # answer crops off again (the photo is not distorted, as a resize to the exact size would)
    padded = dataclasses.replace(normalization, pad_size=tuple(static_hw), pad_size_divisor=1)
    if _fits(own, padded, static_hw):
        size = f"{static_hw[0]}x{static_hw[1]}"
        return own, padded, f"the model config's test_pipeline, padded to the static input {size}"
    import importlib

    from mmdeploy.utils import get_input_shape

    module = importlib.import_module(PROCESS_MODEL_CONFIG[codebase])
    fitted = _plain(list(module.process_model_config(model_cfg, [""], get_input_shape(deploy_cfg)).test_pipeline))
    if not _fits(fitted, normalization, static_hw):
        raise PipelineError(
            f"neither the test pipeline nor MMDeploy's fitted one turns every frame into the static input "
            f"{static_hw[0]}x{static_hw[1]}: export with a dynamic deploy profile"
        )
    log.info("the test pipeline does not yield %s for every frame: recording MMDeploy's fitted pipeline", static_hw)
    return fitted, normalization, f"MMDeploy's pipeline fitted to the static input {static_hw[0]}x{static_hw[1]}"


def _fits(transforms: list[dict], normalization: Normalization, static_hw: tuple[int, int]) -> bool:
    import numpy as np

    preprocess = Preprocess(transforms, normalization)
    return all(preprocess(np.zeros((h, w, 3), dtype=np.uint8)).tensor.shape[2:] == static_hw for h, w in PROBE_FRAMES)


def _normalization(model_cfg, codebase: str) -> Normalization:
    dp = model_cfg.model.get("data_preprocessor") or model_cfg.get("data_preprocessor") or {}
    mean, std = dp.get("mean"), dp.get("std")
    test_cfg = dp.get("test_cfg") or {}
    pad_size = test_cfg.get("size") if codebase == "mmseg" else None
    divisor = test_cfg.get("size_divisor") if codebase == "mmseg" else dp.get("pad_size_divisor", 1)
    return Normalization(
        mean=tuple(float(v) for v in mean) if mean is not None else (0.0, 0.0, 0.0),
        std=tuple(float(v) for v in std) if std is not None else (1.0, 1.0, 1.0),
        to_rgb=bool(dp.get("bgr_to_rgb", dp.get("to_rgb", False))),
        pad_size_divisor=int(divisor or 1),
        pad_value=float(dp.get("pad_val" if codebase == "mmseg" else "pad_value", 0) or 0),
        # mmseg's test_cfg size is (h, w)
        pad_size=(int(pad_size[0]), int(pad_size[1])) if pad_size else None,
    )


def _postprocess(model_cfg, deploy_cfg, task: Task) -> dict[str, Any]:
    test_cfg = model_cfg.model.get("test_cfg") or {}
    stage = test_cfg.get("rcnn") or test_cfg  # two-stage detectors keep the final values under rcnn
    post: dict[str, Any] = {}
    if task in (Task.DETECTION, Task.INSTANCE_SEGMENTATION):
        post["score_threshold"] = float(stage.get("score_thr", 0.0) or 0.0)
        post["max_detections"] = int(stage.get("max_per_img", 100) or 100)
    if task == Task.INSTANCE_SEGMENTATION:
        post["mask_threshold"] = float(stage.get("mask_thr_binary", stage.get("mask_thr", 0.5)))
        # as mmdeploy's End2EndModel decides: some heads, or the deploy config, export whole-input masks
        post_processing = deploy_cfg.get("codebase_config", {}).get("post_processing") or {}
        whole = post_processing.get("export_postprocess_mask", False)
        model_type = str(model_cfg.model.get("type", ""))
        post["per_box_masks"] = not whole and model_type not in WHOLE_INPUT_MASK_MODELS
        post["mask_resize"] = "image" if model_type in IMAGE_MASK_MODELS else "input"
    if task == Task.SEGMENTATION:
        head = model_cfg.model.get("decode_head") or {}
        head = head[-1] if isinstance(head, list) else head
        post["align_corners"] = bool(head.get("align_corners", False))
    return post


def _classes(model_dir: ModelDir, model_cfg) -> tuple[list[str], str]:
    if model_dir.manifest.classes:
        return list(model_dir.manifest.classes), "the manifest's classes"
    meta_classes = (checkpoint_meta(model_dir.checkpoint_path).get("dataset_meta") or {}).get("classes")
    if meta_classes:
        return [str(c) for c in meta_classes], "the checkpoint's meta.dataset_meta"
    dataset = model_cfg.get("test_dataloader", {}).get("dataset", {}) or {}
    metainfo = dataset.get("metainfo") or {}
    if metainfo.get("classes"):
        return [str(c) for c in metainfo["classes"]], "the model config's test dataset metainfo"
    registered = _dataset_classes(model_cfg, dataset.get("type"))
    if registered:
        return registered, f"the dataset class {dataset.get('type')}'s METAINFO"
    return [], "none: answers name classes by their label number"


def _dataset_classes(model_cfg, dataset_type: str | None) -> list[str]:
    """The class names the codebase's dataset class declares (its METAINFO), found in its own registry."""
    import importlib

    scope = model_cfg.get("default_scope")
    if not dataset_type or not scope:
        return []
    try:
        registry = importlib.import_module(f"{scope}.registry").DATASETS
        dataset_class = registry.get(dataset_type)
    except (ImportError, AttributeError, KeyError):
        return []
    classes = (getattr(dataset_class, "METAINFO", None) or {}).get("classes") if dataset_class else None
    return [str(c) for c in classes] if classes else []
