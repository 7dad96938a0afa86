"""Request and response bodies: JSON nested lists, NumPy .npz archives and single .npy arrays.

Binary bodies are read with `allow_pickle=False`: an .npy/.npz body can only ever be plain arrays.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_deploy.runtime.model import BadInput, LoadedModel

JSON = "application/json"
NPZ = "application/x-npz"
NPY = "application/x-npy"
CONTENT_TYPES = (JSON, NPZ, NPY)


def decode_inputs(body: bytes, content_type: str, model: LoadedModel) -> dict[str, np.ndarray]:
    if content_type == JSON:
        return _json_inputs(body, model)
    if content_type == NPZ:
        return _npz_inputs(body)
    if content_type == NPY:
        if len(model.inputs) != 1:
            names = ", ".join(spec.name for spec in model.inputs)
            raise BadInput(
                f"{NPY} carries one array, but the model has {len(model.inputs)} inputs ({names}); send {NPZ}"
            )
        return {model.inputs[0].name: _npy_array(body, "the body")}
    raise AssertionError(content_type)


def encode_outputs(outputs: Mapping[str, np.ndarray], content_type: str, model_sha256: str) -> bytes:
    if content_type == JSON:
        document = {
            "model_sha256": model_sha256,
            "outputs": {
                name: {"dtype": value.dtype.name, "shape": list(value.shape), "data": value.tolist()}
                for name, value in outputs.items()
            },
        }
        return json.dumps(document).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **dict(outputs))
    return buffer.getvalue()


def _json_inputs(body: bytes, model: LoadedModel) -> dict[str, np.ndarray]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), dict):
        raise BadInput('expected a JSON object {"inputs": {"<input name>": <nested list>, ...}}')
    return {name: _json_array(value, model.input_spec(name)) for name, value in document["inputs"].items()}


def _json_array(value: Any, spec) -> np.ndarray:
    if not isinstance(value, list | int | float | bool):
        raise BadInput(f"input {spec.name!r}: expected a (nested) list of numbers, got {type(value).__name__}")
    try:
        raw = np.array(value)
    except ValueError:
        raise BadInput(
            f"input {spec.name!r}: the nested lists are ragged; every row must have the same length"
        ) from None
    if raw.dtype == object or raw.dtype.kind not in "biuf":
        raise BadInput(f"input {spec.name!r}: expected numbers only, got {raw.dtype.name} values")
    target = spec.dtype
    if target is None:
        return raw
    integral = np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))
    if raw.dtype.kind == "f" and target.kind in "biu" and not integral:
        raise BadInput(f"input {spec.name!r}: the model takes {target.name}, got non-integer numbers")
    converted = raw.astype(target)
    if target.kind in "iu" and not np.array_equal(converted, raw):
        raise BadInput(f"input {spec.name!r}: values do not fit {target.name}")
    return converted


def _npz_inputs(body: bytes) -> dict[str, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInput(f"the body is not a readable .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadInput(f"{NPZ} expects an .npz archive (numpy.savez), got a single array; send it as {NPY}")
    try:
        with archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInput(f"the .npz archive cannot be read: {exc}") from None


def _npy_array(body: bytes, what: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInput(f"{what} is not a readable .npy array: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise BadInput(f"{what} is an .npz archive; send it as {NPZ}")
    return array
