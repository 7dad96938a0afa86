"""The model's weights handed to ONNX Runtime where the decryption left them, not copied.

ONNX Runtime opening a model file reads all of it into a buffer, parses that, and copies every
initializer's data out of the parse. When the decrypted model already lies in memory, `split`
reads the serialized ModelProto's protobuf wire format just far enough to find the top-level
graph's large initializers (`raw_data` of a known element type) and returns:
- the model without their data, each marked as external (`data_location: EXTERNAL`), which is what
  `SessionOptions.add_external_initializers` requires of the tensors it replaces;
- a numpy view of each one's data, in place in the plaintext.
The session then takes the views as its weights: on the samples this cut session creation by
11-27 % (resnet18, 47 MB: 197 -> 144 ms) with the same outputs bit for bit and the same memory
after loading (the plaintext is the weights ONNX Runtime would otherwise have copied).

Only the wire format is read (field numbers from onnx.proto): no onnx or protobuf import. Anything
unexpected (initializers in subgraphs, typed data fields, strings, external data, a malformed
message) is left as it is in the model, so the worst case is ONNX Runtime parsing it as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Smaller initializers stay in the model: taking them out saved nothing measurable (resnet18, rtmdet-ins)
# and the many small ones of a detector made its session slower.
MIN_BYTES = 64 * 1024

# onnx.proto field numbers
MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_SEGMENT, TENSOR_NAME, TENSOR_RAW_DATA = 1, 2, 3, 8, 9
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# TensorProto.DataType -> numpy (raw_data is little-endian, as on every platform we build for)
ELEMENT_TYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}


class WireFormatError(ValueError):
    """The bytes are not the protobuf message they were expected to be."""


@dataclass(frozen=True)
class SplitModel:
    model: bytes  # the ModelProto, the initializers below marked external and without their data
    initializers: dict[str, np.ndarray]  # name -> its data, a view into the plaintext


@dataclass(frozen=True)
class _Field:
    number: int
    wire_type: int
    start: int  # of the field's key
    value_start: int  # of its value (after the length, for LENGTH fields)
    end: int


def split(plaintext: memoryview, min_bytes: int = MIN_BYTES) -> SplitModel:
    """The model in `plaintext` (a serialized ModelProto) with its large initializers taken out as
    views; `WireFormatError` when it is not a readable ModelProto."""
    data = plaintext.cast("B") if plaintext.format != "B" else plaintext
    model = bytearray()
    initializers: dict[str, np.ndarray] = {}
    for field in _fields(data, 0, len(data)):
        if field.number == MODEL_GRAPH and field.wire_type == LENGTH:
            graph = _split_graph(data, field, min_bytes, initializers)
            model += _key(MODEL_GRAPH, LENGTH) + _varint(len(graph)) + graph
        else:
            model += data[field.start : field.end]
    return SplitModel(bytes(model), initializers)


def _split_graph(data: memoryview, graph: _Field, min_bytes: int, initializers: dict[str, np.ndarray]) -> bytearray:
    out = bytearray()
    for field in _fields(data, graph.value_start, graph.end):
        large = field.end - field.value_start >= min_bytes
        taken = None
        if field.number == GRAPH_INITIALIZER and field.wire_type == LENGTH and large:
            taken = _take_tensor(data, field)
        if taken is None:
            out += data[field.start : field.end]
            continue
        name, array, tensor = taken
        initializers[name] = array
        out += _key(GRAPH_INITIALIZER, LENGTH) + _varint(len(tensor)) + tensor
    return out


def _take_tensor(data: memoryview, tensor: _Field) -> tuple[str, np.ndarray, bytearray] | None:
    """(name, a view of its raw_data, the TensorProto without it and marked external), or None to
    leave the tensor as it is."""
    dims: list[int] = []
    element_type = name = raw = None
    kept = bytearray()
    for field in _fields(data, tensor.value_start, tensor.end):
        if field.number == TENSOR_DIMS:
            dims += _varints(data, field)
        elif field.number == TENSOR_DATA_TYPE and field.wire_type == VARINT:
            element_type = _read_varint(data, field.value_start)[0]
        elif field.number == TENSOR_NAME and field.wire_type == LENGTH:
            name = bytes(data[field.value_start : field.end]).decode("utf-8")
        elif field.number == TENSOR_RAW_DATA and field.wire_type == LENGTH:
            raw = (field.value_start, field.end)
            continue
        elif field.number in (TENSOR_SEGMENT, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION):
            return None
        kept += data[field.start : field.end]
    dtype = ELEMENT_TYPES.get(element_type)  # type: ignore[arg-type]
    if not name or raw is None or dtype is None or any(dim > raw[1] - raw[0] for dim in dims):
        return None
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if count * np.dtype(dtype).itemsize != raw[1] - raw[0]:
        return None
    array = np.frombuffer(data, dtype=dtype, count=count, offset=raw[0]).reshape(dims)
    # where the data "is": add_external_initializers replaces only tensors marked external
    entry = _length_field(1, b"location") + _length_field(2, name.encode("utf-8"))  # StringStringEntryProto
    kept += _length_field(TENSOR_EXTERNAL_DATA, entry) + _key(TENSOR_DATA_LOCATION, VARINT) + _varint(EXTERNAL)
    return name, array, kept


def _fields(data: memoryview, start: int, end: int):
    position = start
    while position < end:
        key, value_start = _read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            field_end = _read_varint(data, value_start)[1]
        elif wire_type == FIXED64:
            field_end = value_start + 8
        elif wire_type == FIXED32:
            field_end = value_start + 4
        elif wire_type == LENGTH:
            length, value_start = _read_varint(data, value_start)
            field_end = value_start + length
        else:
            raise WireFormatError(f"wire type {wire_type} at byte {position}")
        if number == 0 or field_end > end:
            raise WireFormatError(f"field {number} at byte {position} runs past its message")
        yield _Field(number, wire_type, position, value_start, field_end)
        position = field_end


def _varints(data: memoryview, field: _Field) -> list[int]:
    if field.wire_type == VARINT:
        return [_read_varint(data, field.value_start)[0]]
    if field.wire_type != LENGTH:
        raise WireFormatError(f"dims with wire type {field.wire_type}")
    values, position = [], field.value_start
    while position < field.end:  # packed
        value, position = _read_varint(data, position)
        values.append(value)
    return values


def _read_varint(data: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if position >= len(data):
            raise WireFormatError("a number runs past the end")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise WireFormatError(f"a number longer than 10 bytes at byte {position}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _length_field(number: int, value: bytes) -> bytes:
    return _key(number, LENGTH) + _varint(len(value)) + value
