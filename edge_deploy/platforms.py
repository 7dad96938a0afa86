"""Edge platforms: the matrix in images/platforms.yaml, target detection, and the build host's platform.

    matrix = PlatformMatrix.load()
    targets = detect_targets(["x86_64-cpu", "linux/arm64"], backend="onnxruntime", matrix=matrix)
    host = host_platform()                 # or host_platform(docker_client.info()) for a remote engine
    build_mode(targets[1], host)           # "native" | "cross": COPY-only, no emulation needed

A manifest names targets either as device classes (`jetson-orin`) or as raw OCI platforms
(`linux/arm64`), which mean the class marked `default_for_platform` for that platform.
"""

from __future__ import annotations

import logging
import platform as host_info
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_deploy.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MATRIX_PATH = Path(__file__).resolve().parents[1] / "images" / "platforms.yaml"
SCHEMA_VERSION = 1
KNOWN_BACKENDS = ("onnxruntime",)
KNOWN_EXECUTION_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "XnnpackExecutionProvider",
    "CPUExecutionProvider",
)
# OCI architecture -> the variant an image gets when none is given (what `docker pull --platform` assumes).
_ARCHITECTURES = {"amd64": None, "arm64": "v8", "arm": "v7", "386": None, "ppc64le": None, "s390x": None}
# `uname -m` / Docker's "Architecture" -> OCI (architecture, variant)
_MACHINE_NAMES = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
}
_DEVICE_CLASS_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,_-]+\])?==[A-Za-z0-9.+!-]+$")
_PLATFORM_KEYS = {
    "description",
    "platform",
    "default_for_platform",
    "base_image",
    "python_version",
    "backends",
    "runtime",
    "execution_providers",
    "env",
    "supported",
    "reason",
}
_RUNTIME_KEYS = {"packages", "wheel_platforms", "index_url"}


@dataclass(frozen=True, order=True)
class OciPlatform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> OciPlatform:
        """`linux/arm64`, `linux/arm64/v8`, `linux/arm/v7`; the default variant is filled in."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigError(f"{text!r} is not an OCI platform os/arch[/variant] (e.g. linux/amd64, linux/arm64)")
        os_name, architecture = parts[0], parts[1]
        if architecture not in _ARCHITECTURES:
            known = ", ".join(sorted(_ARCHITECTURES))
            raise ConfigError(f"{text!r}: unknown architecture {architecture!r} (known: {known})")
        variant = parts[2] if len(parts) == 3 else _ARCHITECTURES[architecture]
        return cls(os_name, architecture, variant)

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def to_oci(self) -> dict[str, str]:
        """The `platform` object of an OCI image index entry."""
        entry = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            entry["variant"] = self.variant
        return entry


@dataclass(frozen=True)
class RuntimePackages:
    """The Python runtime layer: pinned requirements, installed for a foreign platform with pip."""

    packages: tuple[str, ...]
    wheel_platforms: tuple[str, ...]
    python_version: str
    index_url: str | None = None

    @property
    def onnxruntime(self) -> str:
        return self.packages[0]


@dataclass(frozen=True)
class PlatformSpec:
    """One device class of the matrix."""

    name: str
    description: str
    platform: OciPlatform
    base_image: str
    runtime: RuntimePackages
    execution_providers: tuple[str, ...]
    backends: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    default_for_platform: bool = False
    supported: bool = True
    reason: str | None = None


@dataclass(frozen=True)
class BuildTarget:
    """A concrete image to build: a supported device class, for one backend."""

    name: str
    backend: str
    spec: PlatformSpec

    @property
    def platform(self) -> OciPlatform:
        return self.spec.platform


@dataclass(frozen=True)
class PlatformMatrix:
    platforms: Mapping[str, PlatformSpec]
    source: str

    @classmethod
    def load(cls, path: Path | None = None) -> PlatformMatrix:
        path = path or DEFAULT_MATRIX_PATH
        try:
            document = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read the platform matrix {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_document(document, str(path))

    @classmethod
    def from_document(cls, document: Any, source: str) -> PlatformMatrix:
        if not isinstance(document, dict):
            raise ConfigError(f"{source}: expected a mapping with schema_version and platforms")
        if document.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(
                f"{source}: schema_version must be {SCHEMA_VERSION}, got {document.get('schema_version')!r}"
            )
        entries = document.get("platforms")
        if not isinstance(entries, dict) or not entries:
            raise ConfigError(f"{source}: `platforms` must be a non-empty mapping of device class -> entry")
        platforms = {name: _parse_spec(name, entry, f"{source}: platforms.{name}") for name, entry in entries.items()}
        _check_defaults(platforms, source)
        return cls(platforms, source)

    @property
    def supported(self) -> list[PlatformSpec]:
        return [spec for spec in self.platforms.values() if spec.supported]

    def default_for(self, platform: OciPlatform) -> PlatformSpec | None:
        return next((s for s in self.platforms.values() if s.default_for_platform and s.platform == platform), None)

    def describe_supported(self) -> str:
        classes = ", ".join(f"{s.name} ({s.platform})" for s in self.supported)
        raw = ", ".join(sorted({str(s.platform) for s in self.supported if s.default_for_platform}))
        return f"supported device classes: {classes}; raw OCI platforms: {raw}"


def detect_targets(requested: Iterable[str], backend: str, matrix: PlatformMatrix | None = None) -> list[BuildTarget]:
    """Manifest targets (device classes or OCI platforms) + the deploy backend -> build targets, in order."""
    matrix = matrix or PlatformMatrix.load()
    requested = [item.strip() for item in requested if item and item.strip()]
    if not requested:
        raise ConfigError(f"no deploy targets given; {matrix.describe_supported()}")
    if backend not in KNOWN_BACKENDS:
        raise ConfigError(
            f"deploy backend {backend!r} is not supported; supported backends: {', '.join(KNOWN_BACKENDS)}"
        )
    targets: dict[str, BuildTarget] = {}
    for item in requested:
        spec = _resolve(item, matrix)
        if not spec.supported:
            raise ConfigError(f"target {item!r} ({spec.name}, {spec.platform}) is not supported: {spec.reason}")
        if backend not in spec.backends:
            raise ConfigError(
                f"target {item!r} ({spec.name}) has no {backend} build (its backends: {', '.join(spec.backends)})"
            )
        targets.setdefault(spec.name, BuildTarget(spec.name, backend, spec))
    return list(targets.values())


def host_platform(engine_info: Mapping[str, Any] | None = None) -> OciPlatform:
    """The platform builds run on: the Docker engine's (from `client.info()`), else this machine's."""
    if engine_info:
        machine, os_name = str(engine_info.get("Architecture", "")), str(engine_info.get("OSType", "linux"))
    else:
        machine, os_name = host_info.machine(), host_info.system().lower()
    architecture, variant = _MACHINE_NAMES.get(machine.lower(), (machine.lower(), None))
    return OciPlatform(os_name, architecture, variant)


def build_mode(target: BuildTarget, host: OciPlatform) -> str:
    """`native` when the host runs the target's architecture, else `cross`: the COPY-only build needs no
    emulation, but the image cannot be started on this host without qemu binfmt. Logged either way."""
    if (target.platform.os, target.platform.architecture) == (host.os, host.architecture):
        log.info("target %s (%s): native build on host %s", target.name, target.platform, host)
        return "native"
    emulator = f"qemu-{_QEMU_NAMES.get(target.platform.architecture, target.platform.architecture)}"
    registered = (Path("/proc/sys/fs/binfmt_misc") / emulator).exists()
    log.info(
        "target %s (%s): cross build on host %s: COPY-only, no emulation needed; %s binfmt %s",
        target.name,
        target.platform,
        host,
        emulator,
        "registered (the image can also run here, emulated)" if registered else "not registered (it cannot run here)",
    )
    return "cross"


_QEMU_NAMES = {"arm64": "aarch64", "arm": "arm", "amd64": "x86_64"}


def _resolve(item: str, matrix: PlatformMatrix) -> PlatformSpec:
    if item in matrix.platforms:
        return matrix.platforms[item]
    if "/" in item:
        try:
            platform = OciPlatform.parse(item)
        except ConfigError as exc:
            raise ConfigError(f"target {item!r}: {exc}; {matrix.describe_supported()}") from None
        spec = matrix.default_for(platform)
        if spec is not None:
            return spec
        raise ConfigError(f"no device class builds for platform {platform}; {matrix.describe_supported()}")
    raise ConfigError(f"unknown deploy target {item!r}; {matrix.describe_supported()}")


def _parse_spec(name: str, entry: Any, where: str) -> PlatformSpec:
    if not _DEVICE_CLASS_NAME.match(str(name)):
        raise ConfigError(f"{where}: a device class name is lower-case letters, digits, '_' and '-'")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping")
    _no_unknown_keys(entry, _PLATFORM_KEYS, where)
    try:
        platform = OciPlatform.parse(_text(entry, "platform", where))
    except ConfigError as exc:
        raise ConfigError(f"{where}.platform: {exc}") from None
    supported = entry.get("supported", True)
    if not isinstance(supported, bool):
        raise ConfigError(f"{where}.supported: must be true or false")
    reason = entry.get("reason")
    if not supported and not (isinstance(reason, str) and reason.strip()):
        raise ConfigError(f"{where}: an unsupported class needs a `reason` saying why")
    python_version = _text(entry, "python_version", where)
    if not re.match(r"^3\.\d+$", python_version):
        raise ConfigError(f"{where}.python_version: expected 3.N, got {python_version!r}")
    return PlatformSpec(
        name=name,
        description=_text(entry, "description", where),
        platform=platform,
        base_image=_text(entry, "base_image", where),
        runtime=_parse_runtime(entry.get("runtime"), python_version, f"{where}.runtime"),
        execution_providers=_execution_providers(entry.get("execution_providers"), f"{where}.execution_providers"),
        backends=_backends(entry.get("backends"), f"{where}.backends"),
        env=_env(entry.get("env", {}), f"{where}.env"),
        default_for_platform=bool(entry.get("default_for_platform", False)),
        supported=supported,
        reason=reason.strip() if isinstance(reason, str) else None,
    )


def _parse_runtime(entry: Any, python_version: str, where: str) -> RuntimePackages:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with packages and wheel_platforms")
    _no_unknown_keys(entry, _RUNTIME_KEYS, where)
    packages = _string_list(entry.get("packages"), f"{where}.packages")
    for requirement in packages:
        if not _REQUIREMENT.match(requirement):
            raise ConfigError(f"{where}.packages: {requirement!r} must be pinned as name==version (name[extras] ok)")
    if not packages[0].lower().startswith("onnxruntime"):
        raise ConfigError(f"{where}.packages: the first package must be the ONNX Runtime build, got {packages[0]!r}")
    index_url = entry.get("index_url")
    if index_url is not None and not (isinstance(index_url, str) and index_url.startswith("https://")):
        raise ConfigError(f"{where}.index_url: must be an https:// URL")
    wheel_platforms = _string_list(entry.get("wheel_platforms"), f"{where}.wheel_platforms")
    return RuntimePackages(tuple(packages), tuple(wheel_platforms), python_version, index_url)


def _execution_providers(value: Any, where: str) -> tuple[str, ...]:
    providers = _string_list(value, where)
    for provider in providers:
        if provider not in KNOWN_EXECUTION_PROVIDERS:
            raise ConfigError(f"{where}: unknown execution provider {provider!r}")
    if providers[-1] != "CPUExecutionProvider":
        raise ConfigError(f"{where}: must end with CPUExecutionProvider, the fallback every build has")
    return tuple(providers)


def _backends(value: Any, where: str) -> tuple[str, ...]:
    backends = _string_list(value, where)
    unknown = [b for b in backends if b not in KNOWN_BACKENDS]
    if unknown:
        raise ConfigError(f"{where}: unknown backend(s) {', '.join(unknown)} (known: {', '.join(KNOWN_BACKENDS)})")
    return tuple(backends)


def _env(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping NAME: value")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not re.match(r"^[A-Z_][A-Z0-9_]*$", str(key)) or isinstance(item, dict | list) or item is None:
            raise ConfigError(f"{where}.{key}: names are UPPER_CASE and values are scalars")
        env[str(key)] = str(item)
    return env


def _check_defaults(platforms: Mapping[str, PlatformSpec], source: str) -> None:
    seen: dict[OciPlatform, str] = {}
    for spec in platforms.values():
        if not spec.default_for_platform:
            continue
        if spec.platform in seen:
            raise ConfigError(
                f"{source}: both {seen[spec.platform]} and {spec.name} are default_for_platform {spec.platform}"
            )
        seen[spec.platform] = spec.name


def _no_unknown_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: required, a non-empty string")
    return value.strip()


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of strings")
    return [v.strip() for v in value]
