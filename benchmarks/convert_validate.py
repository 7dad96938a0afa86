"""Conversion and validation of each sample family: time, peak memory, size and ONNX Runtime latency.

    .venv/bin/python benchmarks/convert_validate.py [--samples resnet18,rtmdet-tiny,fast-scnn] [--threads 0]

Each family runs in its own subprocess (a fresh interpreter, as a Flyte task gets): write the sample,
convert it (edge_deploy.conversion.convert), then validate it with the gate's default settings
(edge_deploy.validation.gate.validate: 3 seeded inputs per size, 30 timed runs). Times include what
a task pays on first use (importing torch and mmdeploy, building the PyTorch model). Peak RSS is the
kernel's VmHWM, reset before each stage. Latency is ONNX Runtime's p50 on the CPU execution provider
for the raw model and for its optimized copy (kept only when it passes parity and is >= 5% faster).
The machine's load average is printed: latency figures are only comparable at the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

DEFAULT_SAMPLES = ("resnet18", "rtmdet-tiny", "fast-scnn")


def run_family(name: str, work: Path, threads: int) -> dict[str, object]:
    """Convert and validate one sample in this process; returns the figures."""
    from edge_deploy.conversion import convert
    from edge_deploy.conversion.memory import peak_rss
    from edge_deploy.samples import write_sample
    from edge_deploy.validation.gate import validate
    from edge_deploy.validation.report import ValidationSettings

    model_dir = write_sample(name, work / "model")
    result = convert(model_dir, work / "onnx")
    started = time.perf_counter()
    with peak_rss() as memory:
        report = validate(model_dir, work / "onnx", settings=ValidationSettings(intra_op_threads=threads))
    validate_seconds = time.perf_counter() - started
    optimization = report.optimization
    worst = {name: report.parity.worst(name).max_abs for name in report.parity.output_names}
    return {
        "sample": name,
        "convert_s": result.seconds,
        "convert_peak_rss_mb": result.peak_rss_mb,
        "validate_s": round(validate_seconds, 2),
        "validate_peak_rss_mb": round(memory.peak_mb, 1),
        "onnx_mb": round(result.size_bytes / 1e6, 2),
        "passed": report.passed,
        "cases": len(report.parity.cases),
        "worst_max_abs": worst,
        "load_ms": round(report.speed.load_seconds * 1000, 1),
        "p50_ms_raw": round(report.speed.p50_ms, 2),
        "p95_ms_raw": round(report.speed.p95_ms, 2),
        "p50_ms_optimized": round(optimization.speed.p50_ms, 2) if optimization and optimization.speed else None,
        "optimized_kept": bool(optimization and optimization.kept),
        "optimization": optimization.reason if optimization else "not tried",
    }


def spawn(name: str, threads: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as work:
        command = [sys.executable, __file__, "--worker", name, "--work", work, "--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict[str, object]]) -> None:
    header = (
        f"{'sample':12} {'convert s':>9} {'conv RSS MB':>11} {'validate s':>10} {'val RSS MB':>10} "
        f"{'ONNX MB':>7} {'p50 raw ms':>10} {'p50 opt ms':>10} {'opt kept':>8}  worst max abs error per output"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        optimized = "-" if row["p50_ms_optimized"] is None else f"{row['p50_ms_optimized']:.2f}"
        worst = ", ".join(f"{name} {value:.1e}" for name, value in row["worst_max_abs"].items())
        print(
            f"{row['sample']:12} {row['convert_s']:9.1f} {row['convert_peak_rss_mb']:11.0f} {row['validate_s']:10.1f} "
            f"{row['validate_peak_rss_mb']:10.0f} {row['onnx_mb']:7.1f} {row['p50_ms_raw']:10.2f} {optimized:>10} "
            f"{'yes' if row['optimized_kept'] else 'no':>8}  {worst}"
        )
    for row in rows:
        print(
            f"{row['sample']}: gate {'PASS' if row['passed'] else 'FAIL'} over {row['cases']} cases; "
            f"session load {row['load_ms']} ms, p95 {row['p95_ms_raw']} ms; optimization {row['optimization']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default=",".join(DEFAULT_SAMPLES))
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_family(args.worker, args.work, args.threads)))
        return
    print(f"{os.cpu_count()} CPUs, load average {', '.join(f'{value:.1f}' for value in os.getloadavg())}")
    rows = [spawn(name, args.threads) for name in args.samples.split(",")]
    print_table(rows)
    print(f"load average after: {', '.join(f'{value:.1f}' for value in os.getloadavg())}")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
