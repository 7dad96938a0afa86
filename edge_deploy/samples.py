"""Sample model directories built offline from the configs the OpenMMLab wheels ship.

Each sample takes a model config from its package's `.mim/configs`, shrinks the input to a size
that converts and validates in seconds, removes every pretrained-weight reference (nothing is ever
downloaded), and writes seeded random weights. BatchNorm running statistics and affine parameters
are randomized too, so BatchNorm is not an identity and parity checks exercise it. The same name
and seed always give byte-identical files.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_deploy.conversion import profiles
from edge_deploy.conversion.contract import (
    CODEBASE_TASKS,
    DEPLOY_CONFIG_NAME,
    InputSpec,
    Manifest,
    ModelDir,
    Task,
    write_manifest,
)
from edge_deploy.conversion.directory import load_model_dir
from edge_deploy.errors import EdgeDeployError
from edge_deploy.files import atomic_directory

log = logging.getLogger(__name__)

SAMPLE_TARGETS = ["linux/amd64", "linux/arm64"]


class SampleError(EdgeDeployError):
    """A sample cannot be written (unknown name, occupied directory, missing package config)."""


@dataclass(frozen=True)
class Sample:
    name: str
    codebase: str
    task: Task
    package_config: str  # path under the codebase package's `.mim/configs`
    height_width: tuple[int, int]
    base_profile: str  # built-in deploy profile the sample uses or starts its own deploy config from
    dynamic_axes: dict[int, str]
    deploy_overrides: dict[str, Any] | None  # when set: written as deploy_config.py over base_profile
    adapt_config: Callable[[Any, tuple[int, int]], None]
    description: str


def _resize_classifier(cfg, height_width: tuple[int, int]) -> None:
    height, width = height_width
    if height != width:
        raise SampleError("the classification sample's CenterCrop needs a square input")
    for step in _test_pipeline_steps(cfg):
        if step["type"] == "ResizeEdge":
            step["scale"] = height * 256 // 224  # ImageNet's usual resize-then-crop ratio
        elif step["type"] == "CenterCrop":
            step["crop_size"] = height


def _resize_detector(cfg, height_width: tuple[int, int]) -> None:
    height, width = height_width
    for step in _test_pipeline_steps(cfg):
        if step["type"] == "Resize":
            step["scale"] = (width, height)
        elif step["type"] == "Pad":
            step["size"] = (width, height)
    # Random weights score about 0.01: a zero threshold keeps every box so parity has detections.
    cfg.model.test_cfg.score_thr = 0.0


def _resize_segmentor(cfg, height_width: tuple[int, int]) -> None:
    height, width = height_width
    for step in _test_pipeline_steps(cfg):
        if step["type"] == "Resize":
            step["scale"] = (width, height)
    cfg.model.data_preprocessor.size = (height, width)
    cfg.data_preprocessor = cfg.model.data_preprocessor


SAMPLES: dict[str, Sample] = {
    sample.name: sample
    for sample in (
        Sample(
            name="resnet18",
            codebase="mmpretrain",
            task=Task.CLASSIFICATION,
            package_config="resnet/resnet18_8xb32_in1k.py",
            height_width=(224, 224),
            base_profile="classification_onnxruntime_dynamic",
            dynamic_axes={0: "batch"},
            deploy_overrides=None,
            adapt_config=_resize_classifier,
            description="mmpretrain ResNet-18 (ImageNet, 1000 classes), 224x224, dynamic batch",
        ),
        Sample(
            name="rtmdet-tiny",
            codebase="mmdet",
            task=Task.DETECTION,
            package_config="rtmdet/rtmdet_tiny_8xb32-300e_coco.py",
            height_width=(320, 320),
            base_profile="detection_onnxruntime_static",
            dynamic_axes={},
            # NMS is inside the exported graph: a zero score threshold keeps random-weight boxes.
            deploy_overrides={"codebase_config": {"post_processing": {"score_threshold": 0.0}}},
            adapt_config=_resize_detector,
            description="mmdet RTMDet-tiny (COCO, 80 classes), 320x320, static, NMS in the graph",
        ),
        Sample(
            name="ssdlite-mobilenetv2",
            codebase="mmdet",
            task=Task.DETECTION,
            package_config="ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py",
            height_width=(320, 320),
            base_profile="detection_onnxruntime_static",
            dynamic_axes={},
            # With no threshold all 200 boxes of the test_cfg's max_per_img are kept, and random
            # weights give scores so close that the last places are ties: a detector's answer is a set.
            deploy_overrides={"codebase_config": {"post_processing": {"score_threshold": 0.0}}},
            adapt_config=_resize_detector,
            description="mmdet SSDLite MobileNetV2 (COCO, 80 classes), 320x320, static, 200 boxes kept",
        ),
        Sample(
            name="rtmdet-ins-tiny",
            codebase="mmdet",
            task=Task.INSTANCE_SEGMENTATION,
            package_config="rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py",
            height_width=(320, 320),
            base_profile="instance-seg_onnxruntime_static",
            dynamic_axes={},
            deploy_overrides={"codebase_config": {"post_processing": {"score_threshold": 0.0}}},
            adapt_config=_resize_detector,
            description="mmdet RTMDet-Ins-tiny (COCO, 80 classes), 320x320, static, boxes and masks",
        ),
        Sample(
            name="fast-scnn",
            codebase="mmseg",
            task=Task.SEGMENTATION,
            package_config="fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py",
            height_width=(256, 512),
            base_profile="segmentation_onnxruntime_static",
            dynamic_axes={},
            # A deploy config of its own, as a user writes one (the tests edit it); the same logits
            # the built-in profile exports, so parity compares real numbers.
            deploy_overrides={"codebase_config": {"with_argmax": False}},
            adapt_config=_resize_segmentor,
            description="mmseg Fast-SCNN (Cityscapes, 19 classes), 256x512, static, logits output",
        ),
    )
}


def write_sample(name: str, out_dir: Path, seed: int = 0, overwrite: bool = False) -> ModelDir:
    """Write the named sample as a ready model directory (config, checkpoint, manifest)."""
    sample = _get_sample(name)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, replace=overwrite) as staging:
        _write_into(sample, staging, seed)
    log.info("wrote sample %s (seed %d) to %s", name, seed, out_dir)
    return load_model_dir(out_dir)


def _get_sample(name: str) -> Sample:
    try:
        return SAMPLES[name]
    except KeyError:
        raise SampleError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}") from None


def _write_into(sample: Sample, root: Path, seed: int) -> None:
    cfg = load_package_config(sample)
    config_name = Path(sample.package_config).name
    checkpoint_name = Path(config_name).with_suffix(".pth").name
    cfg.dump(str(root / config_name))
    save_random_checkpoint(cfg, sample, root / checkpoint_name, seed)
    deploy_profile = sample.base_profile
    if sample.deploy_overrides is not None:
        deploy_cfg = profiles.load_profile(profiles.profile_path(sample.base_profile))
        deploy_cfg.merge_from_dict(_flatten(sample.deploy_overrides))
        deploy_cfg.dump(str(root / DEPLOY_CONFIG_NAME))
        deploy_profile = DEPLOY_CONFIG_NAME
    output_names = list(profiles.load_profile(profiles.profile_path(sample.base_profile)).onnx_config.output_names)
    manifest = Manifest(
        task=sample.task,
        codebase=sample.codebase,
        inputs=[InputSpec("input", [1, 3, *sample.height_width], dict(sample.dynamic_axes))],
        outputs=output_names,
        deploy_profile=deploy_profile,
        opset=11,
        targets=list(SAMPLE_TARGETS),
        tolerances=None,
        config=config_name,
        checkpoint=checkpoint_name,
    )
    write_manifest(root, manifest)


def _flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def shipped_config_path(codebase: str, relative: str) -> Path:
    """A model config the installed codebase package ships under its `.mim/configs`."""
    spec = importlib.util.find_spec(codebase)
    if spec is None or spec.origin is None:
        raise SampleError(f"package {codebase} is not installed; it ships configs/{relative}")
    path = Path(spec.origin).parent / ".mim" / "configs" / relative
    if not path.is_file():
        raise SampleError(f"{codebase} does not ship configs/{relative}")
    return path


def load_package_config(sample: Sample):
    """The shipped model config, flattened, shrunk to the sample size, with no pretrained weights."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(shipped_config_path(sample.codebase, sample.package_config)))
    _drop_pretrained(cfg._cfg_dict)
    cfg.load_from = None
    sample.adapt_config(cfg, sample.height_width)
    return cfg


def _drop_pretrained(node: Any) -> None:
    """Remove every pretrained-weight reference, so nothing tries to download a backbone."""
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            pretrained_path = key == "pretrained" and isinstance(value, str)
            if pretrained_path or _is_weight_url(value) or (key == "init_cfg" and _is_pretrained(value)):
                node[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _drop_pretrained(item)


def _is_weight_url(value: Any) -> bool:
    """A remote checkpoint, e.g. the `checkpoint = 'https://...pth'` variable configs keep for init_cfg."""
    return isinstance(value, str) and value.startswith(("http://", "https://")) and value.endswith((".pth", ".pt"))


def _is_pretrained(init_cfg: Any) -> bool:
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(item, dict) and item.get("type") == "Pretrained" for item in items)


def _test_pipeline_steps(cfg) -> list[list[dict]]:
    """Every copy of the test pipeline a config holds (top level and inside the test/val loaders)."""
    pipelines = []
    if cfg.get("test_pipeline"):
        pipelines.append(cfg.test_pipeline)
    for loader in ("test_dataloader", "val_dataloader"):
        dataset = (cfg.get(loader) or {}).get("dataset") or {}
        if dataset.get("pipeline"):
            pipelines.append(dataset["pipeline"])
    return [step for pipeline in pipelines for step in pipeline]


def build_model(cfg, codebase: str):
    """The model the config describes, built the way MMDeploy builds it (data preprocessor included)."""
    from mmengine.registry import DefaultScope

    from edge_deploy.conversion.environment import ensure_torchvision_importable

    ensure_torchvision_importable()
    registry = importlib.import_module(f"{codebase}.registry").MODELS
    model_cfg = cfg.model.copy()
    model_cfg.pop("pretrained", None)
    model_cfg.setdefault("data_preprocessor", cfg.get("data_preprocessor", {}))
    # Nested types (data preprocessor, backbone...) resolve in the codebase's registry scope.
    with DefaultScope.overwrite_default_scope(codebase):
        return registry.build(model_cfg)


def save_random_checkpoint(cfg, sample: Sample, path: Path, seed: int) -> None:
    meta = {"sample": sample.name, "seed": seed, "source_config": sample.package_config}
    _save_random_weights(cfg, sample.codebase, path, seed, meta)


def _save_random_weights(cfg, codebase: str, path: Path, seed: int, meta: dict, calibrate: bool = False) -> None:
    import torch

    from edge_deploy.conversion.environment import openmmlab_output_to_stderr

    with torch.random.fork_rng(devices=[]), openmmlab_output_to_stderr(), _quiet_mmengine():
        torch.manual_seed(seed)
        model = build_model(cfg, codebase)
        model.init_weights()
        generator = torch.Generator().manual_seed(seed + 1)
        if not (calibrate and calibrate_batchnorm(model, codebase, generator)):
            randomize_batchnorm(model, generator)
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    torch.save({"meta": meta, "state_dict": state}, str(path))


def write_shipped_config(spec: str, out_dir: Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Any model config a codebase ships (`codebase:path/under/.mim/configs.py`), with seeded random
    weights and no manifest, as a user would drop a trained model into a directory.

    Pretrained-weight references are removed (nothing is downloaded). The weights are the model's
    own initialization with BatchNorm statistics calibrated on random inputs (see
    `calibrate_batchnorm`), so activations stay in range as in a trained model; a detector's class
    scores then sit at their prior (about 0.01), below the built-in profiles' score threshold, so its
    exported NMS keeps few detections or none.
    """
    from mmengine.config import Config

    codebase, _, relative = spec.partition(":")
    if codebase not in CODEBASE_TASKS or not relative.endswith(".py"):
        raise SampleError(f"{spec!r}: expected CODEBASE:PATH.py with CODEBASE one of {', '.join(CODEBASE_TASKS)}")
    source = shipped_config_path(codebase, relative)
    cfg = Config.fromfile(str(source))
    _drop_pretrained(cfg._cfg_dict)
    cfg.load_from = None
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, replace=overwrite) as staging:
        cfg.dump(str(staging / source.name))
        meta = {"seed": seed, "source_config": spec}
        _save_random_weights(cfg, codebase, staging / source.with_suffix(".pth").name, seed, meta, calibrate=True)
    return out_dir


@contextlib.contextmanager
def _quiet_mmengine() -> Iterator[None]:
    """init_weights logs one INFO block per parameter; keep warnings only."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


CALIBRATION_SIZE = {"mmpretrain": 224}  # height = width; other codebases: 320


def calibrate_batchnorm(model, codebase: str, generator, batches: int = 4) -> bool:
    """Running statistics measured on random inputs through the backbone and neck (`extract_feat`).

    With a deep network's initial weights and running statistics of mean 0 and variance 1, the
    activations grow layer after layer in eval mode until every score saturates at 0 or 1; a trained
    network's statistics match its activations, and so do calibrated ones. False when the model
    cannot be calibrated this way (the caller falls back to `randomize_batchnorm`).
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms or not hasattr(model, "extract_feat"):
        return False
    side = CALIBRATION_SIZE.get(codebase, 320)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    model.train()
    try:
        with torch.no_grad():
            for _ in range(batches):
                model.extract_feat(torch.randn(2, 3, side, side, generator=generator))
    except Exception:  # a backbone that needs other inputs: the caller randomizes instead
        return False
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    return True


def randomize_batchnorm(model, generator) -> None:
    """Running statistics and affine parameters away from the identity (mean 0, var 1, w 1, b 0)."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, _BatchNorm) or not module.track_running_stats:
                continue
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            if module.affine:
                module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
