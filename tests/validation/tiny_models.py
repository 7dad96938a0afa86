"""Small ONNX models for the gate's unit tests: a seeded torch classifier exported with the
TorchScript exporter (what MMDeploy uses), and hand-built graphs for structural cases."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from edge_deploy.conversion import InputSpec
from edge_deploy.validation.gate import GateSubject
from edge_deploy.validation.structure import ExpectedSignature

# ONNX Runtime 1.31 reads IR version <= 13; onnx 1.23's helper writes 14 by default.
IR_VERSION = 8
INPUT_SHAPE = [1, 3, 32, 32]


def tiny_classifier(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
        torch.nn.Softmax(dim=1),
    )
    batchnorm = model[1]
    batchnorm.running_mean.uniform_(-0.5, 0.5)
    batchnorm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def export_classifier(out_dir: Path, *, dynamic_batch: bool = True, opset: int = 11, seed: int = 0):
    """(end2end.onnx path, reference callable) for a seeded tiny classifier."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = tiny_classifier(seed)
    path = out_dir / "end2end.onnx"
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice: MMDeploy needs it
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, path, axes, opset)

    def reference(feeds):
        with torch.no_grad():
            return {"output": model(torch.from_numpy(feeds["input"])).numpy()}

    return path, reference


def _export(model, path, axes, opset) -> None:
    torch.onnx.export(
        model,
        (torch.randn(*INPUT_SHAPE),),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes=axes,
        opset_version=opset,
        dynamo=False,
    )


def classifier_subject(*, dynamic_batch: bool = True, opset: int = 11, **overrides) -> GateSubject:
    spec = InputSpec("input", list(INPUT_SHAPE), {0: "batch"} if dynamic_batch else {})
    fields = dict(
        task="classification",
        codebase="mmpretrain",
        deploy_profile="tiny",
        model_sha256="0" * 64,
        signature=ExpectedSignature([spec], ["output"], opset),
    )
    return GateSubject(**(fields | overrides))


def perturb_initializer(path: Path, out: Path, name: str | None = None, scale: float = 0.5) -> str:
    """Add seeded noise (scale x the tensor's std) to one weight initializer; returns its name."""
    model = onnx.load(str(path))
    floats = [tensor for tensor in model.graph.initializer if tensor.data_type == TensorProto.FLOAT]
    tensor = next(t for t in floats if t.name == name) if name else max(floats, key=lambda t: np.prod(t.dims))
    values = numpy_helper.to_array(tensor).copy()
    noise = np.random.default_rng(0).standard_normal(values.shape).astype(np.float32)
    values += scale * float(values.std() or 1.0) * noise
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return tensor.name


def graph_model(nodes, inputs, outputs, *, opsets=(("", 11),), ir_version: int = IR_VERSION, initializers=()):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    return helper.make_model(
        graph, ir_version=ir_version, opset_imports=[helper.make_opsetid(domain, v) for domain, v in opsets]
    )


def relu_model(path: Path, *, shape=("batch", 3, 32, 32), ir_version: int = IR_VERSION, opset: int = 11) -> Path:
    """input -> Relu -> output, with the given input shape (ints static, strings symbolic)."""
    value = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    result = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))
    model = graph_model(
        [helper.make_node("Relu", ["input"], ["output"])],
        [value],
        [result],
        opsets=(("", opset),),
        ir_version=ir_version,
    )
    onnx.save(model, str(path))
    return path


def custom_op_model(path: Path, domain: str, op_type: str, **attributes) -> Path:
    """x, grid -> domain::op_type -> Relu -> output (the shape of mmdeploy::grid_sampler)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])
    grid = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 4, 4, 2])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 4, 4])
    nodes = [
        helper.make_node(op_type, ["input", "grid"], ["sampled"], domain=domain, **attributes),
        helper.make_node("Relu", ["sampled"], ["output"]),
    ]
    onnx.save(graph_model(nodes, [x, grid], [out], opsets=(("", 11), (domain, 1))), str(path))
    return path
