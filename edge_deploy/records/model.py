"""The deployment record: what was shipped for one run, from which lakeFS commit, validated how.

One typed, versioned dataclass tree. Every field is plain (str, int, float, bool, lists, dicts of
str -> float, nested dataclasses, `X | None`) so Flyte can pass a record between tasks, and it
round-trips through JSON without loss: the same JSON is `record.json` beside the published
artifacts, the document stored in MongoDB and the row stored in the embedded SQLite file.

Lists of named entries (files, outputs, platforms) are lists of small dataclasses rather than
dicts keyed by name, because names such as `model.pth` or `output.1` contain dots, which MongoDB
field names and queries treat as paths.

Times are UTC ISO 8601 strings of one fixed shape (`2026-01-31T12:00:00.000000Z`), so that text
order is time order in every store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import with_config

from edge_deploy import codec
from edge_deploy.errors import EdgeDeployError

SCHEMA_VERSION = 1

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
RUN_STATES = (RUNNING, SUCCEEDED, FAILED)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Stage names become JSON keys and MongoDB field names: no dots, no leading `$`.
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class RecordFormatError(EdgeDeployError):
    """A record (or record.json) is malformed; the message names the field."""


def directory_prefix(prefix: str) -> str:
    """'model' and 'model/' -> 'model/'; '' -> '' (the repository root). Stored and queried alike."""
    prefix = prefix.strip().strip("/")
    return prefix + "/" if prefix else ""


def utc_timestamp(value: datetime | str | None = None) -> str:
    """`value` (default: now) as the records' fixed-shape UTC ISO 8601 text."""
    if value is None:
        moment = datetime.now(UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise RecordFormatError(f"not an ISO 8601 time: {value!r}") from None
    else:
        moment = value
    if moment.tzinfo is None:
        raise RecordFormatError(f"time {value!r} has no timezone; give it in UTC (suffix Z or +00:00)")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


@dataclass(frozen=True)
class ModelFile:
    """One file of the source model directory in lakeFS."""

    path: str  # relative to the model prefix
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelSource:
    """The model version that was deployed: a lakeFS directory pinned to a commit."""

    repo: str
    ref: str
    commit_id: str
    prefix: str = "model/"
    files: list[ModelFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", directory_prefix(self.prefix))


@dataclass(frozen=True)
class ConversionInfo:
    mmdeploy_version: str
    torch_version: str
    deploy_profile: str  # the MMDeploy deploy config, e.g. classification_onnxruntime_dynamic
    opset: int
    onnx_sha256: str
    onnx_size: int


@dataclass(frozen=True)
class OutputError:
    """The worst disagreement between ONNX Runtime and PyTorch on one model output."""

    output: str
    max_abs_error: float


@dataclass(frozen=True)
class ValidationSummary:
    passed: bool
    worst_errors: list[OutputError] = field(default_factory=list)
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0


@dataclass(frozen=True)
class ImageAcceptance:
    """How the image answered the gate's photos when it was run as a device, before it was released."""

    status: str  # accepted | not-run (a failed one is never released)
    mode: str  # native | emulated | none
    photos: int
    compared: int  # classes, detections or pixels compared with PyTorch's answers
    detail: str
    startup_s: float
    p50_ms: float
    open_inference_protocol: bool
    seconds: float = 0.0  # the whole acceptance of this image
    tensor_photos: int = 0  # photos whose input tensors' raw outputs (Open Inference Protocol) were compared

    def summary(self) -> str:
        return (
            f"{self.status} in {self.seconds:.1f} s ({self.mode}, {self.photos} photos, {self.compared} answers "
            f"and {self.tensor_photos} tensors compared; ready in {self.startup_s:.2f} s, p50 {self.p50_ms:.1f} ms): "
            f"{self.detail}"
        )


@dataclass(frozen=True)
class PlatformImage:
    platform: str  # OCI platform, e.g. linux/arm64
    reference: str  # registry/repository:tag
    digest: str  # sha256:... of the platform manifest
    size: int  # bytes
    acceptance: ImageAcceptance | None = None  # None: released before acceptance existed, or by a tool without it
    signature: str | None = None  # digest of its cosign signature (an OCI referrer); None: not signed
    provenance: str | None = None  # digest of its signed SLSA provenance attestation


@dataclass(frozen=True)
class ImageSet:
    """The per-platform images and the multi-arch index over them."""

    index_reference: str
    index_digest: str
    platforms: list[PlatformImage] = field(default_factory=list)

    def for_platform(self, platform: str) -> PlatformImage | None:
        return next((image for image in self.platforms if image.platform == platform), None)


@dataclass(frozen=True)
class PublishedArtifacts:
    """Where the converted artifacts (and this record as record.json) were committed in lakeFS."""

    repo: str
    branch: str
    commit_id: str
    prefix: str = "edge/"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", directory_prefix(self.prefix))


@dataclass(frozen=True)
class RecordStatus:
    state: str = RUNNING  # running | succeeded | failed
    failed_stage: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.state not in RUN_STATES:
            raise RecordFormatError(f"status.state must be one of {', '.join(RUN_STATES)}, got {self.state!r}")
        if self.state == FAILED and not self.failed_stage:
            raise RecordFormatError("a failed record must name the stage that failed (status.failed_stage)")
        if self.state != FAILED and (self.failed_stage or self.error):
            raise RecordFormatError(f"a {self.state} record cannot carry a failed stage or error")


@with_config(codec.STRICT)
@dataclass(frozen=True)
class DeploymentRecord:
    """Everything an operator needs to know about one deployment run. Build it with `new()`."""

    run_id: str
    model: ModelSource
    status: RecordStatus = field(default_factory=RecordStatus)
    conversion: ConversionInfo | None = None
    validation: ValidationSummary | None = None
    images: ImageSet | None = None
    published: PublishedArtifacts | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds, in run order
    # safety checks the run was asked to weaken (edge_deploy.policy), e.g. "validation.atol=0.001 (...)"
    loosened: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.run_id or not self.run_id.strip():
            raise RecordFormatError("a deployment record needs a run_id")
        if not self.model.repo:
            raise RecordFormatError(f"record {self.run_id}: model.repo is empty")
        if self.schema_version != SCHEMA_VERSION:
            raise RecordFormatError(
                f"record {self.run_id}: schema_version {self.schema_version} is not {SCHEMA_VERSION}, "
                "the version this edge-deploy writes"
            )
        for stage in self.timings:
            if not _STAGE_NAME.match(stage):
                raise RecordFormatError(f"record {self.run_id}: timings key {stage!r} is not a stage name")
        created = utc_timestamp(self.created_at or None)
        object.__setattr__(self, "created_at", created)
        object.__setattr__(self, "updated_at", utc_timestamp(self.updated_at) if self.updated_at else created)

    @classmethod
    def new(cls, run_id: str, model: ModelSource) -> DeploymentRecord:
        """A running record, created and updated now."""
        return cls(run_id=run_id, model=model)

    # Each change returns a new record with `updated_at` moved to now (or `at`), so the stores can
    # tell a newer write from a stale retry.

    def updated(self, at: datetime | str | None = None, **changes: Any) -> DeploymentRecord:
        return replace(self, **changes, updated_at=utc_timestamp(at))

    def with_timing(self, stage: str, seconds: float) -> DeploymentRecord:
        return self.updated(timings={**self.timings, stage: seconds})

    def succeeded(self, at: datetime | str | None = None) -> DeploymentRecord:
        return self.updated(at, status=RecordStatus(SUCCEEDED))

    def failed(self, stage: str, error: str, at: datetime | str | None = None) -> DeploymentRecord:
        return self.updated(at, status=RecordStatus(FAILED, failed_stage=stage, error=error))

    def image_for(self, platform: str) -> PlatformImage | None:
        return self.images.for_platform(platform) if self.images else None

    # -- JSON (edge_deploy.codec: strict, every field checked, unknown fields refused) -------------

    def to_dict(self) -> dict[str, Any]:
        data = codec.to_plain(self)
        return {"schema_version": data.pop("schema_version"), **data}  # first, for whoever reads the file

    def to_json(self, indent: int | None = 2) -> str:
        """The record as JSON: indented for record.json, compact (indent=None) for storage."""
        return codec.to_json(self.to_dict(), indent) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "record") -> DeploymentRecord:
        if not isinstance(data, dict):
            raise RecordFormatError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise RecordFormatError(
                f"{source}: schema_version {version} was written by a newer edge-deploy "
                f"(this one reads up to {SCHEMA_VERSION}); upgrade edge-deploy"
            )
        try:
            return codec.from_plain(cls, data)
        except (codec.DecodeError, RecordFormatError) as exc:
            raise RecordFormatError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "record.json") -> DeploymentRecord:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordFormatError(f"{source}: not valid JSON: {exc}") from None
        return cls.from_dict(data, source)
