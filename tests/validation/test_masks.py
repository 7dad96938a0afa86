"""Instance masks: each matched detection's masks compared by the IoU of their binarized pixels."""

import numpy as np

from edge_deploy.validation.agreement import mask_shortfalls


def masks(*images):
    return np.stack([np.stack(rows) for rows in images]).astype(np.float32)


def test_identical_masks_fall_short_by_nothing():
    ref = masks([np.full((4, 4), 0.9), np.full((4, 4), 0.1)])
    rows, compared = np.array([[0, 1]]), np.array([[True, True]])
    shortfalls, used = mask_shortfalls(ref, ref.copy(), rows, compared, atol=1e-5, rtol=1e-3)
    assert used.all() and shortfalls.tolist() == [[0.0, 0.0]]


def test_masks_are_compared_through_the_detection_alignment():
    first, second = np.zeros((4, 4)), np.zeros((4, 4))
    first[:2], second[2:] = 0.9, 0.9
    ref = masks([first, second])
    got = masks([second, first])  # the ONNX model listed the detections the other way round
    rows = np.array([[1, 0]])
    shortfalls, _ = mask_shortfalls(ref, got, rows, np.array([[True, True]]), atol=1e-5, rtol=1e-3)
    assert shortfalls.tolist() == [[0.0, 0.0]]


def test_a_shrunken_mask_falls_short_by_the_iou_it_lost():
    ref_mask, got_mask = np.zeros((4, 4)), np.zeros((4, 4))
    ref_mask[:2] = 0.9  # 8 pixels
    got_mask[:1] = 0.9  # 4 of them
    shortfalls, _ = mask_shortfalls(
        masks([ref_mask]), masks([got_mask]), np.array([[0]]), np.array([[True]]), 1e-5, 1e-3
    )
    assert shortfalls[0, 0] == 0.5


def test_pixels_the_reference_cannot_decide_are_left_out_and_unmatched_rows_too():
    ref_mask = np.full((4, 4), 0.1)
    ref_mask[0, 0] = 0.9
    ref_mask[3, 3] = 0.5 + 1e-6  # on the threshold: a flip there says nothing
    got_mask = ref_mask.copy()
    got_mask[3, 3] = 0.5 - 1e-6
    ref, got = masks([ref_mask, ref_mask]), masks([got_mask, np.zeros((4, 4))])
    shortfalls, used = mask_shortfalls(ref, got, np.array([[0, -1]]), np.array([[True, True]]), 1e-5, 1e-3)
    assert shortfalls[0, 0] == 0.0
    assert used.tolist() == [[True, False]]  # the row without an ONNX partner is not compared here
