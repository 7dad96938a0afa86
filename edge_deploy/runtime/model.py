"""Open the sealed model and run it with ONNX Runtime, checking every input first.

How the plaintext reaches ONNX Runtime (one memory file, or a pipe with EDGE_DECRYPT_TO=pipe;
never a disk) is `plaintext`'s business; the session is used only once that says every chunk was
authenticated and the sha256 matches model.json.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_deploy.crypto import Keyring, read_header
from edge_deploy.errors import ConfigError, EdgeDeployError
from edge_deploy.runtime.plaintext import DECRYPT_TO, Plaintext, open_plaintext

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
    decrypt_to: str = "memory"  # or "pipe": see `plaintext`
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
            decrypt_to=_choice_setting(env, "EDGE_DECRYPT_TO", DECRYPT_TO),
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
    usable = usable_providers(requested)
    with _opened(sealed, config, read_twice=usable != [CPU_PROVIDER]) as plaintext:
        try:
            session = create_session(plaintext.source, usable, requested)
        except BaseException:
            _finish(plaintext, sealed, config)  # a failed decryption explains a failed session best
            raise
        digest = _finish(plaintext, sealed, config)
    expected = metadata.get("model_sha256")
    if expected and expected != digest:
        raise ModelLoadError(f"{sealed}: decrypted model sha256 {digest} does not match model.json ({expected})")
    log.info("model %s (sha256 %s) loaded with providers %s", metadata.get("name"), digest, session.get_providers())
    return LoadedModel(
        session=session,
        metadata=metadata,
        model_sha256=digest,
        inputs=tuple(TensorSpec(a.name, tuple(a.shape), a.type) for a in session.get_inputs()),
        outputs=tuple(TensorSpec(a.name, tuple(a.shape), a.type) for a in session.get_outputs()),
        requested_providers=tuple(requested),
    )


def usable_providers(requested: Sequence[str]) -> list[str]:
    """The requested providers this onnxruntime build has, CPU last."""
    available = ort.get_available_providers()
    return [p for p in requested if p in available and p != CPU_PROVIDER] + [CPU_PROVIDER]


def create_session(model: str | bytes, usable: list[str], requested: Sequence[str]) -> ort.InferenceSession:
    """A session on `model` (a path or the serialized model) with the `usable` providers; one
    warning when any requested provider is missing or fails to initialise (then the model is
    read a second time, for a CPU session)."""
    if "CUDAExecutionProvider" in usable and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu with the nvidia-* wheels: load CUDA/cuDNN from site-packages first
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library shows as a provider failure below
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    options = ort.SessionOptions()
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


def _choice_setting(env: Mapping[str, str], name: str, choices: Sequence[str]) -> str:
    """One of `choices` (the first when unset)."""
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


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
