"""Speed: how long ONNX Runtime takes to open the model and to run it, as an edge device would.

The session is opened with ONNX Runtime's defaults (all graph optimizations, applied at load), on
the CPU execution provider; latency is measured per `run()` after warm-up runs, so the first-run
allocations are not counted. These are figures for the report, not a gate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_deploy.validation.report import SpeedReport
from edge_deploy.validation.runtime import open_session


def model_bytes(onnx_path: Path) -> int:
    """The model file plus any external-data files stored beside it."""
    import onnx

    total = onnx_path.stat().st_size
    model = onnx.load(str(onnx_path), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return total + sum((onnx_path.parent / location).stat().st_size for location in locations)


def measure_speeds(
    models: Mapping[str, Path],
    feeds: Mapping[str, np.ndarray],
    *,
    warmup_runs: int,
    timed_runs: int,
    time_budget_s: float = float("inf"),
    threads: int = 0,
    custom_op_library: Path | None = None,
) -> dict[str, SpeedReport]:
    """Latency of several models measured interleaved: run i of every model happens in the same
    moment, in alternating order, so that load from other processes hits them all alike and a
    speedup between them means something on a shared machine.

    Timing stops at `timed_runs` rounds or when `time_budget_s` is spent, whichever comes first
    (a large model at 5 s a run must not hold the gate for minutes); warm-up stops early too when it
    has used a quarter of the budget. Every model gets at least one timed run.
    """
    sessions, load_seconds = {}, {}
    for label, path in models.items():
        start = time.perf_counter()
        sessions[label] = open_session(path, custom_op_library=custom_op_library, threads=threads, level="all")
        load_seconds[label] = time.perf_counter() - start
    feeds = dict(feeds)
    started = time.perf_counter()
    warmed = _warm_up(sessions, feeds, warmup_runs, started + time_budget_s / 4)
    latencies: dict[str, list[float]] = {label: [] for label in sessions}
    order = list(sessions)
    stopped_by = "count"
    for index in range(timed_runs):
        if index and time.perf_counter() - started >= time_budget_s:
            stopped_by = "time budget"
            break
        for label in order if index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            sessions[label].run(None, feeds)
            latencies[label].append((time.perf_counter() - start) * 1000)
    budget = SpeedBudget(time_budget_s, stopped_by, round(time.perf_counter() - started, 3))
    return {
        label: _report(models[label], load_seconds[label], latencies[label], feeds, warmed, threads, budget)
        for label in sessions
    }


@dataclass(frozen=True)
class SpeedBudget:
    seconds: float
    stopped_by: str  # "count" or "time budget"
    spent: float


def _warm_up(sessions, feeds, runs: int, deadline: float) -> int:
    """Warm-up rounds done: at most `runs`, and none started after `deadline` (the first always runs)."""
    for done in range(runs):
        if done and time.perf_counter() >= deadline:
            return done
        for session in sessions.values():
            session.run(None, feeds)
    return runs


def _report(path, load_seconds, latencies, feeds, warmup_runs, threads, budget: SpeedBudget) -> SpeedReport:
    samples = np.asarray(latencies)
    return SpeedReport(
        model_bytes=model_bytes(path),
        load_seconds=load_seconds,
        inputs={name: list(array.shape) for name, array in feeds.items()},
        warmup_runs=warmup_runs,
        timed_runs=len(latencies),
        intra_op_threads=threads,
        graph_optimization="ORT_ENABLE_ALL at session load (ONNX Runtime's default)",
        p50_ms=float(np.percentile(samples, 50)),
        p95_ms=float(np.percentile(samples, 95)),
        mean_ms=float(samples.mean()),
        min_ms=float(samples.min()),
        latencies_ms=[round(value, 4) for value in latencies],
        time_budget_s=budget.seconds,
        stopped_by=budget.stopped_by,
        timing_seconds=budget.spent,
    )
