"""Request and response models of the API; they are what the OpenAPI document says.

The response models are the API's own, not the internal dataclasses: the record's JSON form can
evolve with the pipeline while clients keep this contract. A float that is not finite (an output
that disagreed without bound) is given as null, since JSON has no infinity.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from edge_deploy.jobs.model import JOB_STATES, Job
from edge_deploy.records import DeploymentRecord
from edge_deploy.validation.report import SETTING_BOUNDS, Bound, ValidationSettings

REPO_PATTERN = r"^[a-z0-9][a-z0-9-]{2,62}$"  # lakeFS repository names
REF_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.~^@/-]{0,254}$"  # branch, tag, commit id or ref expression
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
DEVICE_CLASS_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TAG_PATTERN = r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
IMAGE_REPOSITORY_PATTERN = r"^([a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*)?$"
BRANCH_PATTERN = r"^([A-Za-z0-9_][A-Za-z0-9_-]{0,254})?$"
# Free text that reaches file paths, Redis keys and logs: no control characters (NUL, newlines)
PLAIN_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
PLAIN_TEXT_PROBLEM = "must not contain control characters (NUL, tab, newline, ...)"

RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, description="A run id, as POST /deployments answered it.")]
DeviceClass = Annotated[str, Field(pattern=DEVICE_CLASS_PATTERN, description="A device class, see GET /platforms.")]


class StrictBody(BaseModel):
    # JSON only: no "3" for 3, no unknown fields, so a typo is an error and not a silent default
    model_config = ConfigDict(strict=True, extra="forbid")


def _validation_options_model() -> type[BaseModel]:
    """ValidationSettings' fields, each optional with the pipeline's default and within its bounds
    (SETTING_BOUNDS): one source of truth, and the OpenAPI document states the bounds."""
    fields: dict[str, Any] = {}
    hints = typing.get_type_hints(ValidationSettings)
    for item in dataclasses.fields(ValidationSettings):
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        fields[item.name] = (_bounded(hints[item.name], SETTING_BOUNDS.get(item.name)), default)
    return create_model("ValidationOptions", __base__=StrictBody, **fields)


def _bounded(hint: Any, bound: Bound | None) -> Any:
    if bound is None:
        return hint
    limits = Field(gt=bound.low, le=bound.high) if bound.low_open else Field(ge=bound.low, le=bound.high)
    if bound.items is not None:  # a list of bounded values
        (item,) = typing.get_args(hint)
        return Annotated[list[Annotated[item, limits]], Field(min_length=1, max_length=bound.items)]
    if type(None) in typing.get_args(hint):  # optional: None keeps the default
        (value,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return Annotated[value, limits] | None
    return Annotated[hint, limits]


ValidationOptions = _validation_options_model()


class DeployOptionsBody(StrictBody):
    """tasks.options.DeployOptions: the workflow's less common knobs."""

    release_tag: str = Field("", pattern=TAG_PATTERN, description="Index tag; default: the commit's first 12 chars.")
    base_images: dict[
        Annotated[str, Field(pattern=DEVICE_CLASS_PATTERN)],
        Annotated[str, Field(min_length=1, max_length=512, pattern=PLAIN_TEXT_PATTERN)],
    ] = Field(
        default_factory=dict, max_length=16, description="Device class -> base image reference, overriding the matrix."
    )
    build_images: bool = Field(True, description="False: convert, validate and seal, but build no images.")
    validation: ValidationOptions = Field(default_factory=ValidationOptions)  # type: ignore[valid-type]


class DeploymentCreate(StrictBody):
    """The inputs of the deploy_model workflow. Give the model as `uri`, as `repo` (+ `ref`, `prefix`),
    or as `local_dir` (only where the server allows local models)."""

    uri: str | None = Field(
        None, max_length=2048, pattern=PLAIN_TEXT_PATTERN, description="lakefs://<repository>/<ref>/<prefix>"
    )
    repo: str | None = Field(None, pattern=REPO_PATTERN, description="lakeFS repository of the model.")
    ref: str = Field("main", pattern=REF_PATTERN, description="Branch, tag or commit; resolved to a commit now.")
    prefix: str = Field(
        "model/", max_length=1024, pattern=PLAIN_TEXT_PATTERN, description="Directory of the model in the repository."
    )
    local_dir: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=PLAIN_TEXT_PATTERN,
        description="Model directory, relative to the server's EDGE_API_LOCAL_MODEL_ROOT.",
    )
    targets: list[Annotated[str, Field(min_length=1, max_length=64, pattern=PLAIN_TEXT_PATTERN)]] | None = Field(
        None, min_length=1, max_length=16, description="Device classes or OCI platforms; default: the manifest's."
    )
    repository: str = Field(
        "", max_length=255, pattern=IMAGE_REPOSITORY_PATTERN, description="Image repository under EDGE_REGISTRY."
    )
    publish_branch: str = Field(
        "", pattern=BRANCH_PATTERN, description="lakeFS branch for the artifacts; default: the source ref."
    )
    options: DeployOptionsBody = Field(default_factory=DeployOptionsBody)

    @model_validator(mode="after")
    def _one_source(self) -> DeploymentCreate:
        given = [name for name in ("uri", "repo", "local_dir") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give the model's source once: `repo` (with `ref` and `prefix`), `uri` (lakefs://repo/ref/prefix) "
                f"or `local_dir`; got {' and '.join(given) if given else 'none'}"
            )
        return self


class Links(BaseModel):
    run: str
    events: str
    deployment: str
    cancel: str


class DeploymentAccepted(BaseModel):
    run_id: str
    state: Literal[JOB_STATES]  # type: ignore[valid-type]
    source_commit: str = Field(description="The commit the ref pointed at when the run was queued.")
    replayed: bool = Field(description="True: the Idempotency-Key named an earlier request; its run is returned.")
    deduplicated: bool = Field(description="True: this commit was already being deployed to these targets.")
    links: Links


class RequestView(BaseModel):
    repo: str
    ref: str
    prefix: str
    local_dir: str
    targets: list[str]
    repository: str
    publish_branch: str
    options: dict[str, Any]


class StageView(BaseModel):
    stage: str
    state: Literal["running", "finished", "failed"]
    seconds: float | None = None
    error: str | None = None


class RunView(BaseModel):
    run_id: str
    state: Literal[JOB_STATES]  # type: ignore[valid-type]
    stage: str | None = Field(None, description="The stage the run is in (or ended in).")
    progress: float = Field(ge=0, le=1)
    source_commit: str | None = None
    principal: str | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    attempts: int | None = None
    cancel_requested: bool = False
    cancelled_by: str | None = Field(None, description="Who asked for the cancel.")
    error: str | None = None
    stages: list[StageView]
    request: RequestView | None = None


class ModelFileView(BaseModel):
    path: str
    size: int
    sha256: str


class ModelView(BaseModel):
    repo: str
    ref: str
    commit_id: str
    prefix: str
    files: list[ModelFileView]


class ConversionView(BaseModel):
    mmdeploy_version: str
    torch_version: str
    deploy_profile: str
    opset: int
    onnx_sha256: str
    onnx_size: int


class OutputErrorView(BaseModel):
    output: str
    max_abs_error: float | None = Field(description="null: not finite")


class ValidationView(BaseModel):
    passed: bool
    worst_errors: list[OutputErrorView]
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class AcceptanceView(BaseModel):
    """How the image answered the gate's photos when it was run as a device, before its release."""

    status: Literal["accepted", "failed", "not-run"]
    mode: str = Field(description="native, emulated (qemu-user) or none")
    photos: int
    compared: int = Field(description="classes, detections or pixels compared with PyTorch's answers")
    tensor_photos: int = Field(description="photos whose tensors' raw outputs (/v2 infer) were compared")
    detail: str
    startup_s: float
    p50_ms: float
    open_inference_protocol: bool
    seconds: float


class ImageView(BaseModel):
    platform: str
    reference: str
    digest: str
    size: int
    acceptance: AcceptanceView | None = None


class ImageSetView(BaseModel):
    index_reference: str
    index_digest: str
    platforms: list[ImageView]


class PublishedView(BaseModel):
    repo: str
    branch: str
    commit_id: str
    prefix: str


class StatusView(BaseModel):
    state: Literal["running", "succeeded", "failed"]
    failed_stage: str | None = None
    error: str | None = None


class RecordView(BaseModel):
    run_id: str
    model: ModelView
    status: StatusView
    conversion: ConversionView | None
    validation: ValidationView | None
    images: ImageSetView | None
    published: PublishedView | None
    timings: dict[str, float | None]
    loosened: list[str] = Field(default_factory=list, description="Safety checks the run was asked to weaken.")
    created_at: str
    updated_at: str
    schema_version: int


class RecordPageView(BaseModel):
    items: list[RecordView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ReleaseView(BaseModel):
    """What a device of one class should run for one model: the newest passing release."""

    model: str
    device_class: str
    platform: str
    reference: str
    digest: str
    pinned_reference: str = Field(description="repository@digest: pull this.")
    run_id: str
    model_commit: str
    released_at: str
    validation: ValidationView | None
    acceptance: AcceptanceView = Field(description="always accepted: no other image is answered")
    signature: str | None = Field(
        None,
        description="digest of the image's cosign signature (an OCI 1.1 referrer); when the service has "
        "EDGE_SIGNING_PUBLIC_KEY or EDGE_SIGNING_KEY, only signed images are answered",
    )
    provenance: str | None = Field(None, description="digest of the image's signed SLSA provenance attestation")


class PlatformView(BaseModel):
    name: str
    description: str
    platform: str
    default_for_platform: bool
    execution_providers: list[str]
    supported: bool
    reason: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check] = Field(description="What readiness needs: the queue and the record store.")
    workers: Check = Field(description="Whether a worker whose executor answers is up (not needed to be ready).")


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: what went wrong, and which field to fix when a field is to blame."""

    status: int
    error: str = Field(description="A short code: invalid_request, unauthorized, forbidden, not_found, ...")
    message: str
    field: str | None = Field(
        None, description="The first field to fix, e.g. body.targets[1] or header Idempotency-Key."
    )
    problems: list[FieldProblem] = Field(default_factory=list)


# -- views of internal objects -------------------------------------------------------------------


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def shown_path(path: str, root: Path | None) -> str:
    """A server path as an API caller sees it: relative to the local model root (EDGE_API_LOCAL_MODEL_ROOT,
    which is how callers name local models); any other absolute path by its last part only, so no
    caller learns the server's directory layout."""
    if not path.startswith("/"):
        return path
    where = Path(path)
    if root is not None and where.is_relative_to(root):
        return str(where.relative_to(root))
    return where.name


def record_view(record: DeploymentRecord, local_root: Path | None = None) -> RecordView:
    data = record.to_dict()
    data["model"]["ref"] = shown_path(record.model.ref, local_root)  # a local model's ref is its directory
    if record.validation is not None:
        data["validation"] = validation_view(record)
    data["timings"] = {stage: finite(seconds) for stage, seconds in record.timings.items()}
    return RecordView.model_validate(data)


def validation_view(record: DeploymentRecord) -> ValidationView | None:
    summary = record.validation
    if summary is None:
        return None
    return ValidationView(
        passed=summary.passed,
        worst_errors=[
            OutputErrorView(output=e.output, max_abs_error=finite(e.max_abs_error)) for e in summary.worst_errors
        ],
        latency_p50_ms=finite(summary.latency_p50_ms),
        latency_p95_ms=finite(summary.latency_p95_ms),
    )


def request_view(job: Job, local_root: Path | None = None) -> RequestView:
    data = job.request.to_dict()
    data["local_dir"] = shown_path(job.request.local_dir, local_root)
    return RequestView.model_validate(data)
