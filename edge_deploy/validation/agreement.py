"""Task-level agreement: would a user reading the two models' answers see the same thing?

- classification: the same top-1 class and the same top-5 set per image;
- detection: every reference detection has an ONNX detection with the same label, IoU >= a
  threshold and allclose box and score (order is free: NMS and top-k order are not numbers);
- instance segmentation: detection matching, then each matched detection's mask: the IoU of the
  two masks binarized at 0.5, over the pixels the reference can decide (see `mask_shortfalls`);
- segmentation: the same class per pixel.

Disagreements are excused only where the reference itself cannot decide: scores tied within the
output's tolerance (near-equal softmax probabilities, detections with exactly equal scores, e.g.
saturated at 1.0 with random weights, whose NMS/top-k order is arbitrary). Everything else fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_deploy.validation.report import TaskAgreement

TOP_K = 5


def _tolerance(value: np.ndarray | float, atol: float, rtol: float) -> np.ndarray | float:
    return atol + rtol * np.abs(value)


# Classification ----------------------------------------------------------------------------------


def classification_agreement(
    reference: np.ndarray, onnx: np.ndarray, atol: float, rtol: float, min_agreement: float = 1.0
) -> TaskAgreement:
    """`reference`/`onnx`: class scores shaped (batch, classes); `min_agreement` of the images must
    agree on top-1 and top-5 (or differ only by tied scores)."""
    ref, got = reference.reshape(reference.shape[0], -1), onnx.reshape(onnx.shape[0], -1)
    k = min(TOP_K, ref.shape[1])
    counts = {"top1": 0, "topk": 0, "excused": 0}
    problems = []
    for row in range(ref.shape[0]):
        scores = ref[row]
        ref_order, got_order = np.argsort(-scores, kind="stable"), np.argsort(-got[row], kind="stable")
        ref_top1, got_top1 = int(ref_order[0]), int(got_order[0])
        changed = set(map(int, ref_order[:k])) ^ set(map(int, got_order[:k]))
        counts["top1"] += ref_top1 == got_top1
        counts["topk"] += not changed
        if ref_top1 == got_top1 and not changed:
            continue
        # A class may change rank only if the reference scores it within tolerance of the rank it crossed.
        kth = scores[ref_order[k - 1]]
        top1_tied = _tied(scores[got_top1], scores[ref_top1], atol, rtol)
        topk_tied = all(_tied(scores[cls], kth, atol, rtol) for cls in changed)
        if top1_tied and topk_tied:
            counts["excused"] += 1
            continue
        problems.append(
            f"image {row}: top-1 is class {ref_top1} (score {scores[ref_top1]:.6g}) in PyTorch but class {got_top1} "
            f"(PyTorch score {scores[got_top1]:.6g}) in ONNX; top-{k} {sorted(map(int, ref_order[:k]))} vs "
            f"{sorted(map(int, got_order[:k]))}"
        )
    rows = ref.shape[0]
    excused = counts["excused"]
    return TaskAgreement(
        kind=f"top-1/top-{k} agreement",
        passed=(rows - len(problems)) >= min_agreement * rows,
        metrics={
            "top1_agreement": counts["top1"] / rows,
            f"top{k}_agreement": counts["topk"] / rows,
            "images": float(rows),
            "excused_ties": float(excused),
        },
        detail="; ".join(problems) or f"{rows} images agree" + (f" ({excused} only by tied scores)" if excused else ""),
    )


def _tied(value: float, edge: float, atol: float, rtol: float) -> bool:
    return bool(abs(value - edge) <= _tolerance(edge, atol, rtol))


# Segmentation ------------------------------------------------------------------------------------


def segmentation_agreement(
    reference: np.ndarray, onnx: np.ndarray, atol: float, rtol: float, min_agreement: float
) -> TaskAgreement:
    """Logits (batch, classes, H, W) are compared by argmax, excusing pixels whose top two logits tie;
    label maps (integers, argmax inside the graph) are compared as they are. Either way at least
    `min_agreement` of the pixels must agree (after excused ties)."""
    if np.issubdtype(reference.dtype, np.floating) and reference.ndim == 4 and reference.shape[1] > 1:
        ref_labels, got_labels = reference.argmax(axis=1), onnx.argmax(axis=1)
        differ = ref_labels != got_labels
        ref_best = np.take_along_axis(reference, ref_labels[:, None], axis=1)[:, 0]
        ref_at_got = np.take_along_axis(reference, got_labels[:, None], axis=1)[:, 0]
        tied = np.abs(ref_best - ref_at_got) <= _tolerance(ref_best, atol, rtol)
        unexcused = int(np.count_nonzero(differ & ~tied))
        rule = f"at least {min_agreement:.3%} of pixels must agree or have tied logits"
    else:
        differ = reference != onnx
        unexcused = int(np.count_nonzero(differ))
        rule = f"at least {min_agreement:.3%} of pixels must agree (the argmax is inside the graph)"
    pixels, agree = differ.size, differ.size - int(np.count_nonzero(differ))
    passed = pixels - unexcused >= min_agreement * pixels
    detail = f"{agree} of {pixels} pixels agree ({agree / pixels:.4%}); {rule}"
    if not passed:
        detail = f"{unexcused} pixels disagree without a tie; " + detail
    return TaskAgreement(
        kind="pixel argmax agreement",
        passed=passed,
        metrics={"pixel_agreement": agree / pixels, "pixels": float(pixels), "unexcused_pixels": float(unexcused)},
        detail=detail,
    )


# Detection ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionTolerance:
    box_atol: float
    box_rtol: float
    score_atol: float
    score_rtol: float
    iou_threshold: float = 0.5
    min_agreement: float = 1.0

    def rows_close(self, ref_row: np.ndarray, got_row: np.ndarray) -> bool:
        ref64, got64 = ref_row.astype(np.float64), got_row.astype(np.float64)
        boxes_ok = np.all(np.abs(got64[:4] - ref64[:4]) <= _tolerance(ref64[:4], self.box_atol, self.box_rtol))
        return bool(boxes_ok and self.scores_close(ref64[4], got64[4]))

    def scores_close(self, ref_score, got_score) -> bool:
        return bool(np.all(np.abs(got_score - ref_score) <= _tolerance(ref_score, self.score_atol, self.score_rtol)))


@dataclass
class DetectionAlignment:
    """ONNX detections reordered to the reference's order, and which reference rows to compare.

    `dets`/`labels` have the reference's shape; row i holds the ONNX detection matched to reference
    detection i. `compared` is False for padding rows (score 0) and for rows excused as ties.
    """

    dets: np.ndarray
    labels: np.ndarray
    compared: np.ndarray
    agreement: TaskAgreement
    rows: np.ndarray  # (batch, K): the ONNX row aligned to each reference row, -1 where none


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class _ImageMatch:
    pairs: dict[int, int]  # reference row -> ONNX row (same label, overlapping)
    close: dict[int, bool]  # reference row -> its pair is allclose
    leftover_ref: list[int]  # valid reference rows without an allclose partner
    leftover_onnx: list[int]  # valid ONNX rows not allclose-matched
    problems: list[str]

    @property
    def excused(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class NmsCandidates:
    """What entered the reference's NMS for one image: boxes (num_boxes, 4), scores (classes, num_boxes)."""

    boxes: np.ndarray
    scores: np.ndarray

    def contains(self, label: int, row: np.ndarray, tol: DetectionTolerance) -> bool:
        """Did the reference produce this detection as a candidate (same class, allclose box and score)?"""
        if not 0 <= label < self.scores.shape[0]:
            return False
        scores = self.scores[label].astype(np.float64)
        near = np.flatnonzero(np.abs(scores - row[4]) <= _tolerance(scores, tol.score_atol, tol.score_rtol))
        boxes = self.boxes[near].astype(np.float64)
        box_ok = np.abs(boxes - row[:4].astype(np.float64)) <= _tolerance(boxes, tol.box_atol, tol.box_rtol)
        return bool(np.any(np.all(box_ok, axis=1)))


def _match_image(ref, ref_labels, got, got_labels, tol: DetectionTolerance, candidates) -> _ImageMatch:
    ref_rows = [int(i) for i in np.flatnonzero(ref[:, 4] > 0)]
    free = {int(j) for j in np.flatnonzero(got[:, 4] > 0)}
    pairs, close = {}, {}
    for i in ref_rows:
        same_label = [j for j in sorted(free) if got_labels[j] == ref_labels[i]]
        if not same_label:
            continue
        # Keep the ONNX row in the same place when it is the same detection; otherwise the best overlap.
        if i in free and got_labels[i] == ref_labels[i] and tol.rows_close(ref[i], got[i]):
            j = i
        else:
            ious = box_iou(ref[i, :4], got[same_label, :4])
            best = int(np.argmax(ious))
            if ious[best] < tol.iou_threshold:
                continue
            j = same_label[best]
        pairs[i], close[i] = j, tol.rows_close(ref[i], got[j])
        free.discard(j)
    leftover_ref = [i for i in ref_rows if not close.get(i, False)]
    leftover_onnx = sorted(free | {pairs[i] for i in leftover_ref if i in pairs})
    problems = _unexplained(ref, got, got_labels, leftover_ref, leftover_onnx, tol, candidates)
    return _ImageMatch(pairs, close, leftover_ref, leftover_onnx, problems)


def _unexplained(ref, got, got_labels, leftover_ref, leftover_onnx, tol, candidates) -> list[str]:
    """Leftovers are excused only as swaps between tied scores, which NMS and top-k order arbitrarily:
    the leftovers on both sides pair up one to one by score (within the score tolerance), and every
    leftover ONNX detection is one the reference produced too (an NMS candidate with the same class,
    an allclose box and score) and merely did not keep. Returns what is left unexplained."""
    if not leftover_ref and not leftover_onnx:
        return []
    ref_scores = np.sort(ref[leftover_ref, 4].astype(np.float64))[::-1]
    got_scores = np.sort(got[leftover_onnx, 4].astype(np.float64))[::-1]
    first = (
        f"reference detection {leftover_ref[0]} (score {ref[leftover_ref[0], 4]:.6g}, box "
        f"{np.round(ref[leftover_ref[0], :4].astype(np.float64), 2).tolist()}) has no allclose ONNX detection"
        if leftover_ref
        else f"ONNX detection {leftover_onnx[0]} (score {got[leftover_onnx[0], 4]:.6g}) is not in the reference"
    )
    if len(ref_scores) != len(got_scores):
        return [f"{first}; {len(leftover_ref)} reference and {len(leftover_onnx)} ONNX detections unmatched"]
    if not tol.scores_close(ref_scores, got_scores):
        return [f"{first}; the {len(leftover_ref)} unmatched detections' scores differ too, so they are not tie swaps"]
    if candidates is None:
        return [f"{first}; {len(leftover_ref)} unmatched (no NMS candidates recorded to check for tie swaps)"]
    foreign = [j for j in leftover_onnx if not candidates.contains(int(got_labels[j]), got[j], tol)]
    if foreign:
        return [f"{first}; {len(foreign)} unmatched ONNX detections are not among the reference's NMS candidates"]
    return []


def detection_alignment(
    ref_dets: np.ndarray,
    ref_labels: np.ndarray,
    got_dets: np.ndarray,
    got_labels: np.ndarray,
    tol: DetectionTolerance,
    candidates: list[NmsCandidates] | None = None,
) -> DetectionAlignment:
    """Match (batch, K, 5) dets [x1, y1, x2, y2, score] and (batch, K) labels image by image.

    Rows with score 0 are padding (MMDeploy pads the top-k output with zero rows) and not compared.
    With `tol.min_agreement` below 1, that share of reference detections matched (or excused as
    ties) is enough, and the unmatched rest is left out of the element-wise comparison.
    `candidates` (per image) lets unmatched detections be checked as tie swaps; without them every
    detection must match.
    """
    aligned_dets = np.zeros(ref_dets.shape, dtype=got_dets.dtype)
    aligned_labels = np.full(ref_labels.shape, -1, dtype=got_labels.dtype)
    rows = np.full(ref_labels.shape, -1, dtype=np.int64)
    compared = np.zeros(ref_labels.shape, dtype=bool)
    problems, unexplained = [], []
    reference = matched = excused = 0
    iou_sum = 0.0
    for image in range(ref_dets.shape[0]):
        ref, got = ref_dets[image], got_dets[image]
        image_candidates = candidates[image] if candidates is not None and image < len(candidates) else None
        match = _match_image(ref, ref_labels[image], got, got_labels[image], tol, image_candidates)
        ref_rows = [int(i) for i in np.flatnonzero(ref[:, 4] > 0)]
        _fill_row_alignment(
            match, ref_rows, got, got_labels[image], aligned_dets[image], aligned_labels[image], rows[image]
        )
        compared[image, ref_rows] = True
        if match.excused:
            compared[image, match.leftover_ref] = False
            excused += len(match.leftover_ref)
        else:
            unexplained += [(image, i) for i in match.leftover_ref]
        problems += [f"image {image}: {problem}" for problem in match.problems]
        good = [i for i, ok in match.close.items() if ok]
        reference, matched = reference + len(ref_rows), matched + len(good)
        iou_sum += sum(float(box_iou(ref[i, :4], got[[match.pairs[i]], :4])[0]) for i in good)
    metrics = {
        "reference_detections": float(reference),
        "matched": float(matched),
        "match_rate": matched / reference if reference else 1.0,
        "excused_ties": float(excused),
        "mean_iou": iou_sum / matched if matched else 0.0,
    }
    summary = (
        f"{matched} of {reference} reference detections matched (same label, IoU >= {tol.iou_threshold}, allclose)"
    )
    summary += f"; {excused} excused as swaps between tied scores" if excused else ""
    passed = not problems or matched + excused >= tol.min_agreement * reference
    if problems and passed:  # tolerated by the manifest's min_task_agreement: leave the rest out
        for image, row in unexplained:
            compared[image, row] = False
    detail = summary if passed else "; ".join(problems) + f" ({summary})"
    agreement = TaskAgreement("detection matching", passed, metrics, detail)
    return DetectionAlignment(aligned_dets, aligned_labels, compared, agreement, rows)


def _fill_row_alignment(match, ref_rows, got, got_labels, aligned_dets, aligned_labels, rows) -> None:
    # Reference rows without a partner get the leftover ONNX rows in score order, so that a real
    # difference shows up in the element-wise numbers instead of disappearing.
    paired = set(match.pairs.values())
    spare = sorted((j for j in match.leftover_onnx if j not in paired), key=lambda j: -got[j, 4])
    for i in ref_rows:
        j = match.pairs.get(i)
        if j is None and spare:
            j = spare.pop(0)
        if j is not None:
            aligned_dets[i], aligned_labels[i], rows[i] = got[j], got_labels[j], j


# Instance masks ----------------------------------------------------------------------------------

MASK_THRESHOLD = 0.5


def mask_shortfalls(
    ref_masks: np.ndarray, got_masks: np.ndarray, rows: np.ndarray, compared: np.ndarray, atol: float, rtol: float
) -> tuple[np.ndarray, np.ndarray]:
    """(1 - IoU of each matched detection's masks binarized at 0.5, which of them to compare).

    `ref_masks`/`got_masks`: (batch, K, H, W) mask probabilities; `rows`/`compared` from
    `detection_alignment`. Pixels whose reference probability is within tolerance of 0.5 are left out:
    the reference cannot decide them, so a flip there says nothing about the export. A mask with no
    decidable pixel set in either model has IoU 1.
    """
    shortfalls = np.zeros(rows.shape, dtype=np.float64)
    use = compared & (rows >= 0)
    for image, row in zip(*np.nonzero(use), strict=True):
        ref = ref_masks[image, row].astype(np.float64)
        got = got_masks[image, rows[image, row]].astype(np.float64)
        decidable = np.abs(ref - MASK_THRESHOLD) > atol + rtol * MASK_THRESHOLD
        ref_on, got_on = (ref > MASK_THRESHOLD) & decidable, (got > MASK_THRESHOLD) & decidable
        union = np.count_nonzero(ref_on | got_on)
        iou = np.count_nonzero(ref_on & got_on) / union if union else 1.0
        shortfalls[image, row] = 1.0 - iou
    return shortfalls, use
