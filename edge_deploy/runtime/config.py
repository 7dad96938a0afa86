"""The runtime's one configuration object, read from the environment and validated once.

Standard library only: `__main__` reads it before numpy and ONNX Runtime are imported, to start
decrypting the model meanwhile. The one exception is loaded only when a device requires a signed
model: cryptography's EC code, to read the trusted public key.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge_deploy.errors import ConfigError

if TYPE_CHECKING:
    from edge_deploy.signing.keys import PublicKey

log = logging.getLogger(__name__)

DEFAULT_KEY_DIR = Path("/run/secrets/edge-keys")
SEALED_MODEL_NAME = "model.onnx.enc"
SIGNATURE_NAME = "model.onnx.enc.sig"  # its detached signature (signing.blob), checked when required
REQUIRE_SIGNED = "EDGE_REQUIRE_SIGNED_MODEL"
PUBLIC_KEY = "EDGE_SIGNING_PUBLIC_KEY"
PUBLIC_KEY_FILE = "EDGE_SIGNING_PUBLIC_KEY_FILE"
METADATA_NAME = "model.json"
DEFAULT_MODEL_NAME = "model"  # the Open Inference Protocol name, unless EDGE_MODEL_NAME or model.json says another
DECRYPT_TO = ("memory", "memory-copy", "pipe")  # see `plaintext`
MMDEPLOY_OPS_LIBRARY = "libmmdeploy_onnxruntime_ops.so"


def find_mmdeploy_ops_library() -> Path | None:
    """MMDeploy's ONNX Runtime operator library where mmdeploy is installed (a development machine,
    the validation gate), found without importing mmdeploy (and torch)."""
    spec = importlib.util.find_spec("mmdeploy")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "lib" / MMDEPLOY_OPS_LIBRARY
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Limits:
    """What one request may cost; each is an EDGE_* variable (see the package docstring)."""

    max_body_bytes: int = 64 * 1024 * 1024  # a body, and what an .npz unpacks to
    max_json_elements: int = 4 * 1024 * 1024  # numbers in a JSON body (~32 bytes of memory each)
    max_image_pixels: int = 40_000_000  # a photo's width x height, read from its header
    max_inflight: int = 8  # requests being read or run at once; more get 503 + Retry-After
    max_connections: int = 64  # open connections; more are answered 503 and closed
    idle_timeout_s: float = 15.0  # a keep-alive connection with no request for this long is closed
    body_timeout_s: float = 10.0  # a body that stops arriving for this long gets 408


@dataclass(frozen=True)
class RuntimeConfig:
    model_dir: Path
    key_dir: Path | None
    providers: tuple[str, ...] | None  # None: what model.json says, else CPU
    host: str = "0.0.0.0"
    port: int = 8080
    limits: Limits = field(default_factory=Limits)
    model_name: str | None = None  # the Open Inference Protocol's name; None: model.json's, else "model"
    decrypt_to: str = "memory"  # or "memory-copy", "pipe": see `plaintext`
    # EDGE_REQUIRE_SIGNED_MODEL: the key the sealed model must be signed by (see `signature`); None: not checked
    trusted_key: PublicKey | None = None
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
            limits=Limits(
                max_body_bytes=_int_setting(env, "EDGE_MAX_BODY_BYTES", Limits.max_body_bytes),
                max_json_elements=_int_setting(env, "EDGE_MAX_JSON_ELEMENTS", Limits.max_json_elements),
                max_image_pixels=_int_setting(env, "EDGE_MAX_IMAGE_PIXELS", Limits.max_image_pixels),
                max_inflight=_int_setting(env, "EDGE_MAX_INFLIGHT", Limits.max_inflight),
                max_connections=_int_setting(env, "EDGE_MAX_CONNECTIONS", Limits.max_connections),
                idle_timeout_s=_seconds_setting(env, "EDGE_IDLE_TIMEOUT_S", Limits.idle_timeout_s),
                body_timeout_s=_seconds_setting(env, "EDGE_BODY_TIMEOUT_S", Limits.body_timeout_s),
            ),
            model_name=env.get("EDGE_MODEL_NAME", "").strip() or None,
            decrypt_to=_choice_setting(env, "EDGE_DECRYPT_TO", DECRYPT_TO),
            trusted_key=_trusted_key(env) if _flag_setting(env, REQUIRE_SIGNED) else _unused_key(env),
            env=env,
        )


def _trusted_key(env: Mapping[str, str]) -> PublicKey:
    """The public key the device trusts to sign its models. The device provides it, never the image:
    whoever could swap the model in an image could swap a key shipped beside it too."""
    text, file_name = env.get(PUBLIC_KEY, "").strip(), env.get(PUBLIC_KEY_FILE, "").strip()
    if text and file_name:
        raise ConfigError(f"set {PUBLIC_KEY} or {PUBLIC_KEY_FILE}, not both")
    if not text and not file_name:
        raise ConfigError(
            f"{REQUIRE_SIGNED} is true but no key is trusted: set {PUBLIC_KEY} (the PEM public key that "
            f"signs this device's models) or {PUBLIC_KEY_FILE} (a file holding it)"
        )
    if file_name:
        pem, source = _read_key_file(file_name), f"{PUBLIC_KEY_FILE} {file_name}"
    else:
        pem, source = text.encode(), PUBLIC_KEY
    from edge_deploy.signing.keys import PublicKey  # cryptography's EC code: loaded only when required

    return PublicKey.from_pem(pem, source)


def _read_key_file(file_name: str) -> bytes:
    try:
        return Path(file_name).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{PUBLIC_KEY_FILE}: cannot read {file_name}: {exc.strerror}") from None


def _unused_key(env: Mapping[str, str]) -> None:
    """None; with a warning when a key is given without the requirement, which checks nothing."""
    if env.get(PUBLIC_KEY, "").strip() or env.get(PUBLIC_KEY_FILE, "").strip():
        log.warning(
            "a signing public key is set but %s is not true: the model's signature is not checked", REQUIRE_SIGNED
        )
    return None


def _flag_setting(env: Mapping[str, str], name: str) -> bool:
    """true/false (and 1/0, yes/no, on/off); false when unset."""
    value = env.get(name, "").strip().lower() or "false"
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


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


def _seconds_setting(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not 0 < seconds < 86400:
        raise ConfigError(f"{name} must be between 0 and 86400 seconds, got {value!r}")
    return seconds
