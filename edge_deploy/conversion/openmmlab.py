"""The model as OpenMMLab and MMDeploy see it: configs loaded, the manifest applied, the PyTorch model built."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from edge_deploy.conversion.checkpoint import strict_checkpoint_loading
from edge_deploy.conversion.contract import ModelDir
from edge_deploy.conversion.environment import mmdeploy_environment
from edge_deploy.conversion.errors import ConversionError, ModelDirError, describe
from edge_deploy.files import ONNX_FILE_NAME

log = logging.getLogger(__name__)


def load_model_config(config_path: Path):
    from mmengine.config import Config

    try:
        return Config.fromfile(str(config_path))
    except Exception as exc:  # mmengine raises many types for a bad config file
        raise ModelDirError(f"{config_path.name}: cannot load the model config: {type(exc).__name__}: {exc}") from exc


def load_configs(model_dir: ModelDir):
    """(deploy_cfg, model_cfg) as mmengine Configs, with the manifest applied to the deploy config.

    The manifest is authoritative for the opset and the export shape: the deploy config's
    `opset_version` is replaced by the manifest's, and static height/width become `input_shape`.
    """
    from mmengine.config import Config

    try:
        deploy_cfg = Config.fromfile(str(model_dir.deploy_config_path))
    except Exception as exc:
        raise ConversionError(
            "config load", f"deploy config {model_dir.manifest.deploy_profile}: {describe(exc)}"
        ) from exc
    try:
        model_cfg = Config.fromfile(str(model_dir.config_path))
    except Exception as exc:
        raise ConversionError("config load", f"model config {model_dir.config_path.name}: {describe(exc)}") from exc
    refuse_sliding_inference(model_cfg, model_dir.config_path)
    apply_manifest(deploy_cfg, model_dir)
    follow_test_cfg(deploy_cfg, model_cfg)
    return deploy_cfg, model_cfg


def refuse_sliding_inference(model_cfg, config_path: Path) -> None:
    """A segmentor whose test_cfg slides windows over the image (mmseg's mode='slide') is refused:
    MMDeploy exports whole-image inference only, so the image would answer otherwise than the config
    (Segmenter on a photo: 44 % of pixels as PyTorch's). Whole-image answers are the user's choice,
    made in the config, where it shows."""
    test_cfg = model_cfg.get("model", {}).get("test_cfg") or {}
    if test_cfg.get("mode") != "slide":
        return
    window = f"{tuple(test_cfg.get('crop_size', ()))} windows, stride {tuple(test_cfg.get('stride', ()))}"
    raise ModelDirError(
        f"{config_path.name}: model.test_cfg.mode is 'slide' ({window}), and MMDeploy exports whole-image "
        f"inference only, so the edge image would answer otherwise than this config. To deploy whole-image "
        f"inference, set model.test_cfg = dict(mode='whole') in {config_path.name}"
    )


def apply_manifest(deploy_cfg, model_dir: ModelDir) -> None:
    manifest = model_dir.manifest
    onnx_cfg = deploy_cfg.onnx_config
    if onnx_cfg.get("opset_version") != manifest.opset:
        log.info(
            "opset %s from the manifest replaces the deploy config's opset_version %s",
            manifest.opset,
            onnx_cfg.get("opset_version"),
        )
    onnx_cfg.opset_version = manifest.opset
    onnx_cfg.save_file = ONNX_FILE_NAME
    spec = manifest.inputs[0]
    # A static height/width is pinned in the deploy config so both the exporter's resize step and
    # the SDK's pipeline.json produce exactly the manifest's size; dynamic ones are left free.
    if not {2, 3} & set(spec.dynamic_axes):
        height, width = spec.height_width
        onnx_cfg.input_shape = [width, height]


def follow_test_cfg(deploy_cfg, model_cfg) -> None:
    """A detector's exported NMS keeps what its PyTorch model keeps: the deploy config's post_processing
    takes the model config's test_cfg (final stage: `rcnn` for two-stage detectors) score threshold,
    IoU threshold and detections per image. MMDeploy's stock configs carry fixed values instead (IoU 0.5,
    100 per image), so the ONNX model would answer otherwise than the model it was converted from."""
    post = deploy_cfg.get("codebase_config", {}).get("post_processing")
    test_cfg = model_cfg.get("model", {}).get("test_cfg") or {}
    stage = test_cfg.get("rcnn") or test_cfg
    if post is None or not stage:
        return
    wanted = {
        "score_threshold": stage.get("score_thr"),
        "iou_threshold": (stage.get("nms") or {}).get("iou_threshold"),
        "keep_top_k": stage.get("max_per_img"),
        "max_output_boxes_per_class": stage.get("max_per_img"),  # mmdet's NMS has no per-class cap
    }
    changed = {key: value for key, value in wanted.items() if value is not None and post.get(key) != value}
    if changed:
        log.info("the export's post_processing follows the model's test_cfg: %s", changed)
        post.update(changed)


def build_pytorch_model(deploy_cfg, model_cfg, checkpoint: Path, device: str = "cpu"):
    """(model in eval mode, mmdeploy task processor), built the way MMDeploy builds it for export.

    The checkpoint is loaded strictly: missing or unexpected keys and shape mismatches raise a
    ConversionError (stage "checkpoint load") that names them.
    """
    with mmdeploy_environment():
        from mmdeploy.apis import build_task_processor

        try:
            task_processor = build_task_processor(model_cfg, deploy_cfg, device)
        except Exception as exc:
            raise ConversionError("model build", describe(exc)) from exc
        with strict_checkpoint_loading():
            try:
                model = task_processor.build_pytorch_model(str(checkpoint))
            except ConversionError:
                raise
            except Exception as exc:
                raise ConversionError("model build", describe(exc)) from exc
    return model, task_processor


def pipeline_output_sizes(model_cfg, deploy_cfg, image_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (H, W) the model receives for images of each (H, W): the codebase's own test pipeline and
    the model's data preprocessor (resizes, crops, size-divisor padding) run on a synthetic image,
    as MMDeploy prepares its export input."""
    import numpy as np

    with mmdeploy_environment():
        from mmdeploy.apis import build_task_processor

        task_processor = build_task_processor(copy.deepcopy(model_cfg), deploy_cfg, "cpu")
        preprocessor = task_processor.build_data_preprocessor()
        sizes = []
        for height, width in image_sizes:
            image = np.zeros((height, width, 3), dtype=np.uint8)
            _, batch = task_processor.create_input(image, input_shape=None, data_preprocessor=preprocessor)
            sizes.append((int(batch.shape[-2]), int(batch.shape[-1])))
    return sizes
