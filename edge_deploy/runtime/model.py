"""Open the sealed model in memory and run it with ONNX Runtime, checking every input first.

The plaintext exists once: it is decrypted chunk by chunk into an anonymous memory file (memfd)
of its final size, hashed there, and ONNX Runtime opens that file by its /proc path. The memory
file is closed as soon as the session exists, so only ONNX Runtime's own copy of the weights stays.
(`InferenceSession` takes a path or `bytes`, and a `bytes` object cannot be filled in place: it
would cost a second copy, which is what a system without memfd pays.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_deploy.crypto import Keyring, decrypt_file_to_memory, read_header
from edge_deploy.errors import ConfigError, EdgeDeployError

log = logging.getLogger(__name__)

SEALED_MODEL_NAME = "model.onnx.enc"
METADATA_NAME = "model.json"
DEFAULT_KEY_DIR = Path("/run/secrets/edge-keys")
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


class BadInput(EdgeDeployError):
    """A request's inputs do not fit the model; answered with 400 and this reason."""


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


@dataclass(frozen=True)
class RuntimeConfig:
    model_dir: Path
    key_dir: Path | None
    providers: tuple[str, ...] | None  # None: what model.json says, else CPU
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 64 * 1024 * 1024
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds key variables: never shown

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeConfig:
        env = dict(os.environ if env is None else env)
        key_dir = env.get("EDGE_KEY_DIR", "").strip()
        providers = [p.strip() for p in env.get("EDGE_PROVIDERS", "").split(",") if p.strip()]
        return cls(
            model_dir=Path(env.get("EDGE_MODEL_DIR", "/opt/edge/model")),
            key_dir=Path(key_dir) if key_dir else (DEFAULT_KEY_DIR if DEFAULT_KEY_DIR.is_dir() else None),
            providers=tuple(providers) or None,
            host=env.get("EDGE_HOST", "0.0.0.0"),
            port=_int_setting(env, "EDGE_PORT", 8080, minimum=0),  # 0: any free port
            max_body_bytes=_int_setting(env, "EDGE_MAX_BODY_BYTES", 64 * 1024 * 1024),
            env=env,
        )


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    metadata: dict[str, Any]
    model_sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    requested_providers: tuple[str, ...]

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
    if spec.dtype is not None and array.dtype != spec.dtype:
        raise BadInput(f"input {spec.name!r}: dtype {array.dtype.name}, the model takes {spec.dtype.name}")
    if array.ndim != len(spec.shape):
        raise BadInput(f"input {spec.name!r}: shape {list(array.shape)} has {array.ndim} dimensions, {_expects(spec)}")
    for axis, (got, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
        if isinstance(want, int) and got != want:
            raise BadInput(
                f"input {spec.name!r}: shape {list(array.shape)}, dimension {axis} must be {want}; {_expects(spec)}"
            )
    return np.ascontiguousarray(array)


def _expects(spec: TensorSpec) -> str:
    return f"the model takes {spec.describe()['shape']} (a name or null: any size)"


def load_model(config: RuntimeConfig) -> LoadedModel:
    """Decrypt, verify and load the model. Every failure is a `ModelLoadError` naming what to fix."""
    sealed = config.model_dir / SEALED_MODEL_NAME
    metadata = _read_metadata(config.model_dir / METADATA_NAME)
    requested = config.providers or tuple(metadata.get("execution_providers") or (CPU_PROVIDER,))
    with _decrypted_model(sealed, config) as (model, digest):
        expected = metadata.get("model_sha256")
        if expected and expected != digest:
            raise ModelLoadError(f"{sealed}: decrypted model sha256 {digest} does not match model.json ({expected})")
        session = create_session(model, requested)
    log.info("model %s (sha256 %s) loaded with providers %s", metadata.get("name"), digest, session.get_providers())
    return LoadedModel(
        session=session,
        metadata=metadata,
        model_sha256=digest,
        inputs=tuple(TensorSpec(a.name, tuple(a.shape), a.type) for a in session.get_inputs()),
        outputs=tuple(TensorSpec(a.name, tuple(a.shape), a.type) for a in session.get_outputs()),
        requested_providers=tuple(requested),
    )


def create_session(model: str | bytes, requested: Sequence[str]) -> ort.InferenceSession:
    """A session on `model` (a path or the serialized model) with the requested providers that this
    onnxruntime build has, CPU last; one warning when any preferred provider is missing or fails
    to initialise."""
    available = ort.get_available_providers()
    usable = [p for p in requested if p in available and p != CPU_PROVIDER] + [CPU_PROVIDER]
    if "CUDAExecutionProvider" in usable and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu with the nvidia-* wheels: load CUDA/cuDNN from site-packages first
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library shows as a provider failure below
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    options = ort.SessionOptions()
    try:
        session = ort.InferenceSession(model, options, providers=usable)
    except Exception as exc:
        if usable == [CPU_PROVIDER]:
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0][:500]}") from None
        log.warning("execution providers %s failed (%s); falling back to CPU", usable[:-1], str(exc).splitlines()[0])
        return ort.InferenceSession(model, options, providers=[CPU_PROVIDER])
    active = session.get_providers()
    lost = [p for p in requested if p not in active]
    if lost:
        log.warning(
            "execution provider(s) %s not usable here (this onnxruntime has %s); running on %s",
            ", ".join(lost),
            ", ".join(available),
            ", ".join(active),
        )
    return session


@contextlib.contextmanager
def _decrypted_model(sealed: Path, config: RuntimeConfig) -> Iterator[tuple[str | bytes, str]]:
    """(what ONNX Runtime opens, the plaintext's sha256) for the duration of the block, then released."""
    memory_file = _MemoryFile() if _MEMFD_PATHS else None
    digest = hashlib.sha256()  # taken while the next chunks are decrypted, not after
    try:
        plaintext = _decrypt(sealed, config, memory_file, digest.update)
        yield (memory_file.path if memory_file else plaintext), digest.hexdigest()
    finally:
        if memory_file is not None:
            memory_file.close()


def _decrypt(
    sealed: Path, config: RuntimeConfig, memory_file: _MemoryFile | None, on_plaintext: Callable[[memoryview], object]
) -> mmap.mmap | bytes:
    try:
        keyring = Keyring.load(config.key_dir, config.env)
        if memory_file is None:  # without memfd: a second copy, for a moment
            return bytes(decrypt_file_to_memory(sealed, keyring, on_plaintext=on_plaintext))
        return decrypt_file_to_memory(sealed, keyring, allocate=memory_file.allocate, on_plaintext=on_plaintext)
    except EdgeDeployError as exc:
        key_id = _key_id(sealed)
        named = f" (sealed under key id {key_id!r})" if key_id else ""
        where = "" if config.key_dir else f" (no EDGE_KEY_DIR given and nothing mounted at {DEFAULT_KEY_DIR})"
        raise ModelLoadError(f"cannot open the sealed model{named}: {exc}{where}") from None


# Linux: an anonymous memory file that ONNX Runtime can open by path
_MEMFD_PATHS = hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir()


class _MemoryFile:
    """An anonymous file in memory (memfd), mapped for writing; never on a disk, gone when closed."""

    def __init__(self) -> None:
        self._descriptor = os.memfd_create("edge-model", os.MFD_CLOEXEC)
        self._map: mmap.mmap | None = None

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self._descriptor}"

    def allocate(self, size: int) -> mmap.mmap:
        if size == 0:
            raise ModelLoadError("the sealed model is empty")
        os.ftruncate(self._descriptor, size)
        # every page at once (one call instead of a fault per page): they are all written next
        self._map = mmap.mmap(self._descriptor, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self._descriptor)


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


def _int_setting(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number
