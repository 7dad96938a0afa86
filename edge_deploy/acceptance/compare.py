"""A device's answer to a photo against the PyTorch reference's, with the task's tolerances.

- classification: the same top-1 (unless the reference's first two are tied) and the same top-5
  set (a class tied with the fifth may stand in for it); the top-1 score within `SCORE_ATOL`;
- detection: every reference detection scoring at least `DETECTION_THRESHOLD` and not tied is
  matched by one of the device's with the same label and box IoU >= `BOX_IOU`; with masks, the
  matched masks overlap by IoU >= `MASK_IOU`;
- semantic segmentation: at least `PIXEL_AGREEMENT` of the pixels carry the same label.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_deploy.acceptance.reference import TIE, PhotoAnswer
from edge_deploy.runtime.answers import decode_coco_rle
from edge_deploy.validation.agreement import box_iou

SCORE_ATOL = 1e-4
DETECTION_THRESHOLD = 0.3
# the device is asked down to a little below the threshold, so a box just above it in PyTorch and
# just below it on the device is still found
QUERY_MARGIN = 0.05
BOX_IOU = 0.95
MASK_IOU = 0.9
PIXEL_AGREEMENT = 0.99


@dataclass(frozen=True)
class PhotoAgreement:
    photo: str
    passed: bool
    compared: int  # classes, detections or pixels compared
    detail: str
    metrics: dict[str, float] = field(default_factory=dict)


def predict_query(task: str) -> dict[str, str]:
    """The /v1/predict query the device is asked with, so its answer covers what is compared."""
    if task in ("detection", "instance-segmentation"):
        return {"score_threshold": f"{DETECTION_THRESHOLD - QUERY_MARGIN:g}", "max_detections": "1000"}
    if task == "classification":
        return {"top_k": "5"}
    return {}


def compare_answer(
    task: str, reference: PhotoAnswer, device: dict[str, Any], *, detection_threshold: float = DETECTION_THRESHOLD
) -> PhotoAgreement:
    """`detection_threshold`: the reference detections compared are those scoring at least this."""
    image = device.get("image") or {}
    if (image.get("width"), image.get("height")) != (reference.width, reference.height):
        return PhotoAgreement(
            reference.photo,
            False,
            0,
            f"the device saw a {image.get('width')}x{image.get('height')} photo, "
            f"the reference {reference.width}x{reference.height}",
        )
    if task == "classification":
        return _classification(reference, device)
    if task in ("detection", "instance-segmentation"):
        return _detection(reference, device, detection_threshold)
    return _segmentation(reference, device)


def _classification(reference: PhotoAnswer, device: dict[str, Any]) -> PhotoAgreement:
    expected = reference.answer["classes"]
    got = device.get("classes") or []
    if not got:
        return PhotoAgreement(reference.photo, False, 0, "the device answered no classes")
    scores = [entry["score"] for entry in expected]
    top1_tied = len(scores) > 1 and abs(scores[0] - scores[1]) < TIE
    if got[0]["label"] != expected[0]["label"] and not top1_tied:
        return PhotoAgreement(
            reference.photo, False, 1, f"top-1 is class {got[0]['label']}, PyTorch's is {expected[0]['label']}"
        )
    if abs(got[0]["score"] - scores[0]) > SCORE_ATOL and not top1_tied:
        return PhotoAgreement(
            reference.photo, False, 1, f"top-1 score {got[0]['score']:.6f}, PyTorch's {scores[0]:.6f}"
        )
    top5 = {entry["label"] for entry in expected[:5]}
    # a class tied with the fifth may take its place
    tied_at_cut = {
        entry["label"] for entry in expected[4:] if len(scores) > 4 and abs(entry["score"] - scores[4]) < TIE
    }
    extra = {entry["label"] for entry in got[:5]} - top5 - tied_at_cut
    if extra:
        return PhotoAgreement(reference.photo, False, 5, f"top-5 holds {sorted(extra)}, which PyTorch's does not")
    return PhotoAgreement(reference.photo, True, 5, f"top-1 {expected[0]['label']} and the top-5 set agree")


def _mask_iou(expected_rle: dict[str, Any], got_rle: dict[str, Any] | None) -> float:
    if got_rle is None:
        return 0.0
    theirs, ours = decode_coco_rle(expected_rle), decode_coco_rle(got_rle)
    # mmdet's RTMDet-Ins can give a mask a row or column short of the photo: compare what both cover
    height, width = min(theirs.shape[0], ours.shape[0]), min(theirs.shape[1], ours.shape[1])
    theirs, ours = theirs[:height, :width], ours[:height, :width]
    union = np.count_nonzero(theirs | ours)
    return np.count_nonzero(theirs & ours) / union if union else 1.0


def _detection(reference: PhotoAnswer, device: dict[str, Any], threshold: float) -> PhotoAgreement:
    got = device.get("detections") or []
    wanted = [d for d in reference.answer["detections"] if d["score"] >= threshold and not d["tied"]]
    ties = sum(1 for d in reference.answer["detections"] if d["score"] >= threshold and d["tied"])
    ious, mask_ious = [], []
    for expected in wanted:
        same_label = [d for d in got if d["label"] == expected["label"]]
        best, iou = None, 0.0
        if same_label:
            overlaps = box_iou(np.asarray(expected["box"]), np.asarray([d["box"] for d in same_label]))
            best, iou = same_label[int(np.argmax(overlaps))], float(np.max(overlaps))
        if iou < BOX_IOU:
            return PhotoAgreement(
                reference.photo,
                False,
                len(wanted),
                f"PyTorch's detection of class {expected['label']} "
                f"(score {expected['score']:.3f}, box {[round(v, 1) for v in expected['box']]}) has no match "
                f"on the device with IoU >= {BOX_IOU} (best {iou:.3f})",
            )
        ious.append(iou)
        if "mask" in expected:
            mask_iou = _mask_iou(expected["mask"], best.get("mask"))
            if mask_iou < MASK_IOU:
                return PhotoAgreement(
                    reference.photo,
                    False,
                    len(wanted),
                    f"the mask of class {expected['label']} (score "
                    f"{expected['score']:.3f}) overlaps PyTorch's by IoU {mask_iou:.3f} < {MASK_IOU}",
                )
            mask_ious.append(mask_iou)
    metrics = {"detections": float(len(wanted)), "tied_left_out": float(ties)}
    if ious:
        metrics["min_box_iou"] = min(ious)
    if mask_ious:
        metrics["min_mask_iou"] = min(mask_ious)
    detail = f"{len(wanted)} detections above {threshold:g} matched (label, IoU >= {BOX_IOU})"
    detail += f"; {ties} tied ones left out" if ties else ""
    return PhotoAgreement(reference.photo, True, len(wanted), detail, metrics)


def _label_map(png_base64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64))))


def _segmentation(reference: PhotoAnswer, device: dict[str, Any]) -> PhotoAgreement:
    expected = _label_map(reference.answer["segmentation"]["label_map"])
    got_png = (device.get("segmentation") or {}).get("label_map")
    if not got_png:
        return PhotoAgreement(reference.photo, False, 0, "the device answered no label map")
    got = _label_map(got_png)
    if got.shape != expected.shape:
        return PhotoAgreement(reference.photo, False, 0, f"label map {got.shape}, PyTorch's {expected.shape}")
    agreement = float((got == expected).mean())
    passed = agreement >= PIXEL_AGREEMENT
    detail = f"{agreement:.2%} of pixels agree ({'>=' if passed else '<'} {PIXEL_AGREEMENT:.0%})"
    return PhotoAgreement(reference.photo, passed, int(expected.size), detail, {"pixel_agreement": agreement})


def compare_tensors(
    photo: str,
    task: str,
    tolerances: dict[str, float | None],
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
) -> PhotoAgreement:
    """The device's raw outputs for a photo's input tensor (its OIP endpoint) against the exported
    model's in PyTorch, exactly as the gate compares them (`validation.parity`: element-wise within
    its tolerances, detections as sets with tie swaps excused)."""
    from edge_deploy.validation.errors import ValidationError
    from edge_deploy.validation.parity import InputCase, Tolerances, compare_case, reference_run

    run = reference_run(InputCase(f"photo {photo}", 0, inputs), expected, 0.0)
    try:
        case = compare_case(run, got, task, Tolerances(**tolerances), 0.0)
    except ValidationError as exc:  # an output missing from the device's answer
        return PhotoAgreement(photo, False, 0, f"Open Inference Protocol: {exc}")
    compared = sum(output.elements for output in case.outputs)
    if case.passed:
        return PhotoAgreement(photo, True, compared, "raw outputs of its tensor within the gate's tolerances")
    return PhotoAgreement(photo, False, compared, f"Open Inference Protocol: {case.failure_message()}")
