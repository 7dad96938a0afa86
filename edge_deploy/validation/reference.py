"""The PyTorch reference: the model exactly as MMDeploy traced it into ONNX.

MMDeploy's torch2onnx (mmdeploy/apis/pytorch2onnx.py, 1.3.1) builds the model with the task
processor, makes `data_samples` with `create_input`, and mmdeploy/apis/onnx/export.py then
patches the model (`patch_model`) and calls it under a `RewriterContext` built from the deploy
config (with `ir_config` and `backend_config` filled in), the IR, backend and opset, as
`forward(input, data_samples=..., mode='predict')`. This module does the same steps and runs the
patched model eagerly instead of tracing it: for detection that is the rewritten forward whose
output is `dets`/`labels` after MMDeploy's own NMS, not mmdet's post-processing.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.parity import NMS_BOXES, NMS_SCORES


def flatten_outputs(value: Any) -> list[Any]:
    """Tensors in the order torch.onnx.export names them: nested tuples/lists/dicts, depth first."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [tensor for item in value for tensor in flatten_outputs(item)]
    if isinstance(value, dict):
        return [tensor for item in value.values() for tensor in flatten_outputs(item)]
    raise ValidationError(f"the PyTorch model returned a {type(value).__name__}, not tensors")


def _add_or_update(cfg, key: str, value: dict) -> None:
    # mmdeploy/apis/onnx/export.py: merge into an existing dict section, else set it.
    if key in cfg and isinstance(cfg[key], dict):
        cfg[key].update(value)
    else:
        cfg[key] = value


class MMDeployReference:
    """Callable: {input name: array} -> {output name: array}, through the patched PyTorch model."""

    def __init__(
        self, deploy_cfg, model_cfg, checkpoint: Path, image_size: tuple[int, int] | None = None, device: str = "cpu"
    ):
        from edge_deploy.conversion.environment import mmdeploy_environment
        from edge_deploy.conversion.openmmlab import build_pytorch_model

        with mmdeploy_environment():
            from mmdeploy.core import patch_model
            from mmdeploy.utils import IR, get_backend, get_dynamic_axes, get_input_shape, get_onnx_config

            model, task_processor = build_pytorch_model(deploy_cfg, model_cfg, checkpoint, device)
            onnx_cfg = get_onnx_config(deploy_cfg)
            self.input_names = list(onnx_cfg["input_names"])
            self.output_names = list(onnx_cfg["output_names"])
            self.opset = onnx_cfg.get("opset_version", 11)
            self.backend = get_backend(deploy_cfg).value
            input_shape = get_input_shape(deploy_cfg)
            self.data_samples = self._data_samples(task_processor, model, input_shape, image_size)
            self._task_processor, self._input_shape = task_processor, input_shape
            self._data_preprocessor = getattr(model, "data_preprocessor", None)
            self.context_cfg = copy.deepcopy(deploy_cfg)
            ir_config = dict(
                type="onnx",
                input_names=self.input_names,
                output_names=self.output_names,
                opset_version=self.opset,
                dynamic_axes=get_dynamic_axes(deploy_cfg, self.input_names + self.output_names),
                verbose=False,
                keep_initializers_as_inputs=onnx_cfg.get("keep_initializers_as_inputs", True),
            )
            _add_or_update(self.context_cfg, "ir_config", ir_config)
            _add_or_update(self.context_cfg, "backend_config", dict(type=self.backend))
            self.ir = IR.ONNX
            self.model = patch_model(model, cfg=self.context_cfg, backend=self.backend, ir=self.ir)
        self.device = device

    @classmethod
    def from_model_dir(cls, model_dir) -> MMDeployReference:
        """From an `edge_deploy.conversion.ModelDir`: the same configs conversion used (`load_configs`)."""
        from edge_deploy.conversion.openmmlab import load_configs

        deploy_cfg, model_cfg = load_configs(model_dir)
        shape = model_dir.manifest.inputs[0].shape
        return cls(deploy_cfg, model_cfg, model_dir.checkpoint_path, image_size=(shape[2], shape[3]))

    @staticmethod
    def _data_samples(task_processor, model, input_shape, image_size) -> list:
        """The data samples torch2onnx passes, from `create_input` on a blank image of the export size."""
        height, width = image_size or _export_size(input_shape)
        image = np.zeros((height, width, 3), dtype=np.uint8)
        data, _ = task_processor.create_input(
            image, input_shape, data_preprocessor=getattr(model, "data_preprocessor", None)
        )
        return list(data["data_samples"])

    def photo_input(self, frame: np.ndarray) -> np.ndarray:
        """A photo (HxWx3 BGR, as LoadImageFromFile decodes it) as the model's input tensor, through
        MMDeploy's own preprocessing (`create_input`: the test pipeline fitted to the deploy config's
        input shape, then the data preprocessor), as its tools feed a backend model."""
        from edge_deploy.conversion.environment import mmdeploy_environment

        with mmdeploy_environment():
            _, tensor = self._task_processor.create_input(
                frame, self._input_shape, data_preprocessor=self._data_preprocessor
            )
        tensor = tensor[0] if isinstance(tensor, list | tuple) else tensor
        return tensor.detach().cpu().numpy()

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from edge_deploy.conversion.environment import mmdeploy_environment

        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise ValidationError(f"reference inputs {missing} missing; got {sorted(feeds)}")
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device) for name in self.input_names]
        batch = tensors[0].shape[0]
        with mmdeploy_environment():
            from mmdeploy.core import RewriterContext

            context = RewriterContext(
                cfg=self.context_cfg, backend=self.backend, ir=self.ir, opset=self.opset, onnx_custom_passes=None
            )
            with context, torch.no_grad(), _recording_nms_inputs() as nms_inputs:
                # Batch > 1: the traced graph took the first sample's meta for every image (the
                # rewriters read batch_img_metas[0]); repeating it per image is the eager equivalent.
                samples = [copy.deepcopy(self.data_samples[0]) for _ in range(batch)]
                result = self.model(*tensors, data_samples=samples, mode="predict")
        outputs = flatten_outputs(result)
        if len(outputs) != len(self.output_names):
            raise ValidationError(
                f"the PyTorch model returned {len(outputs)} tensors but the deploy config names "
                f"{len(self.output_names)} outputs {self.output_names}"
            )
        arrays = {name: tensor.detach().cpu().numpy() for name, tensor in zip(self.output_names, outputs, strict=True)}
        if nms_inputs:
            boxes, scores = nms_inputs[-1]  # the last NMS is the final one (two-stage: RPN first)
            arrays[NMS_BOXES], arrays[NMS_SCORES] = boxes.cpu().numpy(), scores.cpu().numpy()
        return arrays


@contextlib.contextmanager
def _recording_nms_inputs() -> Iterator[list]:
    """Record (boxes [N, boxes, 4], scores [N, classes, boxes]) given to MMDeploy's ONNX NMS op.

    MMDeploy's ONNX Runtime detection graphs end in `onnx::NonMaxSuppression` through `ONNXNMSop`;
    its eager forward sees exactly the candidates the exported graph's NMS sees.
    """
    from mmdeploy.mmcv.ops.nms import ONNXNMSop

    recorded: list = []
    original = ONNXNMSop.apply

    def apply(boxes, scores, *args):
        recorded.append((boxes.detach().clone(), scores.detach().clone()))
        return original(boxes, scores, *args)

    ONNXNMSop.apply = apply
    try:
        yield recorded
    finally:
        ONNXNMSop.apply = original


def _export_size(input_shape) -> tuple[int, int]:
    """(H, W) of the image torch2onnx would have been given: the deploy config's input_shape [W, H], or 224."""
    if input_shape:
        width, height = input_shape
        return int(height), int(width)
    return 224, 224
