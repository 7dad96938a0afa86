"""Element-wise comparison: the allclose rule, and the numbers a failure message quotes."""

import numpy as np

from edge_deploy.validation.metrics import compare_output


def test_within_tolerance_passes_and_reports_the_error_statistics():
    reference = np.linspace(-1, 1, 1000, dtype=np.float32).reshape(10, 100)
    onnx = reference + np.float32(1e-6)
    result = compare_output("output", reference, onnx, atol=1e-5, rtol=1e-3)
    assert result.passed and result.violations == 0
    assert result.elements == 1000
    assert 0.9e-6 < result.max_abs < 1.1e-6
    assert 0.9e-6 < result.mean_abs < 1.1e-6
    assert result.p99_abs <= result.max_abs
    assert sum(result.histogram.counts) + result.histogram.exact == 1000


def test_the_worst_element_is_the_one_furthest_beyond_its_tolerance():
    reference = np.array([[100.0, 0.0, 5.0]], dtype=np.float32)
    onnx = np.array([[100.05, 0.002, 5.0]], dtype=np.float32)  # 0.05 is allowed at 100, 0.002 is not at 0
    result = compare_output("dets", reference, onnx, atol=1e-3, rtol=1e-3)
    assert not result.passed
    assert result.violations == 1
    assert result.worst_index == [0, 1]
    assert result.worst_reference == 0.0 and abs(result.worst_onnx - 0.002) < 1e-6
    assert abs(result.max_abs - 0.05) < 1e-4  # the largest error is elsewhere, and still reported
    message = result.failure_message("sample 0")
    assert "output 'dets' max abs error 5.0e-02 > atol 1e-03 + rtol 1e-03*|ref|" in message
    assert "1 of 3 elements" in message and "worst at [0, 1]" in message


def test_nan_matches_nan_but_not_a_number():
    reference = np.array([np.nan, 1.0, np.inf], dtype=np.float32)
    same = compare_output("x", reference, reference.copy(), atol=0.0, rtol=0.0)
    assert same.passed and same.max_abs == 0.0
    broken = compare_output("x", reference, np.array([np.nan, np.nan, np.inf], dtype=np.float32), 1e-3, 0.0)
    assert not broken.passed and broken.max_abs == float("inf")


def test_a_shape_difference_fails_with_both_shapes_named():
    result = compare_output("output", np.zeros((2, 10)), np.zeros((1, 10)), atol=1e-5, rtol=0.0)
    assert not result.passed
    assert "shape [1, 10] differs from the reference's [2, 10]" in result.failure_message("batch 2")


def test_masked_elements_are_left_out():
    reference = np.zeros((2, 3), dtype=np.float32)
    onnx = np.array([[0, 0, 0], [9, 9, 9]], dtype=np.float32)
    mask = np.array([[True], [False]])
    result = compare_output("dets", reference, onnx, atol=1e-3, rtol=0.0, mask=mask)
    assert result.passed and result.elements == 3
