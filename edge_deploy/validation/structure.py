"""Structure checks: is the file a well-formed ONNX model with the signature the manifest promises?

Checks, each reported by name: `checker` (onnx.checker, full check), `shape_inference` (strict,
typed), `io_signature` (input names, dtypes, ranks, static dims, dynamic axes; output names),
`opset`, `custom_ops` (only standard domains, or MMDeploy's with its library available) and
`onnxruntime_load` (the CPU session opens: catches e.g. an IR version newer than the runtime reads).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import onnx

from edge_deploy.runtime.config import MMDEPLOY_OPS_LIBRARY, find_mmdeploy_ops_library
from edge_deploy.validation.report import Check, StructureReport
from edge_deploy.validation.runtime import MMDEPLOY_DOMAINS, ORT_CONTRIB_DOMAINS, STANDARD_DOMAINS, open_session

Dim = int | str


class InputSpecLike(Protocol):
    """What the manifest says about one input (edge_deploy.conversion.InputSpec has these fields)."""

    name: str
    shape: list[int]
    dynamic_axes: dict[int, str]
    dtype: str


@dataclass(frozen=True)
class ExpectedSignature:
    inputs: Sequence[InputSpecLike]
    outputs: Sequence[str]
    opset: int


@dataclass
class _Findings:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, problems: list[str], ok_detail: str) -> None:
        self.checks.append(Check(name, not problems, "; ".join(problems) if problems else ok_detail))


def dims_of(value: onnx.ValueInfoProto) -> list[Dim]:
    """Static dims as ints, symbolic ones by name, unknown ones as '?'."""
    shape = value.type.tensor_type.shape
    return [dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in shape.dim]


def dtype_of(value: onnx.ValueInfoProto) -> str:
    elem_type = value.type.tensor_type.elem_type
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "undefined"


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs only: exporters may list every weight as an input too (keep_initializers_as_inputs)."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those in If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from iter_nodes(subgraph)


def custom_ops_of(model: onnx.ModelProto) -> list[str]:
    nodes = list(iter_nodes(model.graph))
    for function in model.functions:
        nodes += list(function.node)
    local_functions = {(function.domain, function.name) for function in model.functions}
    found = {
        f"{node.domain}::{node.op_type}"
        for node in nodes
        if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local_functions
    }
    return sorted(found)


def default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def compare_inputs(actual: list[onnx.ValueInfoProto], expected: Sequence[InputSpecLike]) -> list[str]:
    problems = []
    actual_by_name = {value.name: value for value in actual}
    actual_names = [value.name for value in actual]
    expected_names = [spec.name for spec in expected]
    if actual_names != expected_names:
        problems.append(f"inputs are {actual_names}, the manifest expects {expected_names}")
    for spec in expected:
        value = actual_by_name.get(spec.name)
        if value is None:
            continue
        problems += _compare_input(spec, value)
    return problems


def _compare_input(spec: InputSpecLike, value: onnx.ValueInfoProto) -> list[str]:
    dims = dims_of(value)
    problems = []
    if dtype_of(value) != spec.dtype:
        problems.append(f"input '{spec.name}' has dtype {dtype_of(value)}, the manifest expects {spec.dtype}")
    if len(dims) != len(spec.shape):
        problems.append(
            f"input '{spec.name}' has rank {len(dims)} {dims}, the manifest expects rank {len(spec.shape)} {spec.shape}"
        )
        return problems
    for axis, (dim, expected_dim) in enumerate(zip(dims, spec.shape, strict=True)):
        if axis in spec.dynamic_axes:
            if isinstance(dim, int):
                problems.append(
                    f"input '{spec.name}' axis {axis} is static ({dim}) in the ONNX model, "
                    f"the manifest declares it dynamic ('{spec.dynamic_axes[axis]}')"
                )
        elif dim != expected_dim:
            problems.append(
                f"input '{spec.name}' axis {axis} is {dim!r} in the ONNX model, the manifest expects {expected_dim}"
            )
    return problems


def compare_outputs(actual: list[onnx.ValueInfoProto], expected: Sequence[str]) -> list[str]:
    names = [value.name for value in actual]
    if names != list(expected):
        return [f"outputs are {names}, the manifest expects {list(expected)}"]
    return []


def check_structure(onnx_path: Path, expected: ExpectedSignature) -> StructureReport:
    """Run every structural check; a failing check is recorded, not raised, so all problems are reported."""
    model = onnx.load(str(onnx_path))
    findings = _Findings()
    findings.add("checker", _run_checker(onnx_path), "onnx.checker full check passed")
    findings.add(*_run_shape_inference(model))

    inputs, outputs = graph_inputs(model), list(model.graph.output)
    io_problems = compare_inputs(inputs, expected.inputs) + compare_outputs(outputs, expected.outputs)
    signature = ", ".join(f"{value.name}{dims_of(value)}" for value in inputs)
    findings.add("io_signature", io_problems, f"inputs {signature}; outputs {[value.name for value in outputs]}")

    opset = default_opset(model)
    opset_problems = [f"model has ONNX opset {opset}, the manifest declares {expected.opset}"]
    if opset == expected.opset:
        opset_problems = []
    findings.add("opset", opset_problems, f"ONNX opset {opset} as declared")

    custom_ops = custom_ops_of(model)
    library, custom_problems, custom_detail = _custom_op_support(custom_ops)
    findings.add("custom_ops", custom_problems, custom_detail)
    findings.add("onnxruntime_load", _try_session(onnx_path, library), "ONNX Runtime CPU session opens")

    return StructureReport(
        passed=all(check.passed for check in findings.checks),
        checks=findings.checks,
        ir_version=model.ir_version,
        opset_imports={entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        inputs={value.name: dims_of(value) for value in inputs},
        outputs={value.name: dims_of(value) for value in outputs},
        custom_ops=custom_ops,
        custom_op_library=f"{MMDEPLOY_OPS_LIBRARY} (from the installed mmdeploy package)" if library else None,
    )


def required_ops_library(onnx_path: Path) -> Path | None:
    """The custom-op library a session for this model must register, or None when it needs none."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    if any(op.split("::")[0] in MMDEPLOY_DOMAINS for op in custom_ops_of(model)):
        return find_mmdeploy_ops_library()
    return None


def _run_checker(onnx_path: Path) -> list[str]:
    try:
        # By path, so models with external data (over 2 GB) are checked too.
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return [f"onnx.checker: {_first_line(exc)}"]
    return []


def _run_shape_inference(model: onnx.ModelProto) -> tuple[str, list[str], str]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        return "shape_inference", [f"shape inference failed: {_first_line(exc)}"], ""
    outputs = ", ".join(f"{value.name}{dims_of(value)}" for value in inferred.graph.output)
    return "shape_inference", [], f"strict shape inference passed; outputs {outputs}"


def _custom_op_support(custom_ops: list[str]) -> tuple[Path | None, list[str], str]:
    if not custom_ops:
        return None, [], "only standard ONNX operators"
    mmdeploy_ops = [op for op in custom_ops if op.split("::")[0] in MMDEPLOY_DOMAINS]
    contrib_ops = [op for op in custom_ops if op.split("::")[0] in ORT_CONTRIB_DOMAINS]
    unknown = [op for op in custom_ops if op not in mmdeploy_ops and op not in contrib_ops]
    problems = [f"unexpected custom operators {unknown}: no runtime is known to implement them"] if unknown else []
    library = find_mmdeploy_ops_library() if mmdeploy_ops else None
    if mmdeploy_ops and library is None:
        problems.append(
            f"MMDeploy custom operators {mmdeploy_ops} need {MMDEPLOY_OPS_LIBRARY}, which the installed mmdeploy "
            "does not provide"
        )
    notes = []
    if mmdeploy_ops:
        notes.append(f"MMDeploy operators {mmdeploy_ops} run with {MMDEPLOY_OPS_LIBRARY} (x86_64 only on PyPI)")
    if contrib_ops:
        notes.append(f"ONNX Runtime contrib operators {contrib_ops} (ONNX Runtime only)")
    return library, problems, "; ".join(notes)


def _try_session(onnx_path: Path, library: Path | None) -> list[str]:
    try:
        open_session(onnx_path, custom_op_library=library, level="disabled")
    except Exception as exc:  # ORT raises its own pybind exception types (Fail, InvalidGraph, ...)
        return [f"ONNX Runtime cannot load the model: {_first_line(exc)}"]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
