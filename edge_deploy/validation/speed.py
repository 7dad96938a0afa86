"""Speed: how long ONNX Runtime takes to open the model and to run it, as an edge device would.

The session is opened with ONNX Runtime's defaults (all graph optimizations, applied at load), on
the CPU execution provider; latency is measured per `run()` after warm-up runs, so the first-run
allocations are not counted. These are figures for the report, not a gate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
    threads: int = 0,
    custom_op_library: Path | None = None,
) -> dict[str, SpeedReport]:
    """Latency of several models measured interleaved: run i of every model happens in the same
    moment, in alternating order, so that load from other processes hits them all alike and a
    speedup between them means something on a shared machine."""
    sessions, load_seconds = {}, {}
    for label, path in models.items():
        start = time.perf_counter()
        sessions[label] = open_session(path, custom_op_library=custom_op_library, threads=threads, level="all")
        load_seconds[label] = time.perf_counter() - start
    feeds = dict(feeds)
    for session in sessions.values():
        for _ in range(warmup_runs):
            session.run(None, feeds)
    latencies: dict[str, list[float]] = {label: [] for label in sessions}
    order = list(sessions)
    for index in range(timed_runs):
        for label in order if index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            sessions[label].run(None, feeds)
            latencies[label].append((time.perf_counter() - start) * 1000)
    return {
        label: _report(models[label], load_seconds[label], latencies[label], feeds, warmup_runs, threads)
        for label in sessions
    }


def _report(path, load_seconds, latencies, feeds, warmup_runs, threads) -> SpeedReport:
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
    )
