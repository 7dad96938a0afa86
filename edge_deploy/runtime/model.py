"""Open the sealed model and run it with ONNX Runtime, checking every input first.

How the plaintext reaches ONNX Runtime (memory it takes the weights from in place, a memory
file, or a pipe; never a disk) is `plaintext`'s business; the session is used only once that says
every chunk was authenticated and the sha256 matches model.json. From memory, the session takes
the weights where they lie (`weights.split`) and reads only the rest of the model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_deploy.crypto import Keyring, read_header
from edge_deploy.errors import EdgeDeployError
from edge_deploy.files import ONNX_FILE_NAME, sha256_file
from edge_deploy.runtime.config import (
    DEFAULT_KEY_DIR,
    METADATA_NAME,
    SEALED_MODEL_NAME,
    RuntimeConfig,
    find_mmdeploy_ops_library,
)
from edge_deploy.runtime.plaintext import Opening, Plaintext, open_plaintext
from edge_deploy.runtime.refusals import BadInput
from edge_deploy.runtime.signature import RefusedModelError, check_signature
from edge_deploy.runtime.weights import WireFormatError, split

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"

# ONNX tensor element types -> numpy dtypes (what ORT's NodeArg.type reports)
ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


class ModelLoadError(EdgeDeployError):
    """The model cannot be opened or loaded; the runtime exits with this one line."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str | None, ...]  # an int is fixed; a str (symbolic) or None is dynamic
    onnx_type: str

    @property
    def dtype(self) -> np.dtype | None:
        numpy_type = ONNX_DTYPES.get(self.onnx_type)
        return np.dtype(numpy_type) if numpy_type is not None else None

    def describe(self) -> dict[str, Any]:
        dtype = self.dtype
        return {
            "name": self.name,
            "shape": [dim if isinstance(dim, int) else (dim or None) for dim in self.shape],
            "dtype": dtype.name if dtype is not None else self.onnx_type,
        }

    @property
    def dims(self) -> list[int]:
        """The shape with -1 for every dynamic dimension (the Open Inference Protocol's way)."""
        return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in self.shape]

    def check(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Refuse (`BadInput`) an array of this shape and dtype, before it is created."""
        if self.dtype is not None and dtype != self.dtype:
            raise BadInput(f"input {self.name!r}: dtype {dtype.name}, the model takes {self.dtype.name}")
        if len(shape) != len(self.shape):
            raise BadInput(f"input {self.name!r}: shape {list(shape)} has {len(shape)} dimensions, {_expects(self)}")
        for axis, (got, want) in enumerate(zip(shape, self.shape, strict=True)):
            if isinstance(want, int) and want >= 0 and got != want:
                raise BadInput(
                    f"input {self.name!r}: shape {list(shape)}, dimension {axis} must be {want}; {_expects(self)}"
                )


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    metadata: dict[str, Any]
    model_sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    requested_providers: tuple[str, ...]
    # the session's weights where they lie in the plaintext: ONNX Runtime does not own them, so they
    # must live as long as the session
    weights: tuple[ort.OrtValue, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.metadata.get("name"),
            "model_sha256": self.model_sha256,
            "key_id": self.metadata.get("key_id"),
            "platform": self.metadata.get("platform"),
            "inputs": [spec.describe() for spec in self.inputs],
            "outputs": [spec.describe() for spec in self.outputs],
            "providers": self.session.get_providers(),
            "requested_providers": list(self.requested_providers),
            "operator_libraries": list(self.metadata.get("operator_libraries") or ()),
            "onnxruntime_version": ort.__version__,
        }

    def input_spec(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise BadInput(f"unknown input {name!r}; the model's inputs are {', '.join(s.name for s in self.inputs)}")

    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check every input against the model's signature, then run. Bad inputs raise `BadInput`."""
        for name in arrays:
            self.input_spec(name)
        missing = [spec.name for spec in self.inputs if spec.name not in arrays]
        if missing:
            raise BadInput(f"missing input(s) {', '.join(missing)}")
        feeds = {spec.name: check_array(spec, arrays[spec.name]) for spec in self.inputs}
        try:
            values = self.session.run(None, feeds)
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
            # e.g. a dynamic dimension the graph cannot actually take
            raise BadInput(f"the model rejected the inputs: {str(exc).splitlines()[0][:500]}") from None
        return {spec.name: np.asarray(value) for spec, value in zip(self.outputs, values, strict=True)}


def check_array(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    spec.check(array.shape, array.dtype)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadInput(f"input {spec.name!r} holds NaN or infinite values; the runtime takes finite numbers only")
    return np.ascontiguousarray(array)


def _expects(spec: TensorSpec) -> str:
    return f"the model takes {spec.describe()['shape']} (a name or null: any size)"


def load_model(config: RuntimeConfig, opening: Opening | None = None) -> LoadedModel:
    """Decrypt, verify and load the model. Every failure is a `ModelLoadError` naming what to fix, or
    `RefusedModelError` when a required signature does not verify (then nothing is decrypted).

    `opening`: the decryption `plaintext.start_opening` started. A directory without a sealed model but with
    the conversion's plaintext `end2end.onnx` (what `edge-deploy runtime` serves on a development
    machine) is loaded as it is."""
    if opening is None:
        check_signature(config)  # where required; an opening checked it in its thread, before decrypting
    sealed = config.model_dir / SEALED_MODEL_NAME
    if not sealed.is_file() and (config.model_dir / ONNX_FILE_NAME).is_file():
        return _load_plaintext(config, config.model_dir / ONNX_FILE_NAME)
    metadata = _read_metadata(config.model_dir / METADATA_NAME)
    requested = config.providers or tuple(metadata.get("execution_providers") or (CPU_PROVIDER,))
    usable = usable_providers(requested)
    libraries = operator_libraries(config.model_dir, metadata)
    opened = _finished_opening(opening, sealed, config) if opening else None
    with opened or _opened(sealed, config, read_twice=usable != [CPU_PROVIDER]) as plaintext:
        model, initializers = _in_place(plaintext)
        in_place = {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in initializers.items()}
        weights = tuple(in_place.values())
        try:
            session = create_session(model, usable, requested, libraries, in_place)
        except BaseException:
            _finish(plaintext, sealed, config)  # a failed decryption explains a failed session best
            raise
        digest = _finish(plaintext, sealed, config)
    expected = metadata.get("model_sha256")
    if expected and expected != digest:
        raise ModelLoadError(f"{sealed}: decrypted model sha256 {digest} does not match model.json ({expected})")
    return _loaded(session, metadata, digest, requested, weights)


def _in_place(plaintext: Plaintext) -> tuple[str | bytes, dict[str, np.ndarray]]:
    """What ONNX Runtime opens: the model without its large initializers plus those, in place, or
    (not in memory, i.e. EDGE_DECRYPT_TO is not `memory`; or not a model this can read) the
    plaintext's source as it is."""
    buffer = plaintext.in_memory()
    if buffer is None:
        return plaintext.source, {}
    try:
        parts = split(buffer)
    except WireFormatError as exc:  # ONNX Runtime's own parse gives the better error, if any
        log.debug("the weights are not handed over in place: %s", exc)
        return plaintext.source, {}
    if not parts.initializers:  # nothing large: the model as it is, rather than a copy of it
        return plaintext.source, {}
    return parts.model, parts.initializers


def _load_plaintext(config: RuntimeConfig, path: Path) -> LoadedModel:
    metadata_path = config.model_dir / METADATA_NAME
    metadata = _read_metadata(metadata_path) if metadata_path.is_file() else {"name": config.model_dir.name}
    requested = config.providers or tuple(metadata.get("execution_providers") or (CPU_PROVIDER,))
    installed = find_mmdeploy_ops_library()
    libraries = operator_libraries(config.model_dir, metadata) or ([installed] if installed else [])
    session = create_session(str(path), usable_providers(requested), requested, libraries)
    return _loaded(session, metadata, sha256_file(path), requested)


def _loaded(
    session: ort.InferenceSession,
    metadata: dict[str, Any],
    digest: str,
    requested: Sequence[str],
    weights: tuple[ort.OrtValue, ...] = (),
) -> LoadedModel:
    log.info("model %s (sha256 %s) loaded with providers %s", metadata.get("name"), digest, session.get_providers())
    return LoadedModel(
        session=session,
        metadata=metadata,
        model_sha256=digest,
        inputs=tuple(TensorSpec(a.name, tuple(a.shape), a.type) for a in session.get_inputs()),
        outputs=tuple(TensorSpec(a.name, tuple(a.shape), a.type) for a in session.get_outputs()),
        requested_providers=tuple(requested),
        weights=weights,
    )


def operator_libraries(model_dir: Path, metadata: Mapping[str, Any]) -> list[Path]:
    """The custom-operator libraries model.json names (relative to the model directory), which must exist."""
    libraries = [model_dir / str(name) for name in metadata.get("operator_libraries") or ()]
    missing = [str(path) for path in libraries if not path.is_file()]
    if missing:
        raise ModelLoadError(f"model.json names operator libraries that are missing: {', '.join(missing)}")
    return libraries


def usable_providers(requested: Sequence[str]) -> list[str]:
    """The requested providers this onnxruntime build has, CPU last."""
    available = ort.get_available_providers()
    return [p for p in requested if p in available and p != CPU_PROVIDER] + [CPU_PROVIDER]


def create_session(
    model: str | bytes,
    usable: list[str],
    requested: Sequence[str],
    libraries: Sequence[Path] = (),
    initializers: Mapping[str, ort.OrtValue] | None = None,
) -> ort.InferenceSession:
    """A session on `model` (a path or the serialized model) with the `usable` providers, the
    custom-operator `libraries` registered and the model's external `initializers` (which the caller
    keeps alive); one warning when any requested provider is missing or fails to initialise (then
    the model is read a second time, for a CPU session)."""
    if "CUDAExecutionProvider" in usable and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu with the nvidia-* wheels: load CUDA/cuDNN from site-packages first
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library shows as a provider failure below
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    options = ort.SessionOptions()
    for library in libraries:
        try:
            options.register_custom_ops_library(str(library))
        except Exception as exc:
            raise ModelLoadError(
                f"cannot register the operator library {library}: {str(exc).splitlines()[0]}"
            ) from None
    if initializers:
        options.add_external_initializers(list(initializers), list(initializers.values()))
    try:
        # our own fallback below warns once; ORT's would print to stdout and read the model again
        session = ort.InferenceSession(model, options, providers=usable, enable_fallback=0)
    except Exception as exc:
        if usable == [CPU_PROVIDER]:
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0][:500]}") from None
        log.warning("execution providers %s failed (%s); falling back to CPU", usable[:-1], str(exc).splitlines()[0])
        return ort.InferenceSession(model, options, providers=[CPU_PROVIDER], enable_fallback=0)
    active = session.get_providers()
    lost = [p for p in requested if p not in active]
    if lost:
        log.warning(
            "execution provider(s) %s not usable here (this onnxruntime has %s); running on %s",
            ", ".join(lost),
            ", ".join(ort.get_available_providers()),
            ", ".join(active),
        )
    return session


def _opened(sealed: Path, config: RuntimeConfig, *, read_twice: bool) -> Plaintext:
    try:
        keyring = Keyring.load(config.key_dir, config.env)
        return open_plaintext(sealed, keyring, decrypt_to=config.decrypt_to, read_twice=read_twice)
    except EdgeDeployError as exc:
        raise _cannot_open(sealed, config, exc) from None


def _finished_opening(opening: Opening, sealed: Path, config: RuntimeConfig) -> Plaintext:
    try:
        return opening.result()
    except RefusedModelError:
        raise  # its own reason, which no key would change
    except EdgeDeployError as exc:
        raise _cannot_open(sealed, config, exc) from None


def _finish(plaintext: Plaintext, sealed: Path, config: RuntimeConfig) -> str:
    try:
        return plaintext.finish()
    except EdgeDeployError as exc:
        raise _cannot_open(sealed, config, exc) from None


def _cannot_open(sealed: Path, config: RuntimeConfig, error: EdgeDeployError) -> ModelLoadError:
    key_id = _key_id(sealed)
    named = f" (sealed under key id {key_id!r})" if key_id else ""
    where = "" if config.key_dir else f" (no EDGE_KEY_DIR given and nothing mounted at {DEFAULT_KEY_DIR})"
    return ModelLoadError(f"cannot open the sealed model{named}: {error}{where}")


def _key_id(sealed: Path) -> str | None:
    try:
        return read_header(sealed).key_id
    except EdgeDeployError:
        return None


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(
            f"{path} is missing: EDGE_MODEL_DIR must hold {SEALED_MODEL_NAME} and {METADATA_NAME}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return metadata
