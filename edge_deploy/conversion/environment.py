"""What MMDeploy 1.3.1 needs to run on this stack (torch 2.13 CPU); enter `mmdeploy_environment()`.

- torch >= 2.9 makes `torch.onnx.export` default to the dynamo exporter, which bypasses MMDeploy's
  rewriters (without onnxscript: "No module named 'onnxscript'"; with it: "inputs[0] is a tuple, but
  dynamic_shapes[0] is a dict"). MMDeploy looks `torch.onnx.export` up at call time, so for the
  duration of the context the TorchScript exporter (`dynamo=False`) becomes the default.
- The only torchvision on PyPI for torch 2.13 (0.28.0) is a CUDA build; beside the CPU torch its
  compiled ops fail to load and `import torchvision` dies on `operator torchvision::nms does not
  exist`. mmpretrain imports torchvision, so when (and only when) those ops fail to load, the
  nms/qnms operator schemas are defined before torchvision is imported. No code here calls
  torchvision's nms.
- mmdeploy's RoIAlign symbolic (two-stage detectors: Faster and Mask R-CNN...) imports
  `torch.onnx.symbolic_opset9._cast_Long`, which torch 2.13 no longer has ("cannot import name
  '_cast_Long'"): it is defined again, as the Cast to int64 it was.
- mmdet's prior generators default to `device='cuda'`, and mmdeploy's RTMDet-Ins rewriter calls
  one without a device: on a torch without CUDA their default becomes the CPU.
- mmengine's loggers write to stdout, where `--json` output goes: they are moved to stderr.
- MMDeploy's function rewriter, on leaving its context, sets back what `Class.method` evaluated to
  when it entered: for a static method that is the bare function, so the method then gets `self`
  in front. After one export, PyTorch inference of a Swin classifier in the same process failed
  (`ShiftWindowMSA.get_attn_mask() got multiple values for argument 'window_size'`), and with it
  the gate's photo reference. `rewrites_keep_static_methods` makes the rewriter put the
  descriptors back, for every context (the gate's reference forward enters one too).
- MMDeploy's RTMDet-Ins export runs NMS on boxes it never clips to the image; mmdet clips them
  first. Two boxes of one object crossing the photo's edge can overlap by less than the NMS IoU
  unclipped and by more clipped, so the export kept a duplicate PyTorch suppresses, and lost the
  box PyTorch kept (seen on the astronaut photo). `rtmdet_ins_nms_on_clipped_boxes` clips them
  to the input first. mmdet clips to the pipeline's img_shape: the input where a `Pad` transform
  made it (RTMDet's own pipelines), the resized photo where the data preprocessor pads the batch;
  there, on the padded side, the two can still differ.

`export_adaptations(deploy_cfg)` applies the last one around an export.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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


ONNX_INT64 = 7  # onnx.TensorProto.INT64


def ensure_cast_long_symbolic() -> None:
    """Put back `torch.onnx.symbolic_opset9._cast_Long`, which mmdeploy's RoIAlign symbolic imports
    (every two-stage detector exports through it) and which torch's exporter no longer has."""
    import torch.onnx.symbolic_opset9 as opset9

    if not hasattr(opset9, "_cast_Long"):

        def _cast_Long(g, value, non_blocking):  # the name mmdeploy imports
            return g.op("Cast", value, to_i=ONNX_INT64)

        opset9._cast_Long = _cast_Long


def cpu_prior_generators() -> None:
    """Make mmdet's prior generators default to the CPU when torch has no CUDA: their methods take
    `device='cuda'` by default and some of mmdeploy's rewriters (RTMDet-Ins's mask head) call them
    without one ("Torch not compiled with CUDA enabled"; mmdeploy pull request 2678, unmerged)."""
    import torch

    if torch.cuda.is_available() or importlib.util.find_spec("mmdet") is None:
        return
    from mmdet.models.task_modules import prior_generators

    for cls in vars(prior_generators).values():
        for function in vars(cls).values() if inspect.isclass(cls) else ():
            if inspect.isfunction(function) and function.__defaults__ and "cuda" in function.__defaults__:
                function.__defaults__ = tuple("cpu" if value == "cuda" else value for value in function.__defaults__)


@contextlib.contextmanager
def export_adaptations(deploy_cfg) -> Iterator[None]:
    """Around MMDeploy's export of the deploy config's codebase (its rewriters registered first)."""
    from mmdeploy.codebase import import_codebase
    from mmdeploy.utils import get_codebase

    codebase = get_codebase(deploy_cfg)
    import_codebase(codebase)
    if codebase.value == "mmdet":
        rtmdet_ins_nms_on_clipped_boxes()
    yield


def rtmdet_ins_nms_on_clipped_boxes() -> None:
    """Clip the boxes MMDeploy's RTMDet-Ins rewrite hands to NMS to the input, as mmdet's decoder
    clips them. The input's size is the mask features' times their stride, which is also how the
    rewrite sizes its masks. Its context copies the module's globals on entry, so this is in place
    for every export after the call."""
    import torch
    from mmdeploy.codebase.mmdet.models.dense_heads import rtmdet_ins_head as rewrite

    nms = rewrite._nms_with_mask_static
    if getattr(nms, "clips_boxes", False):
        return

    def nms_on_clipped_boxes(self, priors, bboxes, scores, kernels, mask_feats, *args, **kwargs):
        stride = self.prior_generator.strides[0][0]
        height, width = (torch._shape_as_tensor(mask_feats)[-2:] * stride).to(bboxes.dtype).unbind()
        clipped = torch.minimum(bboxes.clamp(min=0), torch.stack([width, height, width, height]))
        return nms(self, priors, clipped, scores, kernels, mask_feats, *args, **kwargs)

    nms_on_clipped_boxes.clips_boxes = True
    rewrite._nms_with_mask_static = nms_on_clipped_boxes


def exact_static_adaptive_pooling() -> None:
    """Export a static model's adaptive average pooling exactly. MMDeploy's rewrite of
    `adaptive_avg_pool2d` (any output but 1x1) is `avg_pool2d` with kernel = stride = size // bins,
    exact only where the size divides evenly: PSPNet's 1/2/3/6 bins on a 128x171 feature map gave
    98.4 % of a photo's pixels as PyTorch's, and even the wrong number of bins where the feature
    map is smaller than twice the bins. With static shapes the bins PyTorch averages are known while tracing, so the
    pooling is exported as two MatMuls with those averaging matrices. Dynamic exports keep MMDeploy's
    rewrite (the conversion's size check then prefers a static export). Installed on MMDeploy's
    rewrite record once, so the export and the gate's reference forward both use it."""
    import torch
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.pytorch.functions import adaptive_pool  # noqa: F401  registers MMDeploy's rewrite
    from mmdeploy.utils import is_dynamic_shape

    records = FUNCTION_REWRITER._registry._rewrite_records["torch.nn.functional.adaptive_avg_pool2d"]
    default = next(record for record in records if not record["_checkers"])  # the ONNX Runtime one
    if getattr(default["_object"], "exact_when_static", False):
        return

    def adaptive_avg_pool2d(input, output_size):
        ctx = FUNCTION_REWRITER.get_context()
        bins = output_size if isinstance(output_size, list | tuple) else (output_size, output_size)
        if tuple(bins) == (1, 1):  # global pooling: exported as it is, as MMDeploy does
            return ctx.origin_func(input, output_size)
        height, width = (int(size) for size in input.shape[-2:])
        if is_dynamic_shape(ctx.cfg):  # MMDeploy's rewrite (its function needs its own context)
            kernel = [height // (bins[0] or height), width // (bins[1] or width)]
            return torch.nn.functional.avg_pool2d(input, kernel, kernel, 0, False, False)
        rows = _averaging_matrix(height, bins[0] or height).to(input)
        columns = _averaging_matrix(width, bins[1] or width).to(input)
        return rows @ input @ columns.T

    adaptive_avg_pool2d.exact_when_static = True
    default["_object"] = adaptive_avg_pool2d


def _averaging_matrix(size: int, bins: int):
    """bins x size: row i averages the inputs PyTorch's adaptive pooling gives bin i,
    floor(i * size / bins) up to ceil((i + 1) * size / bins)."""
    import torch

    matrix = torch.zeros(bins, size)
    for index in range(bins):
        start, end = index * size // bins, -(-(index + 1) * size // bins)
        matrix[index, start:end] = 1.0 / (end - start)
    return matrix


def rewrites_keep_static_methods() -> None:
    """Make MMDeploy's function rewriter put back the static and class methods it replaces as the
    descriptors they were. Installed on the rewriter itself, once, because every rewriter context
    (the export's, and the gate's reference forward) exits through it."""
    from mmdeploy.core.rewriters.function_rewriter import FunctionRewriter

    if getattr(FunctionRewriter.enter, "keeps_static_methods", False):
        return
    enter, exit_ = FunctionRewriter.enter, FunctionRewriter.exit

    def enter_keeping(self, *args, **kwargs):
        self._kept_descriptors = _method_descriptors(self._registry._rewrite_records)
        return enter(self, *args, **kwargs)

    def exit_restoring(self):
        exit_(self)
        for owner, name, descriptor in getattr(self, "_kept_descriptors", ()):
            setattr(owner, name, descriptor)

    enter_keeping.keeps_static_methods = True
    FunctionRewriter.enter, FunctionRewriter.exit = enter_keeping, exit_restoring


def _method_descriptors(paths) -> list[tuple[type, str, object]]:
    """(class, name, descriptor) of every static or class method among the rewritten `paths`
    (MMDeploy 1.3.1 keeps its records by path; entering its context imports each path as here)."""
    from mmdeploy.core.rewriters.rewriter_utils import import_function

    found = []
    for path in list(paths):
        try:
            _, owner = import_function(path)
        except Exception:  # a path of a codebase that is not installed: MMDeploy skips it too
            continue
        name = path.rpartition(".")[2]
        descriptor = vars(owner).get(name) if inspect.isclass(owner) else None
        if isinstance(descriptor, (staticmethod, classmethod)):
            found.append((owner, name, descriptor))
    return found


@contextlib.contextmanager
def mmdeploy_environment() -> Iterator[None]:
    """Everything MMDeploy needs on this stack; enter it before importing mmdeploy or mmpretrain."""
    ensure_torchvision_importable()
    ensure_cast_long_symbolic()
    cpu_prior_generators()
    rewrites_keep_static_methods()
    exact_static_adaptive_pooling()
    with torchscript_exporter_default(), openmmlab_output_to_stderr():
        yield
