"""ONNX Runtime sessions for the gate, and the MMDeploy custom-op library when a model needs it.

MMDeploy exports a few operators ONNX does not define (e.g. `mmdeploy::grid_sampler`,
`mmdeploy::MMCVModulatedDeformConv2d`, `mmcv::MMCVRoiAlign`) and implements them for ONNX Runtime in
`libmmdeploy_onnxruntime_ops.so`. The x86_64 mmdeploy wheel from PyPI ships that library (built
against its own ONNX Runtime 1.15.1); registered into this project's newer ONNX Runtime it loads and
runs. There is no aarch64 build on PyPI, so a model that needs it cannot run on ARM edge devices
from stock packages: the structure check names the operators so that is known before shipping.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_deploy.validation.errors import ValidationError

if TYPE_CHECKING:
    import onnxruntime

# Domains whose operators stock ONNX Runtime implements: ONNX itself, ONNX-ML, ORT's contrib ops.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
ORT_CONTRIB_DOMAINS = frozenset({"com.microsoft"})
# Domains the MMDeploy custom-op library registers.
MMDEPLOY_DOMAINS = frozenset({"mmdeploy", "mmcv"})
CPU_PROVIDER = "CPUExecutionProvider"


def optimization_level(name: str) -> onnxruntime.GraphOptimizationLevel:
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if name not in levels:
        raise ValidationError(f"unknown ONNX Runtime optimization level {name!r}; use one of {sorted(levels)}")
    return levels[name]


def open_session(
    model: Path,
    *,
    custom_op_library: Path | None = None,
    threads: int = 0,
    level: str = "all",
    save_optimized_to: Path | None = None,
) -> onnxruntime.InferenceSession:
    """A CPU session as an edge device would open it (ORT's default: all graph optimizations online)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    options.intra_op_num_threads = threads
    options.graph_optimization_level = optimization_level(level)
    if save_optimized_to is not None:
        options.optimized_model_filepath = str(save_optimized_to)
    if custom_op_library is not None:
        options.register_custom_ops_library(str(custom_op_library))
    return ort.InferenceSession(str(model), options, providers=[CPU_PROVIDER])
