"""Optional optimization: a graph-optimized copy of the model, kept only if it is both right and faster.

The copy is ONNX Runtime's offline optimization at ORT_ENABLE_BASIC: constant folding, redundant
node elimination and fusions that use standard ONNX operators only. Higher levels are not saved on
purpose: ONNX Runtime documents that extended/all-level models may contain its contrib operators and
hardware-specific layouts (NCHWc on AVX CPUs), and the model ships to other machines (ARM64 edge
devices, GPU execution providers). The runtime still applies every level online at load, which is
why the measured gain is usually small (measured on this project's build machine: ORT's default
level already gives the 1.3-1.7x over the basic one, and onnxslim on top moved latency by
-2..+2%). onnxslim is not installed, so it is not tried.

The copy must pass the same parity gate against the same reference outputs and be at least
`min_speedup` faster at p50, timed interleaved with the raw model (see speed.measure_speeds);
otherwise it is deleted and the raw model ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_deploy.files import sha256_file
from edge_deploy.validation.parity import ReferenceRun, Tolerances, check_parity
from edge_deploy.validation.report import OptimizationReport, ParityReport, SpeedReport, ValidationSettings
from edge_deploy.validation.runtime import open_session
from edge_deploy.validation.speed import measure_speeds

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


@dataclass
class Candidate:
    """The optimized copy and its parity, or why there is none."""

    path: Path | None
    parity: ParityReport | None
    error: str | None = None


def optimized_candidate(
    onnx_path: Path,
    out_dir: Path,
    runs: Sequence[ReferenceRun],
    task: str,
    tolerances: Tolerances,
    settings: ValidationSettings,
    custom_op_library: Path | None = None,
) -> Candidate:
    """Write the optimized copy and check it against the same reference outputs as the raw model."""
    target = out_dir / OPTIMIZED_NAME
    try:
        write_optimized(onnx_path, target, custom_op_library)
    except Exception as exc:  # onnxruntime's own exception types; the raw model still ships
        return Candidate(None, None, f"optimization failed: {exc}")
    session = open_session(target, custom_op_library=custom_op_library, threads=settings.intra_op_threads)
    return Candidate(target, check_parity(session, runs, task, tolerances))


def decide(
    candidate: Candidate, raw: SpeedReport, optimized: SpeedReport | None, settings: ValidationSettings
) -> OptimizationReport:
    """Keep the copy only if it passes parity and is `min_speedup` faster at p50; else delete it."""
    if candidate.path is None:
        return OptimizationReport(METHOD, kept=False, reason=candidate.error or "no optimized model")
    speedup = raw.p50_ms / optimized.p50_ms if optimized is not None and optimized.p50_ms > 0 else None
    if not candidate.parity.passed:
        reason = f"dropped: the optimized model fails parity ({candidate.parity.failure})"
    elif speedup is None or speedup < settings.min_speedup:
        reason = f"dropped: {speedup or 0:.2f}x at p50 is below the {settings.min_speedup:.2f}x needed to keep it"
    else:
        reason = f"kept: passes parity and is {speedup:.2f}x faster at p50 (measured interleaved with the raw model)"
    kept = reason.startswith("kept")
    report = OptimizationReport(
        method=METHOD,
        kept=kept,
        reason=reason,
        file=candidate.path.name if kept else None,
        sha256=sha256_file(candidate.path),
        size_bytes=candidate.path.stat().st_size,
        parity=candidate.parity,
        speed=optimized,
        speedup=speedup,
    )
    if not kept:
        candidate.path.unlink()
    return report


def speed_and_optimization(
    onnx_path: Path,
    out_dir: Path,
    runs: Sequence[ReferenceRun],
    task: str,
    tolerances: Tolerances,
    settings: ValidationSettings,
    custom_op_library: Path | None = None,
    optimize: bool = True,
) -> tuple[SpeedReport, OptimizationReport | None]:
    """The raw model's speed and, when asked, the optimized copy's verdict, timed side by side."""
    candidate = None
    if optimize:
        candidate = optimized_candidate(onnx_path, out_dir, runs, task, tolerances, settings, custom_op_library)
    models = {"raw": onnx_path}
    if candidate is not None and candidate.path is not None and candidate.parity.passed:
        models["optimized"] = candidate.path
    speeds = measure_speeds(
        models,
        runs[0].case.feeds,
        warmup_runs=settings.warmup_runs,
        timed_runs=settings.timed_runs,
        time_budget_s=settings.time_budget_s,
        threads=settings.intra_op_threads,
        custom_op_library=custom_op_library,
    )
    optimization = decide(candidate, speeds["raw"], speeds.get("optimized"), settings) if candidate else None
    return speeds["raw"], optimization
