"""Optional optimization: a graph-optimized copy of the model, kept only if it is both right and faster.

The copy is ONNX Runtime's offline optimization at ORT_ENABLE_BASIC: constant folding, redundant
node elimination and fusions that use standard ONNX operators only. Higher levels are not saved on
purpose: ONNX Runtime documents that extended/all-level models may contain its contrib operators and
hardware-specific layouts (NCHWc on AVX CPUs), and the model ships to other machines (ARM64 edge
devices, GPU execution providers). The runtime still applies every level online at load, which is
why the measured gain is usually small (STACK.md: ORT's default level already gives the 1.3-1.7x, and
onnxslim on top moved latency by -2..+2%). onnxslim is not installed, so it is not tried.

The copy must pass the same parity gate against the same reference outputs and be at least
`min_speedup` faster at p50; otherwise it is deleted and the raw model ships.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from edge_deploy.validation.parity import ReferenceRun, Tolerances, check_parity
from edge_deploy.validation.report import OptimizationReport, SpeedReport, ValidationSettings
from edge_deploy.validation.runtime import open_session
from edge_deploy.validation.speed import measure_speed

METHOD = "ONNX Runtime offline graph optimization (ORT_ENABLE_BASIC: portable, standard operators only)"
OPTIMIZED_NAME = "end2end.optimized.onnx"


def write_optimized(onnx_path: Path, target: Path, custom_op_library: Path | None = None) -> Path:
    """Write the optimized model to `target` (via a temporary name, so a failure leaves nothing behind)."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        open_session(onnx_path, custom_op_library=custom_op_library, level="basic", save_optimized_to=tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def try_optimization(
    onnx_path: Path,
    out_dir: Path,
    runs: Sequence[ReferenceRun],
    raw_speed: SpeedReport,
    task: str,
    tolerances: Tolerances,
    settings: ValidationSettings,
    custom_op_library: Path | None = None,
) -> OptimizationReport:
    target = out_dir / OPTIMIZED_NAME
    try:
        write_optimized(onnx_path, target, custom_op_library)
    except Exception as exc:  # onnxruntime's own exception types; the raw model still ships
        return OptimizationReport(METHOD, kept=False, reason=f"optimization failed: {exc}")
    session = open_session(target, custom_op_library=custom_op_library, threads=settings.intra_op_threads)
    parity = check_parity(session, runs, task, tolerances)
    del session
    speed = measure_speed(
        target,
        runs[0].case.feeds,
        warmup_runs=settings.warmup_runs,
        timed_runs=settings.timed_runs,
        threads=settings.intra_op_threads,
        custom_op_library=custom_op_library,
    )
    speedup = raw_speed.p50_ms / speed.p50_ms if speed.p50_ms > 0 else 1.0
    if not parity.passed:
        reason = f"dropped: the optimized model fails parity ({parity.failure})"
    elif speedup < settings.min_speedup:
        reason = f"dropped: {speedup:.2f}x at p50 is below the {settings.min_speedup:.2f}x needed to keep it"
    else:
        reason = f"kept: passes parity and is {speedup:.2f}x faster at p50"
    kept = reason.startswith("kept")
    report = OptimizationReport(
        method=METHOD,
        kept=kept,
        reason=reason,
        file=target.name if kept else None,
        sha256=sha256_of(target),
        size_bytes=target.stat().st_size,
        parity=parity,
        speed=speed,
        speedup=speedup,
    )
    if not kept:
        target.unlink()
    return report
