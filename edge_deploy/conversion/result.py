"""What a conversion produced (`ConversionResult`, stored as conversion.json) and what it depends on
(`ModelIdentity`, the conversion task's cache key)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import with_config

from edge_deploy import codec
from edge_deploy.conversion import profiles
from edge_deploy.conversion.contract import Manifest, ModelDir
from edge_deploy.conversion.errors import ConversionError
from edge_deploy.files import ONNX_FILE_NAME, sha256_file

RESULT_FILE = "conversion.json"


@with_config(codec.STRICT)
@dataclass(frozen=True)
class ConversionResult:
    onnx_path: str  # where convert() wrote it (local path at conversion time)
    sha256: str
    size_bytes: int
    opset: int
    inputs: dict[str, list[int | str]]  # name -> shape; a dynamic axis is its name (e.g. "batch")
    outputs: dict[str, list[int | str]]
    deploy_profile: str
    mmdeploy_version: str
    torch_version: str
    seconds: float
    peak_rss_mb: float
    sdk_files: list[str]
    onnx_file: str = ONNX_FILE_NAME  # relative to the output directory (what a Flyte task's consumer uses)
    task: str = ""
    codebase: str = ""
    config_sha256: str = ""
    checkpoint_sha256: str = ""
    peak_rss_method: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    inferred: list[str] = field(default_factory=list)
    opset_reason: str = ""  # set when the conversion raised the opset the manifest left open, and why
    profile_reason: str = ""  # set when the conversion chose another profile than inference did, and why
    manifest: str = ""  # the manifest the export used, as JSON (a str: Flyte passes it as plain text)

    def to_json(self) -> str:
        return codec.to_json(self)

    @classmethod
    def from_json(cls, text: str, source: str = RESULT_FILE) -> ConversionResult:
        try:
            return codec.from_json(cls, text)
        except ValueError as exc:  # codec.DecodeError is one
            raise ConversionError("reading the result", f"{source}: {exc}") from exc

    @classmethod
    def read(cls, out_dir: Path) -> ConversionResult:
        """The result stored in a conversion output directory, with `onnx_path` pointing into it."""
        result = cls.from_json((Path(out_dir) / RESULT_FILE).read_text())
        return replace(result, onnx_path=str(Path(out_dir).resolve() / result.onnx_file))


@dataclass(frozen=True)
class ModelIdentity:
    """What a conversion's output depends on, by content: the cache key of the conversion task."""

    config_sha256: str
    checkpoint_sha256: str
    manifest_sha256: str  # "" when the directory has no manifest (then config + profile decide)
    deploy_profile: str
    deploy_config_sha256: str  # of the resolved deploy config (built-in chain or the directory's file)
    versions: str  # edge-deploy and converter stack versions, e.g. "edge-deploy 0.1.0; mmdeploy 1.3.1; ..."


# The packages whose versions change what a conversion produces.
CONVERTER_PACKAGES = ("edge-deploy", "mmdeploy", "torch", "mmcv", "mmengine", "onnx")


def converter_versions(codebase: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    codebase_package = {"mmseg": "mmsegmentation"}.get(codebase, codebase)
    parts = []
    for package in (*CONVERTER_PACKAGES, codebase_package):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} missing")
    return "; ".join(parts)


def model_identity(model_dir: ModelDir) -> ModelIdentity:
    """Content identity of a model directory; equal identities convert to the same ONNX model."""
    from edge_deploy.conversion.profiles import load_profile

    resolved = json.dumps(load_profile(model_dir.deploy_config_path).to_dict(), sort_keys=True, default=str)
    return ModelIdentity(
        config_sha256=sha256_file(model_dir.config_path),
        checkpoint_sha256=sha256_file(model_dir.checkpoint_path),
        manifest_sha256=sha256_file(model_dir.manifest_path) if model_dir.manifest_path else "",
        deploy_profile=model_dir.manifest.deploy_profile,
        deploy_config_sha256=hashlib.sha256(resolved.encode()).hexdigest(),
        versions=converter_versions(model_dir.manifest.codebase),
    )


def converted_model_dir(model_dir: ModelDir, onnx_dir: Path) -> ModelDir:
    """`model_dir` as its conversion in `onnx_dir` exported it (see `as_exported`), else unchanged."""
    record = Path(onnx_dir) / RESULT_FILE
    if not record.is_file():
        return model_dir
    return as_exported(model_dir, ConversionResult.from_json(record.read_text(), str(record)))


def as_exported(model_dir: ModelDir, result: ConversionResult) -> ModelDir:
    """`model_dir` with the manifest `result` records (an opset or profile the conversion chose where
    the manifest left it open), or unchanged when it records none or the same one."""
    if not result.manifest:
        return model_dir
    manifest = Manifest.from_dict(json.loads(result.manifest))
    if manifest == model_dir.manifest:
        return model_dir
    deploy_config_path = model_dir.deploy_config_path
    if manifest.deploy_profile != model_dir.manifest.deploy_profile:
        deploy_config_path = profiles.profile_path(manifest.deploy_profile)
    return replace(model_dir, manifest=manifest, deploy_config_path=deploy_config_path)
