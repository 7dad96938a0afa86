"""JSON <-> the library's dataclasses, one way for all of them (pydantic's TypeAdapter).

Records, validation reports and conversion results are plain frozen dataclasses (Flyte passes them
between tasks); this module turns them into JSON and back. Decoding is strict, as JSON-mode
validation in pydantic is: a field has the type its annotation says (no "1" for an int, no "yes"
for a bool), a missing field or an unknown one is an error, and the error names the field's path
(`validation.worst_errors[0].output`). Each top-level type opts in to refusing unknown fields with
`@with_config(STRICT)`; the dataclasses inside it inherit that.

JSON has no spelling for inf and NaN (a parity error can be either): they are written as the
strings "Infinity", "-Infinity" and "NaN", which every JSON reader accepts, and read back into
float fields. The `Infinity` token Python's json module writes, and "inf"/"nan", are read too.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

T = TypeVar("T")

STRICT = ConfigDict(extra="forbid", ser_json_inf_nan="strings")
# The spellings written here, and those of reports written before this module (Python's repr).
NON_FINITE = {
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "NaN": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "nan": math.nan,
}
# pydantic's words for a wrong type, said as a person would.
TYPE_NAMES = {
    "bool_type": "bool",
    "int_type": "int",
    "int_from_float": "int",
    "float_type": "float",
    "string_type": "str",
    "list_type": "a list",
    "dict_type": "an object",
    "dataclass_type": "an object",
}


class DecodeError(ValueError):
    """The data does not fit the type; `problems` are `path message` lines, one per bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@functools.cache
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def to_plain(value: Any) -> Any:
    """A dataclass tree as JSON-ready dicts, lists and scalars (non-finite floats as strings)."""
    return json.loads(_adapter(type(value)).dump_json(value))  # dump_python(mode="json") turns inf into None


def to_json(value: Any, indent: int | None = 2) -> str:
    """A dataclass tree (or plain data) as JSON text: indented, or compact when `indent` is None."""
    plain = value if isinstance(value, dict | list) else to_plain(value)
    return json.dumps(plain, indent=indent, separators=None if indent else (",", ":"))


def from_plain(kind: type[T], data: Any) -> T:
    """`kind` from JSON-shaped data (parsed JSON, a MongoDB document); raises DecodeError."""
    return from_json(kind, json.dumps(data))


def from_json(kind: type[T], text: str | bytes) -> T:
    """`kind` from JSON text; raises DecodeError naming each bad field (ValueError for bad JSON)."""
    adapter = _adapter(kind)
    try:
        return adapter.validate_json(text, strict=True)
    except ValidationError as exc:
        errors = exc.errors()
    if any(error["type"] == "json_invalid" for error in errors):
        raise ValueError(errors[0]["msg"])
    non_finite = [error for error in errors if _is_non_finite_float(error)]
    if non_finite:  # floats written as "Infinity"/"NaN": put the numbers in and decode again
        data = json.loads(text)
        for error in non_finite:
            _set_at(data, error["loc"], NON_FINITE[error["input"]])
        try:
            return adapter.validate_json(json.dumps(data), strict=True)
        except ValidationError as exc:
            errors = exc.errors()
    raise DecodeError([_describe(error) for error in errors])


def _is_non_finite_float(error: Any) -> bool:
    return error["type"] == "float_type" and error.get("input") in NON_FINITE


def _set_at(data: Any, loc: tuple, value: Any) -> None:
    for step in loc[:-1]:
        data = data[step]
    data[loc[-1]] = value


def field_path(loc: tuple) -> str:
    path = ""
    for step in loc:
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    return path.lstrip(".")


def _describe(error: Any) -> str:
    path, kind = field_path(error["loc"]), error["type"]
    if kind == "missing":
        return f"{path} is missing"
    if kind == "unexpected_keyword_argument":
        return f"{path} is an unknown field"
    if kind in TYPE_NAMES:
        return f"{path} must be {TYPE_NAMES[kind]}, got {json.dumps(error.get('input'))[:80]}"
    return f"{path}: {error['msg']}"
