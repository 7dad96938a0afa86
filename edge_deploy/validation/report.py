"""The validation report: typed dataclasses, written as JSON beside the model and shown as a Flyte Deck.

Everything a reader needs to judge the gate is in here, including the error histograms and latency
samples the HTML deck plots, so the deck can be rendered again from the JSON alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import with_config

from edge_deploy import codec
from edge_deploy.errors import EdgeDeployError
from edge_deploy.validation.errors import ValidationError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ValidationSettings:
    """How hard the gate looks. Part of the Flyte cache key: change a field and validation reruns.

    `atol`/`rtol` override the manifest's tolerances and the per-task defaults for float outputs.
    """

    samples: int = 3
    seed: int = 0
    # Batch sizes tried when the batch axis is dynamic (the manifest's own batch is always tried).
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2])
    # Dynamic height/width are also tried at this fraction of the manifest's size (multiples of 32).
    spatial_scale: float = 0.75
    warmup_runs: int = 5
    timed_runs: int = 30
    # Timing (warm-up included) stops at timed_runs or after this many seconds, whichever comes first.
    time_budget_s: float = 15.0
    # 0 lets ONNX Runtime pick (one thread per physical core).
    intra_op_threads: int = 0
    optimize: bool = True
    # An optimized model must be at least this much faster (p50) to be kept: below it, the gain is noise.
    min_speedup: float = 1.05
    atol: float | None = None
    rtol: float | None = None

    def __post_init__(self) -> None:
        problems = [problem for name in SETTING_BOUNDS if (problem := _out_of_bounds(name, getattr(self, name)))]
        if problems:
            raise ValidationError("invalid validation settings: " + "; ".join(problems))


@dataclass(frozen=True)
class Bound:
    """The values a setting may take: in [low, high] (low excluded when `low_open`). Upper bounds keep
    one request from holding a worker for ever; the tolerances' keep the gate a gate."""

    low: float
    high: float
    low_open: bool = False
    items: int | None = None  # a list: at most this many values, each within the bound

    def describe(self) -> str:
        low = f"({self.low:g}" if self.low_open else f"[{self.low:g}"
        return f"{low}, {self.high:g}]" + (f", at most {self.items} values" if self.items else "")


SETTING_BOUNDS = {
    "samples": Bound(1, 32),
    "seed": Bound(0, 2**31 - 1),
    "batch_sizes": Bound(1, 64, items=8),
    "spatial_scale": Bound(0, 4, low_open=True),
    "warmup_runs": Bound(0, 100),
    "timed_runs": Bound(1, 1000),
    "time_budget_s": Bound(0, 300, low_open=True),
    "intra_op_threads": Bound(0, 64),
    "min_speedup": Bound(1, 10),
    "atol": Bound(0, 1),  # None: the manifest's, else the task's defaults
    "rtol": Bound(0, 1),
}


def _out_of_bounds(name: str, value: object) -> str | None:
    bound = SETTING_BOUNDS[name]
    values = value if isinstance(value, list) else [value]
    if value is None and name in ("atol", "rtol"):
        return None
    if bound.items is not None and not 1 <= len(values) <= bound.items:
        return f"{name} must hold 1 to {bound.items} values, got {len(values)}"
    for item in values:
        ok = isinstance(item, int | float) and math.isfinite(item) and item <= bound.high
        ok = ok and (item > bound.low if bound.low_open else item >= bound.low)
        if not ok:
            return f"{name} must be in {bound.describe()}, got {value}"
    return None


@dataclass
class Check:
    """One structural check: its name, verdict and what was found."""

    name: str
    passed: bool
    detail: str


@dataclass
class StructureReport:
    passed: bool
    checks: list[Check]
    ir_version: int
    opset_imports: dict[str, int]
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    # "domain::OpType" of every node outside the standard ONNX domains.
    custom_ops: list[str] = field(default_factory=list)
    # The ONNX Runtime custom-op library registered for them (file name and where it came from).
    custom_op_library: str | None = None

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


@dataclass
class ErrorHistogram:
    """Counts of log10(|onnx - reference|) per bin; exact matches are counted apart (log of 0)."""

    log10_edges: list[float]
    counts: list[int]
    exact: int


@dataclass
class OutputParity:
    """One output of one case, compared element-wise: |onnx - ref| <= atol + rtol * |ref|."""

    name: str
    shape: list[int]
    dtype: str
    atol: float
    rtol: float
    elements: int
    max_abs: float
    # |onnx - ref| / max(|ref|, atol): relative to the reference, but not blown up where it is ~0.
    max_rel: float
    mean_abs: float
    p99_abs: float
    violations: int
    worst_index: list[int]
    worst_reference: float
    worst_onnx: float
    passed: bool
    histogram: ErrorHistogram
    note: str = ""

    @property
    def allowed_at_worst(self) -> float:
        return self.atol + self.rtol * abs(self.worst_reference)

    def failure_message(self, case: str) -> str:
        if self.note and (not self.worst_index or not self.violations):
            return f"output '{self.name}' in case '{case}': {self.note}"
        return (
            f"output '{self.name}' max abs error {self.max_abs:.1e} > "
            f"atol {self.atol:.0e} + rtol {self.rtol:.0e}*|ref| "
            f"in case '{case}': {self.violations} of {self.elements} elements out of tolerance; worst at "
            f"{self.worst_index}: reference {self.worst_reference:.6g}, onnx {self.worst_onnx:.6g} "
            f"(difference {abs(self.worst_onnx - self.worst_reference):.1e}, allowed {self.allowed_at_worst:.1e})"
        )


@dataclass
class TaskAgreement:
    """The task-level check: do both models give the same answer a user would read?"""

    kind: str
    passed: bool
    metrics: dict[str, float]
    detail: str


@dataclass
class ParityCase:
    name: str
    seed: int
    inputs: dict[str, list[int]]
    outputs: list[OutputParity]
    task: TaskAgreement | None
    reference_seconds: float
    onnx_seconds: float
    passed: bool

    def failure_message(self) -> str | None:
        for output in self.outputs:
            if not output.passed:
                return output.failure_message(self.name)
        if self.task is not None and not self.task.passed:
            return f"{self.task.kind} in case '{self.name}': {self.task.detail}"
        return None


@dataclass
class ParityReport:
    passed: bool
    provider: str
    cases: list[ParityCase]
    failure: str | None = None

    def worst(self, output: str) -> OutputParity | None:
        """The case result with the largest max abs error for `output`."""
        found = [item for case in self.cases for item in case.outputs if item.name == output]
        return max(found, key=lambda item: item.max_abs, default=None)

    @property
    def output_names(self) -> list[str]:
        names: list[str] = []
        for case in self.cases:
            names += [item.name for item in case.outputs if item.name not in names]
        return names


@dataclass
class SpeedReport:
    model_bytes: int
    load_seconds: float
    inputs: dict[str, list[int]]
    warmup_runs: int
    timed_runs: int
    intra_op_threads: int
    graph_optimization: str
    p50_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    latencies_ms: list[float]
    # Timing stops at `timed_runs` or after `time_budget_s`, whichever comes first; which it was.
    time_budget_s: float = 0.0
    stopped_by: str = "count"
    timing_seconds: float = 0.0


@dataclass
class OptimizationReport:
    method: str
    kept: bool
    reason: str
    file: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    parity: ParityReport | None = None
    speed: SpeedReport | None = None
    speedup: float | None = None


@dataclass
class ValidatedModel:
    """What was validated: the model directory's content identity and the ONNX file's content."""

    task: str
    codebase: str
    deploy_profile: str
    # sha256 of the conversion's ModelIdentity (config, checkpoint, manifest, deploy config, versions).
    model_sha256: str
    onnx_file: str
    onnx_sha256: str
    onnx_bytes: int


@dataclass
class PhotoSummary:
    """The gate's photos and the PyTorch answers to them (`photo-reference/` beside the report), which
    every built image must match when it is run as a device (the acceptance stage)."""

    task: str
    source: str  # the OpenMMLab API that answered
    photos: list[str]
    directory: str = "photo-reference"
    unavailable: str | None = None  # why there is no reference (acceptance then cannot run)


@dataclass
class ServingSummary:
    """What the edge image will answer with (the conversion's serving.json), for the reader of the report."""

    task: str
    classes: int  # how many class names the answers carry
    classes_source: str  # where they came from: the manifest, the checkpoint, the config, the dataset class
    pipeline_source: str | None  # the test pipeline, letterboxed, or MMDeploy's fitted one
    unservable: str | None = None  # why /v1/predict is off, when it is

    @classmethod
    def read(cls, directory: Path) -> ServingSummary | None:
        path = directory / "serving.json"
        if not path.is_file():
            return None
        recipe = json.loads(path.read_text())
        return cls(
            task=recipe.get("task", ""),
            classes=len(recipe.get("classes") or ()),
            classes_source=recipe.get("classes_source", ""),
            pipeline_source=recipe.get("pipeline_source"),
            unservable=recipe.get("unservable"),
        )


@with_config(codec.STRICT)
@dataclass
class ValidationReport:
    passed: bool
    failure: str | None
    model: ValidatedModel
    # The file downstream stages ship (the optimized model when it was kept) and its content hash.
    shipped_onnx: str
    shipped_sha256: str
    settings: ValidationSettings
    structure: StructureReport
    parity: ParityReport | None
    speed: SpeedReport | None
    optimization: OptimizationReport | None
    versions: dict[str, str]
    seconds: float
    serving: ServingSummary | None = None
    photos: PhotoSummary | None = None
    # settings that weakened the gate (edge_deploy.policy): what a reader should weigh the verdict by
    loosened: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_json(self, indent: int | None = 2) -> str:
        return codec.to_json(self, indent)

    @classmethod
    def from_json(cls, text: str) -> ValidationReport:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"validation report is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            found = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
            raise ValidationError(f"validation report schema_version {found!r} is not {SCHEMA_VERSION}")
        try:
            return codec.from_json(cls, text)
        except codec.DecodeError as exc:
            raise ValidationError(f"validation report: {exc}") from exc

    def write(self, path: Path) -> Path:
        """Write atomically (temp + rename): a reader never sees half a report."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: Path) -> ValidationReport:
        try:
            return cls.from_json(path.read_text())
        except OSError as exc:
            raise ValidationError(f"cannot read validation report {path}: {exc.strerror}") from exc


class ValidationFailed(EdgeDeployError):
    """The model ran through the gate and failed it; the report was still written.

    The message names the failing check and, for parity, the output and the size of the difference.
    """

    def __init__(self, message: str, report: ValidationReport, report_path: Path | None = None):
        super().__init__(message)
        self.report = report
        self.report_path = report_path
