"""Element-wise comparison of one output: the numbers behind every parity verdict.

The rule is numpy's allclose with the reference on the right: |onnx - ref| <= atol + rtol * |ref|.
NaN matches NaN and an infinity matches the same infinity; anything else non-finite is an
infinite error.
"""

from __future__ import annotations

import numpy as np

from edge_deploy.validation.report import ErrorHistogram, OutputParity

# log10 bins of the absolute error, 1e-12 .. 1e+2 in half decades; errors outside land in the end bins.
HISTOGRAM_EDGES = [edge / 2 for edge in range(-24, 5)]


def absolute_errors(reference: np.ndarray, onnx: np.ndarray) -> np.ndarray:
    ref = reference.astype(np.float64, copy=False)
    got = onnx.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        errors = np.abs(got - ref)
    same_special = (np.isnan(ref) & np.isnan(got)) | (np.isinf(ref) & (ref == got))
    errors[same_special] = 0.0
    errors[~np.isfinite(errors)] = np.inf
    return errors


def histogram(errors: np.ndarray) -> ErrorHistogram:
    nonzero = errors[errors > 0]
    exact = int(errors.size - nonzero.size)
    low, high = HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1]
    logs = np.clip(np.log10(nonzero), low, high) if nonzero.size else nonzero
    counts, _ = np.histogram(logs, bins=HISTOGRAM_EDGES)
    return ErrorHistogram(log10_edges=list(HISTOGRAM_EDGES), counts=[int(count) for count in counts], exact=exact)


def compare_output(
    name: str,
    reference: np.ndarray,
    onnx: np.ndarray,
    atol: float,
    rtol: float,
    mask: np.ndarray | None = None,
    note: str = "",
) -> OutputParity:
    """Compare `onnx` to `reference`; `mask` (True = compared) leaves out elements a task rule excused."""
    reference, onnx = np.asarray(reference), np.asarray(onnx)
    if reference.shape != onnx.shape:
        return _shape_mismatch(name, reference, onnx, atol, rtol, note)
    errors = absolute_errors(reference, onnx)
    ref = reference.astype(np.float64, copy=False)
    compared = np.ones(reference.shape, dtype=bool) if mask is None else np.broadcast_to(mask, reference.shape)
    if not compared.any():
        return _nothing_compared(name, reference, atol, rtol, note)
    with np.errstate(invalid="ignore"):
        # An infinite reference allows only itself: error 0 passes, error inf gives inf - inf = nan below.
        allowed = np.where(np.isinf(ref), np.inf, atol + rtol * np.abs(ref))
        excess = np.where(compared & (errors > 0), errors - allowed, -np.inf)
        excess[np.isnan(excess)] = np.inf
        relative = np.where(errors > 0, errors / np.maximum(np.abs(ref), max(atol, 1e-12)), 0.0)
    violations = int(np.count_nonzero(excess > 0))
    # Point at the element furthest beyond its tolerance, or at the largest error when all pass.
    flat_worst = int(np.argmax(excess)) if violations else int(np.argmax(np.where(compared, errors, -np.inf)))
    worst = np.unravel_index(flat_worst, reference.shape) if reference.ndim else ()
    compared_errors = errors[compared]
    with np.errstate(invalid="ignore"):
        p99 = float(np.percentile(compared_errors, 99))
    return OutputParity(
        name=name,
        shape=list(reference.shape),
        dtype=str(onnx.dtype),
        atol=atol,
        rtol=rtol,
        elements=int(compared_errors.size),
        max_abs=float(compared_errors.max()),
        max_rel=float(relative[compared].max()),
        mean_abs=float(compared_errors.mean()),
        p99_abs=p99,
        violations=violations,
        worst_index=[int(index) for index in worst],
        worst_reference=float(reference[worst]),
        worst_onnx=float(onnx[worst]),
        passed=violations == 0,
        histogram=histogram(compared_errors),
        note=note,
    )


def _shape_mismatch(name, reference, onnx, atol, rtol, note) -> OutputParity:
    reason = f"shape {list(onnx.shape)} differs from the reference's {list(reference.shape)}"
    return OutputParity(
        name=name,
        shape=list(reference.shape),
        dtype=str(onnx.dtype),
        atol=atol,
        rtol=rtol,
        elements=int(reference.size),
        max_abs=float("inf"),
        max_rel=float("inf"),
        mean_abs=float("inf"),
        p99_abs=float("inf"),
        violations=int(reference.size),
        worst_index=[],
        worst_reference=float("nan"),
        worst_onnx=float("nan"),
        passed=False,
        histogram=histogram(np.zeros(0)),
        note="; ".join(filter(None, [reason, note])),
    )


def _nothing_compared(name, reference, atol, rtol, note) -> OutputParity:
    return OutputParity(
        name=name,
        shape=list(reference.shape),
        dtype=str(reference.dtype),
        atol=atol,
        rtol=rtol,
        elements=0,
        max_abs=0.0,
        max_rel=0.0,
        mean_abs=0.0,
        p99_abs=0.0,
        violations=0,
        worst_index=[],
        worst_reference=0.0,
        worst_onnx=0.0,
        passed=True,
        histogram=histogram(np.zeros(0)),
        note="; ".join(filter(None, ["no elements to compare", note])),
    )
