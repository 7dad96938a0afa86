"""Running MMDeploy 1.3.1 on this stack (torch 2.13 CPU), and building the PyTorch model it exports.

Two adaptations are applied by `mmdeploy_environment()` (facts in STACK.md):
- torch >= 2.9 makes `torch.onnx.export` default to the dynamo exporter, which bypasses MMDeploy's
  rewriters. MMDeploy looks `torch.onnx.export` up at call time, so for the duration of the context
  the TorchScript exporter (`dynamo=False`) becomes the default.
- The only torchvision for torch 2.13 is a CUDA build; beside the CPU torch its compiled ops fail
  to load and `import torchvision` dies on `operator torchvision::nms does not exist`. mmpretrain
  imports torchvision, so when (and only when) those ops fail to load, the nms/qnms operator
  schemas are defined before torchvision is imported. No code here calls torchvision's nms.

Checkpoints are loaded strictly: MMDeploy (through mmengine) loads them leniently and only logs
missing keys, which would export a half-random model; here a mismatch is an error naming the keys.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import logging
import pickle
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_deploy.errors import EdgeDeployError

if TYPE_CHECKING:
    import torch

    from edge_deploy.modeldir import ModelDir

log = logging.getLogger(__name__)

# How many key names an error quotes before it says "and N more".
KEYS_QUOTED = 5


class ConversionError(EdgeDeployError):
    """A conversion step failed; the message names the stage and the root exception."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage} failed: {message}")
        self.stage = stage


def describe(exc: BaseException) -> str:
    """`Type: message` of the innermost cause, the part MMDeploy's own messages hide."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = str(root).strip() or repr(root)
    return f"{type(root).__name__}: {text}"


# ---- the environment ------------------------------------------------------------------------

_torchvision_schema_library = None  # kept alive: dropping a torch.library.Library drops its schemas


def ensure_torchvision_importable() -> None:
    """Define torchvision's nms/qnms schemas when its compiled ops cannot load (before its import)."""
    global _torchvision_schema_library
    if "torchvision" in sys.modules or _torchvision_schema_library is not None:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    extension = glob.glob(str(Path(next(iter(spec.submodule_search_locations))) / "_C*.so"))
    try:
        torch.ops.load_library(extension[0])
        return  # a matching torchvision: its own ops define the schemas
    except (IndexError, OSError, RuntimeError) as exc:
        log.debug("torchvision ops do not load here (%s); defining the nms/qnms schemas", exc)
    library = torch.library.Library("torchvision", "DEF")  # schemas only: no kernels are registered
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_schema_library = library


@contextlib.contextmanager
def torchscript_exporter_default() -> Iterator[None]:
    """Make `torch.onnx.export(...)` without `dynamo=` use the TorchScript exporter."""
    import torch.onnx

    original = torch.onnx.export

    @functools.wraps(original)
    def export(*args: Any, **kwargs: Any):
        kwargs.setdefault("dynamo", False)
        return original(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original


@contextlib.contextmanager
def openmmlab_output_to_stderr() -> Iterator[None]:
    """mmengine's loggers (and a few prints) write to stdout, where `--json` output goes; move them.

    MMLogger binds `sys.stdout` when a logger is created: loggers created inside the block get
    stderr through the redirect, existing ones have their stdout handlers pointed at stderr.
    """
    from mmengine.logging import MMLogger

    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def mmdeploy_environment() -> Iterator[None]:
    """Everything MMDeploy needs on this stack; enter it before importing mmdeploy or mmpretrain."""
    ensure_torchvision_importable()
    with torchscript_exporter_default(), openmmlab_output_to_stderr():
        yield


# ---- configs and the PyTorch model ----------------------------------------------------------


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
    apply_manifest(deploy_cfg, model_dir)
    return deploy_cfg, model_cfg


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
    onnx_cfg.save_file = "end2end.onnx"
    spec = manifest.inputs[0]
    # A static height/width is pinned in the deploy config so both the exporter's resize step and
    # the SDK's pipeline.json produce exactly the manifest's size; dynamic ones are left free.
    if not {2, 3} & set(spec.dynamic_axes):
        height, width = spec.height_width
        onnx_cfg.input_shape = [width, height]


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


# ---- strict checkpoint loading --------------------------------------------------------------


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file; an unreadable file is a named error."""
    import torch

    if not Path(path).is_file():
        raise ConversionError("checkpoint load", f"checkpoint {Path(path).name} does not exist")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise _corrupt(path, exc) from exc
        # Training checkpoints keep mmengine objects (message hub, dataset meta) beside the
        # weights; those need full unpickling. Model directories come from the team's own store.
        log.warning("%s holds Python objects beside its weights; unpickling it fully", Path(path).name)
        try:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as inner:
            raise _corrupt(path, inner) from inner
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(hasattr(v, "shape") for v in state.values()):
        raise ConversionError(
            "checkpoint load",
            f"checkpoint {Path(path).name} holds no state dict of tensors (expected a dict with 'state_dict')",
        )
    # Weights saved from a (Distributed)DataParallel wrapper carry a `module.` prefix (mmengine strips it too).
    return {key.removeprefix("module."): value for key, value in state.items()}


def _corrupt(path: Path, exc: BaseException) -> ConversionError:
    return ConversionError(
        "checkpoint load", f"checkpoint {Path(path).name} is not a readable PyTorch checkpoint: {describe(exc)}"
    )


def load_state_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    mismatched = [
        f"{key} (checkpoint {list(state[key].shape)}, model {list(expected[key].shape)})"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_quote(mismatched)}")
    result = model.load_state_dict(state, strict=False) if not mismatched else None
    if result is not None and result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing key(s): {_quote(result.missing_keys)}")
    if result is not None and result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected key(s): {_quote(result.unexpected_keys)}")
    if problems:
        raise ConversionError(
            "checkpoint load",
            f"checkpoint {source} does not match the model config ({type(model).__name__}): " + "; ".join(problems),
        )


def _quote(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_QUOTED])
    return shown + (f" and {len(keys) - KEYS_QUOTED} more" if len(keys) > KEYS_QUOTED else "")


@contextlib.contextmanager
def strict_checkpoint_loading(on_loaded: Callable[[], None] | None = None) -> Iterator[None]:
    """MMDeploy's task processors import mmengine's load_checkpoint at call time; swap it.

    `on_loaded` is called once the weights are in the model, so a caller can tell a later failure
    (export) from an earlier one (model build).
    """
    import mmengine.runner.checkpoint as checkpoint_module

    def load_checkpoint(model, filename, map_location=None, strict=False, logger=None, revise_keys=None):
        state = read_checkpoint(Path(filename))
        load_state_strictly(model, state, Path(filename).name)
        if on_loaded is not None:
            on_loaded()
        return {"state_dict": state}

    original = checkpoint_module.load_checkpoint
    checkpoint_module.load_checkpoint = load_checkpoint
    try:
        yield
    finally:
        checkpoint_module.load_checkpoint = original
