"""The validation gate: structure, parity, speed and optional optimization, in that order.

`validate(model_dir, onnx_dir)` checks the conversion output in `onnx_dir` (end2end.onnx) against
the model directory it came from, writes `validation.json` and `validation.html` (always, also
when the gate fails, so the failure can be inspected) and raises `ValidationFailed` naming what
failed. Parity runs even when a structural check failed, as long as ONNX Runtime can load the model
and its inputs are the declared ones, so one run reports every problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edge_deploy.files import ONNX_FILE_NAME, sha256_file
from edge_deploy.policy import loosened_validation
from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.report import (
    Check,
    OptimizationReport,
    ParityReport,
    PhotoSummary,
    ServingSummary,
    SpeedReport,
    StructureReport,
    ValidatedModel,
    ValidationFailed,
    ValidationReport,
    ValidationSettings,
)
from edge_deploy.validation.structure import ExpectedSignature, check_structure, required_ops_library

log = logging.getLogger(__name__)

ONNX_NAME = ONNX_FILE_NAME  # what the conversion wrote
CONVERSION_RECORD = "conversion.json"
REPORT_NAME = "validation.json"
DECK_NAME = "validation.html"
VERSIONED_PACKAGES = ("onnx", "onnxruntime", "torch", "mmdeploy", "mmcv", "mmengine", "numpy", "edge-deploy")
# Parity needs the model loaded and fed: these structural failures make it impossible.
PARITY_PREREQUISITES = ("onnxruntime_load", "io_signature")


@dataclass(frozen=True)
class GateSubject:
    """What the ONNX model is checked against (from the model directory and the conversion record)."""

    task: str
    codebase: str
    deploy_profile: str
    model_sha256: str
    signature: ExpectedSignature
    tolerances: object | None = None  # the manifest's Tolerances (atol, rtol, min_task_agreement)
    expected_onnx_sha256: str | None = None  # what conversion recorded for end2end.onnx


ReferenceFactory = Callable[[], Callable]


def validate(
    model_dir,
    onnx_dir: Path,
    *,
    out_dir: Path | None = None,
    settings: ValidationSettings | None = None,
) -> ValidationReport:
    """Validate `onnx_dir/end2end.onnx` against the PyTorch model in `model_dir` (a path or a loaded ModelDir).

    The model is checked as its conversion exported it: the manifest in `onnx_dir/conversion.json`
    (an opset or profile the conversion chose where the manifest left it open) over the directory's.
    """
    from edge_deploy.conversion import ModelDir, load_model_dir
    from edge_deploy.conversion.result import converted_model_dir

    loaded = model_dir if isinstance(model_dir, ModelDir) else load_model_dir(Path(model_dir))
    onnx_dir = Path(onnx_dir)
    exported = converted_model_dir(loaded, onnx_dir)
    subject = subject_from_model_dir(exported, onnx_dir, identity_of=loaded)

    def reference():
        from edge_deploy.validation.reference import MMDeployReference

        return MMDeployReference.from_model_dir(exported)

    out_dir = out_dir or onnx_dir
    settings = settings or ValidationSettings()
    report = run_gate(onnx_dir / ONNX_NAME, subject, reference, settings, out_dir)
    report.photos = photo_reference(loaded, onnx_dir, out_dir, reference, subject, settings)
    write_report(report, out_dir)
    return report


def photo_reference(
    model_dir, onnx_dir: Path, out_dir: Path, reference: ReferenceFactory, subject: GateSubject, settings
) -> PhotoSummary:
    """The OpenMMLab API's answers to the gate's photos, and the exported model's raw outputs on
    their tensors, written to `out_dir/photo-reference/`: what each built image must answer alike
    (edge_deploy.acceptance). A model whose API cannot answer gets a summary saying why, and its
    images cannot be accepted."""
    from dataclasses import asdict, replace

    from edge_deploy.acceptance.photos import gate_photos
    from edge_deploy.acceptance.reference import REFERENCE_DIR, reference_answers, tensor_reference
    from edge_deploy.validation.parity import resolve_tolerances

    task = model_dir.manifest.task.value
    serving_path = onnx_dir / "serving.json"
    serving = json.loads(serving_path.read_text()) if serving_path.is_file() else {}
    try:
        photos = gate_photos(model_dir.root)
        answers = reference_answers(
            task, model_dir.config_path, model_dir.checkpoint_path, photos, serving.get("transforms")
        )
        tensors = tensor_reference(reference(), photos)
        tolerances = asdict(resolve_tolerances(subject.task, subject.tolerances, settings))
        classes = [str(name) for name in serving.get("classes") or []]
        answers = replace(answers, tolerances=tolerances, tensors=sorted(tensors), classes=classes)
        answers.write(out_dir, photos, tensors)
    except Exception as exc:  # any failure of a codebase's API: reported, never fatal to the gate
        log.warning("no photo reference for acceptance: %s", exc)
        return PhotoSummary(task, "", [], REFERENCE_DIR, f"{type(exc).__name__}: {str(exc)[:300]}")
    return PhotoSummary(task, answers.source, [photo.name for photo in photos], REFERENCE_DIR)


def subject_from_model_dir(model_dir, onnx_dir: Path, identity_of=None) -> GateSubject:
    """What the gate checks: `model_dir`'s manifest; the identity is that of `identity_of` (default:
    `model_dir`), the directory as the conversion task's cache key saw it."""
    from edge_deploy.conversion import model_identity

    manifest = model_dir.manifest
    recorded = _conversion_record(onnx_dir / CONVERSION_RECORD).get("sha256")
    return GateSubject(
        task=manifest.task.value,
        codebase=manifest.codebase,
        deploy_profile=manifest.deploy_profile,
        model_sha256=identity_digest(model_identity(identity_of or model_dir)),
        signature=ExpectedSignature(manifest.inputs, manifest.outputs, manifest.opset),
        tolerances=manifest.tolerances,
        expected_onnx_sha256=recorded if isinstance(recorded, str) else None,
    )


def other_sizes_problem(model_dir, onnx_dir: Path) -> str | None:
    """How the model in `onnx_dir` disagrees with PyTorch at the sizes other than the traced one (one
    input each: the other batch sizes, the scaled height and width), or None when it agrees (or when
    ONNX Runtime cannot open it at all, which the gate itself reports).

    The conversion's check of a dynamic profile it chose: a size frozen in the graph (adaptive
    pooling, a reshape to traced constants) may still run at other sizes, but gives other numbers.
    """
    from edge_deploy.validation.parity import check_parity, input_cases, resolve_tolerances, run_reference
    from edge_deploy.validation.reference import MMDeployReference
    from edge_deploy.validation.runtime import open_session

    settings = ValidationSettings(samples=1)
    subject = subject_from_model_dir(model_dir, onnx_dir)
    cases = input_cases(subject.signature.inputs, settings)[1:]
    if not cases:
        return None
    reference = MMDeployReference.from_model_dir(model_dir)
    try:
        runs = run_reference(reference, cases)
    except ValidationError as exc:  # PyTorch itself cannot run there (SOLOv2's rewritten head: batch 1 only)
        return f"cannot be compared with PyTorch: {exc}"
    onnx_path = Path(onnx_dir) / ONNX_NAME
    try:
        session = open_session(onnx_path, custom_op_library=required_ops_library(onnx_path))
    except Exception:  # ONNX Runtime raises its own types; the gate's structure checks report why
        return None
    tolerances = resolve_tolerances(subject.task, subject.tolerances, settings)
    parity = check_parity(session, runs, subject.task, tolerances)
    return None if parity.passed else f"disagrees with PyTorch at another size ({parity.failure})"


def identity_digest(identity) -> str:
    """sha256 of a conversion ModelIdentity: one string naming the model's content and converter stack."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(identity), sort_keys=True).encode()).hexdigest()


def _conversion_record(record: Path) -> dict:
    if not record.is_file():
        return {}
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(
            f"{record.name} in the ONNX directory is not a readable conversion record: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ValidationError(f"{record.name} in the ONNX directory is not a conversion record (not an object)")
    return data


def run_gate(
    onnx_path: Path,
    subject: GateSubject,
    reference: ReferenceFactory,
    settings: ValidationSettings,
    out_dir: Path,
) -> ValidationReport:
    """Run every check, write the report and deck into `out_dir`, raise `ValidationFailed` on failure."""
    start = time.perf_counter()
    if not onnx_path.is_file():
        raise ValidationError(f"no ONNX model at {onnx_path.name} in {onnx_path.parent}: convert the model first")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_sha256 = sha256_file(onnx_path)
    structure = check_structure(onnx_path, subject.signature)
    structure.checks.insert(0, _content_check(onnx_sha256, subject.expected_onnx_sha256))
    structure.passed = all(check.passed for check in structure.checks)

    parity = speed = optimization = None
    if all(check.passed for check in structure.checks if check.name in PARITY_PREREQUISITES):
        parity, speed, optimization = _run_numeric_checks(onnx_path, subject, reference, settings, out_dir, structure)

    failure = gate_failure_message(onnx_path.name, structure, parity)
    kept = optimization is not None and optimization.kept
    report = ValidationReport(
        passed=failure is None,
        failure=failure,
        model=ValidatedModel(
            task=subject.task,
            codebase=subject.codebase,
            deploy_profile=subject.deploy_profile,
            model_sha256=subject.model_sha256,
            onnx_file=onnx_path.name,
            onnx_sha256=onnx_sha256,
            onnx_bytes=onnx_path.stat().st_size,
        ),
        shipped_onnx=optimization.file if kept else onnx_path.name,
        shipped_sha256=optimization.sha256 if kept else onnx_sha256,
        settings=settings,
        loosened=[str(item) for item in loosened_validation(settings)],
        structure=structure,
        parity=parity,
        speed=speed,
        optimization=optimization,
        versions=package_versions(),
        seconds=time.perf_counter() - start,
        serving=ServingSummary.read(onnx_path.parent),
    )
    report_path = write_report(report, out_dir)
    if failure is not None:
        raise ValidationFailed(failure, report, report_path)
    return report


def _run_numeric_checks(
    onnx_path: Path,
    subject: GateSubject,
    reference: ReferenceFactory,
    settings: ValidationSettings,
    out_dir: Path,
    structure: StructureReport,
) -> tuple[ParityReport, SpeedReport, OptimizationReport | None]:
    from edge_deploy.validation.optimize import speed_and_optimization
    from edge_deploy.validation.parity import check_parity, input_cases, resolve_tolerances, run_reference
    from edge_deploy.validation.runtime import open_session

    tolerances = resolve_tolerances(subject.task, subject.tolerances, settings)
    library = required_ops_library(onnx_path)
    cases = input_cases(subject.signature.inputs, settings)
    runs = run_reference(reference(), cases)
    session = open_session(onnx_path, custom_op_library=library, threads=settings.intra_op_threads)
    parity = check_parity(session, runs, subject.task, tolerances)
    del session
    # A failing model is not optimized: there is nothing to ship.
    optimize = settings.optimize and parity.passed and structure.passed
    speed, optimization = speed_and_optimization(
        onnx_path, out_dir, runs, subject.task, tolerances, settings, library, optimize=optimize
    )
    return parity, speed, optimization


def _content_check(actual: str, recorded: str | None) -> Check:
    if recorded is None:
        return Check("conversion_record", True, f"no {CONVERSION_RECORD} beside the model; sha256 {actual[:16]}…")
    if recorded != actual:
        return Check(
            "conversion_record",
            False,
            f"{ONNX_NAME} changed after conversion: sha256 {actual[:16]}…, {CONVERSION_RECORD} says {recorded[:16]}…",
        )
    return Check("conversion_record", True, f"sha256 {actual[:16]}… matches {CONVERSION_RECORD}")


def gate_failure_message(onnx_name: str, structure: StructureReport, parity: ParityReport | None) -> str | None:
    """The one-line verdict of a failed gate (None when it passed), with what the user can change."""
    problems = [f"{check.name}: {check.detail}" for check in structure.failures]
    if parity is None and structure.failures:
        problems.append("parity not run: ONNX Runtime cannot load the model or its inputs are not the declared ones")
    if parity is not None and parity.failure:
        problems.insert(0, f"parity: {parity.failure}")
    if not problems:
        return None
    return f"{onnx_name} failed validation: " + " | ".join(problems) + _remedy(structure, parity)


# ONNX Runtime's two ways of saying that no kernel implements an operator
_UNKNOWN_OPERATOR = re.compile(r"is not a registered function/op|No Op registered for")


def _remedy(structure: StructureReport, parity: ParityReport | None) -> str:
    """What the user can change, named by its manifest field, or that no field can fix it."""
    if any(_UNKNOWN_OPERATOR.search(check.detail) for check in structure.failures):
        return (
            " (no manifest field fixes this: the model needs an operator neither ONNX Runtime nor MMDeploy's "
            "ops library implements; replace that layer in the model)"
        )
    if parity is not None and parity.failure:
        return (
            " (if the difference is acceptable, set `tolerances` in manifest.yaml; if it shows only at a size "
            "other than the manifest's, pin a static `deploy_profile`)"
        )
    return ""


def write_report(report: ValidationReport, out_dir: Path) -> Path:
    """validation.json and validation.html in `out_dir`, each written atomically."""
    path = report.write(out_dir / REPORT_NAME)
    deck = out_dir / DECK_NAME
    tmp = deck.with_name(f".{deck.name}.tmp")
    tmp.write_text(report_page(report, out_dir))
    tmp.replace(deck)
    return path


def report_page(report: ValidationReport, out_dir: Path) -> str:
    """validation.html: the report, then the gate's photos with PyTorch's answers drawn on them."""
    from edge_deploy.acceptance.reference import REFERENCE_DIR
    from edge_deploy.acceptance.render import reference_section
    from edge_deploy.validation.deck import render_html

    return render_html(report) + reference_section(out_dir / REFERENCE_DIR)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
