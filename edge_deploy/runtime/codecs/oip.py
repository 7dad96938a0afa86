"""The Open Inference Protocol v2 (KServe/Triton) inference request and response over REST.

JSON tensors (`"data"`, flat or nested, row-major) and Triton's binary tensor data extension, as
tritonclient sends it: the JSON header comes first, `Inference-Header-Content-Length` bytes long,
and each input with `parameters.binary_data_size` has its raw little-endian bytes after it, in
input order. An output is returned as binary data when its request entry asks for
`parameters.binary_data`, or, with no entry, when the request's `parameters.binary_data_output`
is true (tritonclient's default); the reply then carries the same header.

Every input's name, datatype and shape is checked against the model before its data is touched,
and the bytes a binary input states must be exactly its shape's size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_deploy.runtime.codecs import json_values
from edge_deploy.runtime.refusals import BadInput

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


def datatype_of(dtype: np.dtype | None) -> str:
    """The protocol's name for a numpy dtype (BYTES for anything it has no fixed-size name for)."""
    return _NAMES.get(dtype, "BYTES") if dtype is not None else "BYTES"


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None  # None: every output
    binary_outputs: frozenset[str]


def decode_request(
    body: bytes | memoryview,
    header_length: int | None,
    inputs: Mapping[str, Any],
    output_names: Sequence[str],
    max_json_elements: int,
) -> InferRequest:
    """`inputs`: the model's inputs by name (each with `dtype` and `check(shape, dtype)`)."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise BadInput(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes")
    split = len(body) if header_length is None else header_length
    document = json_values.parse(memoryview(body)[:split], max_json_elements, "the inference request")
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise BadInput('expected a JSON object {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    binary = memoryview(body)[split:]
    arrays: dict[str, np.ndarray] = {}
    for entry in document["inputs"]:
        name, array, used = _decode_input(entry, inputs, binary, max_json_elements)
        if name in arrays:
            raise BadInput(f"input {name!r} is given twice")
        arrays[name] = array
        binary = binary[used:]
    if len(binary):
        raise BadInput(f"{len(binary)} bytes of binary data follow the inputs that no input claims")
    outputs, binary_outputs = _requested_outputs(document, output_names)
    request_id = document.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, arrays, outputs, binary_outputs)


def _decode_input(
    entry: Any, inputs: Mapping[str, Any], binary: memoryview, max_json_elements: int
) -> tuple[str, np.ndarray, int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BadInput('each input must be an object with "name", "shape", "datatype" and "data"')
    name = entry["name"]
    if name not in inputs:
        raise BadInput(f"unknown input {name!r}; the model's inputs are {', '.join(inputs)}")
    slot = inputs[name]
    shape = _shape(entry.get("shape"), name)
    datatype = entry.get("datatype")
    if datatype != datatype_of(slot.dtype):
        raise BadInput(f"input {name!r}: datatype {datatype!r}, the model takes {datatype_of(slot.dtype)}")
    dtype = DATATYPES[datatype]
    slot.check(shape, dtype)
    size = _binary_size(entry, name)
    if size is None:
        if "data" not in entry:
            raise BadInput(f"input {name!r} has neither data nor parameters.binary_data_size")
        count = math.prod(shape)
        if count > max_json_elements:
            raise BadInput(f"input {name!r}: {count} JSON values is over the limit of {max_json_elements}")
        array = json_values.to_array(entry["data"], dtype, f"input {name!r}")
        if array.size != count:
            raise BadInput(f"input {name!r}: shape {list(shape)} needs {count} values, data has {array.size}")
        return name, array.reshape(shape), 0
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise BadInput(f"input {name!r}: binary_data_size {size}, but shape {list(shape)} of {datatype} is {expected}")
    if size > len(binary):
        raise BadInput(f"input {name!r}: {size} bytes of binary data stated, {len(binary)} left in the body")
    array = np.frombuffer(binary[:size], dtype=dtype.newbyteorder("<")).reshape(shape)
    return name, array, size


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise BadInput(f"input {name!r}: shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _binary_size(entry: dict, name: str) -> int | None:
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadInput(f"input {name!r}: parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadInput(f"input {name!r}: binary_data_size must be a byte count, got {size!r}")
    return size


def _requested_outputs(document: dict, output_names: Sequence[str]) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    parameters = document.get("parameters") or {}
    binary_default = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    requested = document.get("outputs")
    if requested is None:
        return None, frozenset(output_names) if binary_default else frozenset()
    if not isinstance(requested, list):
        raise BadInput('"outputs" must be a list of {"name": ...} objects')
    names, binary = [], set()
    for entry in requested:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in output_names:
            raise BadInput(f"unknown output {name!r}; the model's outputs are {', '.join(output_names)}")
        names.append(name)
        output_parameters = entry.get("parameters") or {}
        if output_parameters.get("binary_data", binary_default) if isinstance(output_parameters, dict) else False:
            binary.add(name)
    return tuple(names), frozenset(binary)


def encode_response(
    model_name: str, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the JSON header's length."""
    described, chunks = [], []
    for name in request.outputs or tuple(outputs):
        array = outputs[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        if name in request.binary_outputs:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_values.array_values(array, flat=True)
        described.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": described}
    if request.id is not None:
        document["id"] = request.id
    header = json_values.dumps(document)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
