"""The gate's tolerances: per-task defaults (with the evidence for each), overridden by the manifest,
then by explicit settings. No numpy here, so that the service can reason about tolerances
(edge_deploy.policy) without loading the comparison code."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.report import ValidationSettings

if TYPE_CHECKING:
    from edge_deploy.validation.agreement import DetectionTolerance


@dataclass(frozen=True)
class Tolerances:
    """allclose tolerances for float outputs, plus the task-level thresholds."""

    atol: float
    rtol: float
    # Detection scores are probabilities, compared tighter than box corners in pixels (None: atol/rtol).
    score_atol: float | None = None
    score_rtol: float | None = None
    # Share of answers (images, detections, pixels) that must agree; ties in the reference are
    # excused on top. None: all of them, except label maps (see LABEL_MAP_MIN_AGREEMENT).
    min_task_agreement: float | None = None
    # Detections are matched with the same label and at least this IoU, then compared allclose.
    iou_threshold: float = 0.5
    # Instance masks (binarized at 0.5) of matched detections must overlap at least this much.
    mask_iou: float = 0.98

    def detection(self) -> DetectionTolerance:
        from edge_deploy.validation.agreement import DetectionTolerance  # numpy: only where boxes are compared

        return DetectionTolerance(
            box_atol=self.atol,
            box_rtol=self.rtol,
            score_atol=self.atol if self.score_atol is None else self.score_atol,
            score_rtol=self.rtol if self.score_rtol is None else self.score_rtol,
            iou_threshold=self.iou_threshold,
            min_agreement=self.task_agreement,
        )

    @property
    def task_agreement(self) -> float:
        return 1.0 if self.min_task_agreement is None else self.min_task_agreement


# A label map (argmax inside the graph) hides the logits, so a pixel whose two best classes tie
# cannot be excused by looking; one pixel in a thousand may flip.
LABEL_MAP_MIN_AGREEMENT = 0.999


# Per-task defaults, with the evidence (measured on this project's build machine: random weights,
# torch 2.13 CPU vs ORT CPU EP):
# - classification outputs softmax probabilities in [0, 1]; ResNet-18 differed by 1.2e-10
#   and by 1.6e-7 as the sample with randomized BatchNorm statistics. Optimum's default atol 1e-5
#   leaves 60x headroom over the worst seen and still catches a perturbed weight.
# - detection `dets` holds box corners in input pixels (up to ~1000) and a score in [0, 1]. YOLOX
#   boxes differed by 5.5e-4 and RetinaNet by 6e-5 (float32 spacing at 640 is 6e-5): rtol 1e-4 allows
#   0.06 px at 640 and atol 1e-3 covers corners near 0, about 10x the worst seen and far below
#   anything visible. Scores differed by 9e-8 (RetinaNet): atol 1e-5 is 100x that, and tight enough
#   to matter for random-weight samples whose scores all sit near 0.01.
# - segmentation logits differed by 3.4e-6 (Fast-SCNN) and 1.2e-6 (SegFormer); atol 1e-4 and rtol
#   1e-3 sit inside Optimum's per-model 1e-4..1e-2 range with ~30x headroom.
TASK_DEFAULTS = {
    "classification": Tolerances(atol=1e-5, rtol=1e-3),
    "detection": Tolerances(atol=1e-3, rtol=1e-4, score_atol=1e-5, score_rtol=1e-3),
    # Boxes and scores as detection; mask probabilities share the scores' tolerance (see _compare_masks).
    "instance-segmentation": Tolerances(atol=1e-3, rtol=1e-4, score_atol=1e-5, score_rtol=1e-3),
    "segmentation": Tolerances(atol=1e-4, rtol=1e-3),
}


def resolve_tolerances(task: str, manifest_tolerances: object | None, settings: ValidationSettings) -> Tolerances:
    """Per-task defaults, then the manifest's values, then explicit settings (each overrides the last)."""
    if task not in TASK_DEFAULTS:
        raise ValidationError(f"no parity defaults for task {task!r}; known tasks: {sorted(TASK_DEFAULTS)}")
    tolerances = TASK_DEFAULTS[task]
    explicit = {name: value for name, value in _explicit(manifest_tolerances, settings).items() if value is not None}
    # An explicit atol/rtol is one rule for the whole output, detection scores included.
    explicit |= {f"score_{name}": value for name, value in explicit.items() if name in ("atol", "rtol")}
    return replace(tolerances, **explicit)


def _explicit(manifest_tolerances: object | None, settings: ValidationSettings) -> dict[str, float | None]:
    values = {name: getattr(manifest_tolerances, name, None) for name in ("atol", "rtol")}
    values["min_task_agreement"] = getattr(manifest_tolerances, "min_task_agreement", None)
    values["iou_threshold"] = getattr(manifest_tolerances, "iou_threshold", None)
    for name in ("atol", "rtol"):
        if getattr(settings, name) is not None:
            values[name] = getattr(settings, name)
    return values
