"""JSON in and out, bounded and always valid.

In: a body is parsed only when it cannot hold more numbers than `max_elements` (counted on the raw
bytes before parsing: a JSON number costs Python far more than its text), and the non-standard
NaN/Infinity literals Python would otherwise accept are refused.
Out: JSON has no NaN or Infinity, so a non-finite float is written as null (documented for every
JSON reply); a reply is never the bare `NaN` that strict parsers reject.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edge_deploy.runtime.refusals import BadInput, TooLarge

JSON = "application/json"


def parse(body: bytes | memoryview, max_elements: int, what: str = "the body") -> Any:
    raw = bytes(body)
    # every number after the first in a list follows a comma: commas + 1 bounds the element count
    elements = raw.count(b",") + 1
    if elements > max_elements:
        raise TooLarge(
            f"{what} holds up to {elements} JSON values; the limit is {max_elements} (EDGE_MAX_JSON_ELEMENTS): "
            "send large tensors as binary data"
        )
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{what} is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> None:
    raise BadInput(f"JSON has no {name}: send finite numbers (the runtime refuses NaN and Infinity in inputs)")


def dumps(document: Any) -> bytes:
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def array_values(array: np.ndarray, *, flat: bool = False) -> list:
    """`array` as (nested, or with `flat` one) list of Python numbers; non-finite floats become null."""
    values = array.reshape(-1) if flat else array
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        values = np.where(np.isfinite(values), values, None)
    if values.dtype == np.float16:
        values = values.astype(np.float32)
    return values.tolist()


def to_array(value: Any, dtype: np.dtype, what: str) -> np.ndarray:
    """Nested JSON lists of numbers as an array of `dtype`: integers must be whole and fit, and
    booleans are only taken for a boolean input."""
    if not isinstance(value, list | int | float | bool):
        raise BadInput(f"{what}: expected a (nested) list of numbers, got {type(value).__name__}")
    try:
        raw = np.array(value)
    except ValueError:
        raise BadInput(f"{what}: the nested lists are ragged; every row must have the same length") from None
    if raw.dtype == object or raw.dtype.kind not in "biuf":
        raise BadInput(f"{what}: expected numbers only, got {raw.dtype.name} values")
    if dtype.kind == "b":
        if raw.dtype.kind != "b":
            raise BadInput(f"{what}: the model takes booleans (true/false)")
        return raw
    if dtype.kind in "iu":
        if raw.dtype.kind == "f" and not np.array_equal(raw, np.round(raw)):
            raise BadInput(f"{what}: the model takes {dtype.name}, got non-integer numbers")
        converted = raw.astype(dtype)
        if not np.array_equal(converted, raw):
            raise BadInput(f"{what}: values do not fit {dtype.name}")
        return converted
    converted = raw.astype(dtype)
    if not np.isfinite(converted).all():
        raise BadInput(f"{what}: values overflow {dtype.name}")
    return converted
