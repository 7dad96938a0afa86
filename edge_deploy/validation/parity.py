"""Parity: the ONNX model against its PyTorch reference on the same seeded inputs.

Inputs are standard-normal tensors (the distribution of normalized images, which is what the
exported graph takes), several at the manifest's size, and for dynamic axes one at each other size:
each extra batch size in the settings, and height/width scaled by `spatial_scale` when those axes
are dynamic. Every
output is compared element-wise (see `metrics`) and the task-level answer is compared too (see
`agreement`). Reference outputs are computed once and reused for an optimized model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_deploy.validation.agreement import (
    DetectionTolerance,
    NmsCandidates,
    classification_agreement,
    detection_alignment,
    mask_shortfalls,
    segmentation_agreement,
)
from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.metrics import compare_output
from edge_deploy.validation.report import OutputParity, ParityCase, ParityReport, TaskAgreement, ValidationSettings
from edge_deploy.validation.structure import InputSpecLike
from edge_deploy.validation.tolerances import LABEL_MAP_MIN_AGREEMENT, TASK_DEFAULTS, Tolerances, resolve_tolerances

__all__ = ["TASK_DEFAULTS", "Tolerances", "resolve_tolerances"]  # the gate's tolerances, used with parity

Arrays = dict[str, np.ndarray]
Reference = Callable[[Mapping[str, np.ndarray]], Arrays]
SPATIAL_STRIDE = 32  # OpenMMLab backbones downsample by up to 32: keep scaled sizes divisible by it


@dataclass(frozen=True)
class InputCase:
    name: str
    seed: int
    feeds: Arrays

    @property
    def shapes(self) -> dict[str, list[int]]:
        return {name: list(array.shape) for name, array in self.feeds.items()}


def case_shapes(specs: Sequence[InputSpecLike], settings: ValidationSettings) -> list[dict[str, list[int]]]:
    """The manifest's shapes, then one size per extra batch size, then scaled height/width."""
    base = {spec.name: list(spec.shape) for spec in specs}
    sizes = [base]
    batch_dynamic = all(0 in spec.dynamic_axes for spec in specs)
    if batch_dynamic:
        for batch in settings.batch_sizes:
            if batch != specs[0].shape[0]:
                sizes.append({name: [batch, *shape[1:]] for name, shape in base.items()})
    spatial = {spec.name: [axis for axis in spec.dynamic_axes if axis >= 2] for spec in specs}
    if any(spatial.values()) and settings.spatial_scale != 1:
        sizes.append({name: _scaled(shape, spatial[name], settings.spatial_scale) for name, shape in base.items()})
    return sizes


def _scaled(shape: list[int], axes: list[int], scale: float) -> list[int]:
    scaled = list(shape)
    for axis in axes:
        scaled[axis] = max(SPATIAL_STRIDE, round(shape[axis] * scale / SPATIAL_STRIDE) * SPATIAL_STRIDE)
    return scaled


def input_cases(specs: Sequence[InputSpecLike], settings: ValidationSettings) -> list[InputCase]:
    """`settings.samples` seeded inputs at the manifest's size, and one at each other size: the other
    sizes check that the dynamic axes work, which one input shows as well as three."""
    cases = []
    for size_index, shapes in enumerate(case_shapes(specs, settings)):
        for sample in range(settings.samples if size_index == 0 else 1):
            seed = settings.seed * 1_000_003 + size_index * 1_000 + sample
            rng = np.random.default_rng(seed)
            feeds = {spec.name: _random_input(rng, shapes[spec.name], spec.dtype) for spec in specs}
            label = " ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in shapes.items())
            cases.append(InputCase(f"{label}, sample {sample}", seed, feeds))
    return cases


def _random_input(rng: np.random.Generator, shape: list[int], dtype: str) -> np.ndarray:
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValidationError(f"parity inputs are generated for float inputs only, got dtype {dtype}")
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


# A reference may return what entered its last NMS under these names (see reference.py).
NMS_BOXES = "nms_candidates/boxes"
NMS_SCORES = "nms_candidates/scores"


@dataclass(frozen=True)
class ReferenceRun:
    case: InputCase
    outputs: Arrays
    seconds: float
    nms_candidates: list[NmsCandidates] | None = None


def run_reference(reference: Reference, cases: Sequence[InputCase]) -> list[ReferenceRun]:
    runs = []
    for case in cases:
        start = time.perf_counter()
        try:
            outputs = {name: np.asarray(value) for name, value in reference(case.feeds).items()}
        except Exception as exc:  # the model's own code, as the codebase and mmdeploy's rewriters run it
            raise ValidationError(f"the PyTorch reference failed at {case.name}: {type(exc).__name__}: {exc}") from exc
        runs.append(reference_run(case, outputs, _since(start)))
    return runs


def reference_run(case: InputCase, outputs: Arrays, seconds: float) -> ReferenceRun:
    """The reference's outputs on `case`, with the NMS candidates it recorded taken apart."""
    outputs = dict(outputs)
    boxes, scores = outputs.pop(NMS_BOXES, None), outputs.pop(NMS_SCORES, None)
    candidates = None
    if boxes is not None and scores is not None:
        candidates = [NmsCandidates(boxes[image], scores[image]) for image in range(boxes.shape[0])]
    return ReferenceRun(case, outputs, seconds, candidates)


def compare_case(run: ReferenceRun, onnx: Arrays, task: str, tolerances: Tolerances, seconds: float) -> ParityCase:
    missing = [name for name in run.outputs if name not in onnx]
    if missing:
        raise ValidationError(f"ONNX model has no output {missing}; it has {sorted(onnx)}")
    outputs, agreement = _compare_outputs(run, onnx, task, tolerances)
    passed = all(item.passed for item in outputs) and (agreement is None or agreement.passed)
    return ParityCase(run.case.name, run.case.seed, run.case.shapes, outputs, agreement, run.seconds, seconds, passed)


def _compare_outputs(
    run: ReferenceRun, got: Arrays, task: str, tol: Tolerances
) -> tuple[list[OutputParity], TaskAgreement | None]:
    ref = run.outputs
    if task in ("detection", "instance-segmentation") and {"dets", "labels"} <= ref.keys():
        return _compare_detection(ref, got, tol, run.nms_candidates)
    outputs = []
    for name, reference in ref.items():
        if task == "segmentation" and not np.issubdtype(reference.dtype, np.floating):
            outputs.append(_compare_label_map(name, reference, got[name], tol))
        else:
            outputs.append(compare_output(name, reference, got[name], tol.atol, tol.rtol))
    first = next(iter(ref))
    agreement = None
    if task == "classification":
        agreement = classification_agreement(ref[first], got[first], tol.atol, tol.rtol, tol.task_agreement)
    elif task == "segmentation":
        is_label_map = not np.issubdtype(ref[first].dtype, np.floating)
        needed = _label_map_agreement(tol) if is_label_map else tol.task_agreement
        agreement = segmentation_agreement(ref[first], got[first], tol.atol, tol.rtol, needed)
    return outputs, agreement


def _compare_label_map(name: str, reference: np.ndarray, onnx: np.ndarray, tol: Tolerances) -> OutputParity:
    # A class index per pixel: equal or not. With the argmax inside the graph, a pixel whose two best
    # logits tie may flip, so the verdict is the share of agreeing pixels, not every element.
    result = compare_output(name, reference, onnx, 0.0, 0.0)
    if result.shape == list(onnx.shape) and result.elements:
        needed = _label_map_agreement(tol)
        result.passed = result.violations <= (1 - needed) * result.elements
        result.note = f"label map: passes with >= {needed:.3%} of pixels equal"
    return result


def _label_map_agreement(tol: Tolerances) -> float:
    return LABEL_MAP_MIN_AGREEMENT if tol.min_task_agreement is None else tol.min_task_agreement


def _compare_detection(
    ref: Arrays, got: Arrays, tol: Tolerances, candidates: list[NmsCandidates] | None
) -> tuple[list[OutputParity], TaskAgreement]:
    for name in ("dets", "labels"):
        if ref[name].shape[0] != got[name].shape[0] or ref[name].ndim != got[name].ndim:
            shape_failure = compare_output(name, ref[name], got[name], tol.atol, tol.rtol)
            return [shape_failure], TaskAgreement("detection matching", False, {}, shape_failure.note)
    det_tol = tol.detection()
    aligned = detection_alignment(ref["dets"], ref["labels"], got["dets"], got["labels"], det_tol, candidates)
    note = "rows aligned by detection matching; padding and tied-score swaps left out"
    rows = aligned.compared[..., None]
    ref_dets, got_dets = ref["dets"], aligned.dets
    outputs = [
        compare_output(
            "dets (boxes)", ref_dets[..., :4], got_dets[..., :4], det_tol.box_atol, det_tol.box_rtol, rows, note
        ),
        compare_output(
            "dets (scores)", ref_dets[..., 4:], got_dets[..., 4:], det_tol.score_atol, det_tol.score_rtol, rows, note
        ),
        compare_output("labels", ref["labels"], aligned.labels, 0.0, 0.0, aligned.compared, note),
    ]
    if "masks" in ref:
        outputs.append(_compare_masks(ref["masks"], got["masks"], aligned, det_tol, tol.mask_iou))
    for name in ref.keys() - {"dets", "labels", "masks"}:
        outputs.append(compare_output(name, ref[name], got[name], tol.atol, tol.rtol))
    if not aligned.agreement.passed:
        for output in outputs[:3]:
            output.passed = False
            output.note = f"{output.note}; {aligned.agreement.detail}"
    return outputs, aligned.agreement


def _compare_masks(ref_masks, got_masks, aligned, det_tol: DetectionTolerance, min_iou: float) -> OutputParity:
    """Each matched detection's mask against its reference: the shortfall of the binarized masks' IoU
    from 1, compared with 1 - `min_iou` as its tolerance."""
    name = "masks (1 - IoU at 0.5)"
    if ref_masks.ndim != 4 or got_masks.ndim != 4 or ref_masks.shape[2:] != got_masks.shape[2:]:
        return compare_output(name, ref_masks, got_masks, 0.0, 0.0)
    shortfalls, compared = mask_shortfalls(
        ref_masks, got_masks, aligned.rows, aligned.compared, det_tol.score_atol, det_tol.score_rtol
    )
    note = f"per matched detection; pixels within tolerance of 0.5 in the reference left out; min IoU {min_iou}"
    return compare_output(name, np.zeros_like(shortfalls), shortfalls, 1.0 - min_iou, 0.0, compared, note)


def parity_report(cases: list[ParityCase], provider: str) -> ParityReport:
    return ParityReport(
        passed=all(case.passed for case in cases), provider=provider, cases=cases, failure=_failure(cases)
    )


def _failure(cases: list[ParityCase]) -> str | None:
    """The first failing output (in output order) at its worst case; else the first task-level failure."""
    failing = [(case, output) for case in cases for output in case.outputs if not output.passed]
    if failing:
        name = failing[0][1].name
        case, output = max((item for item in failing if item[1].name == name), key=lambda item: item[1].max_abs)
        return output.failure_message(case.name)
    return next((message for case in cases if (message := case.failure_message())), None)


def run_onnx(session, feeds: Mapping[str, np.ndarray]) -> tuple[Arrays, float]:
    start = time.perf_counter()
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, dict(feeds))
    return dict(zip(names, values, strict=True)), _since(start)


def check_parity(session, runs: Sequence[ReferenceRun], task: str, tolerances: Tolerances) -> ParityReport:
    """Run every case through `session` (an onnxruntime.InferenceSession) and compare with the reference."""
    cases = []
    for run in runs:
        try:
            outputs, seconds = run_onnx(session, run.case.feeds)
        except Exception as exc:  # onnxruntime's own error types (Fail, InvalidArgument...) share no base
            cases.append(_does_not_run(run, exc))
            continue
        cases.append(compare_case(run, outputs, task, tolerances, seconds))
    return parity_report(cases, provider=session.get_providers()[0])


def _does_not_run(run: ReferenceRun, exc: Exception) -> ParityCase:
    """A case ONNX Runtime refused to run: typically a dynamic axis the export froze to its traced size."""
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
    detail = (
        f"ONNX Runtime cannot run the model at {run.case.shapes} ({message}); if a dynamic axis was frozen "
        "at export, use the static profile (manifest deploy_profile, with inputs[0].shape)"
    )
    runs = TaskAgreement("runs at this size", False, {}, detail)
    return ParityCase(run.case.name, run.case.seed, run.case.shapes, [], runs, run.seconds, 0.0, False)


def _since(start: float) -> float:
    return time.perf_counter() - start
