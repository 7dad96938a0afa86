"""Task-level agreement: classification top-k, detection matching, segmentation pixels; ties only."""

import numpy as np

from edge_deploy.validation.agreement import (
    DetectionTolerance,
    NmsCandidates,
    classification_agreement,
    detection_alignment,
    segmentation_agreement,
)

TOL = DetectionTolerance(box_atol=1e-3, box_rtol=1e-4, score_atol=1e-5, score_rtol=1e-3)


def test_classification_agrees_on_top1_and_top5():
    scores = np.random.default_rng(0).dirichlet(np.ones(20), size=4).astype(np.float32)
    result = classification_agreement(scores, scores + 1e-9, atol=1e-5, rtol=1e-3)
    assert result.passed
    assert result.metrics["top1_agreement"] == 1.0 and result.metrics["top5_agreement"] == 1.0


def test_classification_excuses_a_top1_swap_only_between_tied_scores():
    tied = np.array([[0.30, 0.30, 0.2, 0.1, 0.05, 0.05]], dtype=np.float32)
    swapped = tied.copy()
    swapped[0, 1] += 1e-7  # class 1 now wins by a hair
    assert classification_agreement(tied, swapped, atol=1e-5, rtol=1e-3).passed

    clear = np.array([[0.40, 0.30, 0.2, 0.05, 0.03, 0.02]], dtype=np.float32)
    flipped = clear[:, [1, 0, 2, 3, 4, 5]]
    result = classification_agreement(clear, flipped, atol=1e-5, rtol=1e-3)
    assert not result.passed
    assert result.metrics["top1_agreement"] == 0.0
    assert "top-1 is class 0" in result.detail and "class 1" in result.detail


def _dets(rows):
    dets = np.zeros((1, 6, 5), dtype=np.float32)
    labels = np.zeros((1, 6), dtype=np.int64)
    for index, (box, score, label) in enumerate(rows):
        dets[0, index] = [*box, score]
        labels[0, index] = label
    return dets, labels


ROWS = [
    ((10, 10, 50, 50), 0.9, 1),
    ((60, 60, 90, 90), 0.7, 2),
    ((20, 30, 40, 80), 0.5, 1),
    ((0, 0, 5, 5), 0.5, 3),
]


def test_detections_match_in_any_order_and_padding_is_ignored():
    ref_dets, ref_labels = _dets(ROWS)
    got_dets, got_labels = _dets([ROWS[i] for i in (0, 3, 2, 1)])  # 0.5-score rows and others reordered
    aligned = detection_alignment(ref_dets, ref_labels, got_dets, got_labels, TOL)
    assert aligned.agreement.passed
    assert aligned.agreement.metrics["matched"] == 4
    np.testing.assert_array_equal(aligned.dets[0, :4], ref_dets[0, :4])
    assert aligned.compared[0].tolist() == [True] * 4 + [False] * 2  # rows with score 0 are padding


def test_a_moved_box_fails_and_names_the_detection():
    ref_dets, ref_labels = _dets(ROWS)
    moved = list(ROWS)
    moved[1] = ((62, 60, 92, 90), 0.7, 2)
    got_dets, got_labels = _dets(moved)
    aligned = detection_alignment(ref_dets, ref_labels, got_dets, got_labels, TOL)
    assert not aligned.agreement.passed
    assert "reference detection 1 (score 0.7" in aligned.agreement.detail
    assert aligned.compared[0, 1]  # compared, so the element-wise check sees the 2 px difference


def test_a_tie_swap_is_excused_only_for_a_box_the_reference_also_produced():
    # Reference keeps box A, ONNX keeps box B, both scored 0.5: NMS between equal scores is arbitrary.
    box_a, box_b = (20, 30, 40, 80), (100, 100, 120, 140)
    ref_dets, ref_labels = _dets(ROWS)
    swapped = list(ROWS)
    swapped[2] = (box_b, 0.5, 1)
    got_dets, got_labels = _dets(swapped)
    scores = np.zeros((4, 2), dtype=np.float32)
    scores[1] = [0.5, 0.5]
    candidates = [NmsCandidates(np.array([box_a, box_b], dtype=np.float32), scores)]
    aligned = detection_alignment(ref_dets, ref_labels, got_dets, got_labels, TOL, candidates)
    assert aligned.agreement.passed
    assert aligned.agreement.metrics["excused_ties"] == 1
    assert not aligned.compared[0, 2]

    # The same swap without B among the reference's candidates is a real difference.
    only_a = [NmsCandidates(np.array([box_a], dtype=np.float32), scores[:, :1])]
    aligned = detection_alignment(ref_dets, ref_labels, got_dets, got_labels, TOL, only_a)
    assert not aligned.agreement.passed
    assert "not among the reference's NMS candidates" in aligned.agreement.detail
    # And without recorded candidates nothing is excused.
    assert not detection_alignment(ref_dets, ref_labels, got_dets, got_labels, TOL).agreement.passed


def test_segmentation_logits_excuse_only_tied_pixels():
    logits = np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32)
    logits[0, :, 0, 0] = [1.0, 1.0, 0.0, 0.0]  # a tie at pixel (0, 0)
    onnx = logits.copy()
    onnx[0, 1, 0, 0] += 1e-6
    assert segmentation_agreement(logits, onnx, 1e-4, 1e-3, 1.0).passed
    other = (int(logits[0, :, 5, 5].argmax()) + 1) % 4
    onnx[0, other, 5, 5] = logits[0, :, 5, 5].max() + 1  # a clear flip
    result = segmentation_agreement(logits, onnx, 1e-4, 1e-3, 1.0)
    assert not result.passed and "1 pixels disagree without a tie" in result.detail


def test_label_maps_need_the_minimum_pixel_agreement():
    labels = np.zeros((1, 1, 100, 100), dtype=np.int64)
    onnx = labels.copy()
    onnx[0, 0, 0, :5] = 1  # 5 of 10000 pixels
    assert segmentation_agreement(labels, onnx, 0, 0, 0.999).passed
    onnx[0, 0, 1, :20] = 1
    result = segmentation_agreement(labels, onnx, 0, 0, 0.999)
    assert not result.passed and result.metrics["pixel_agreement"] == 0.9975
