"""`edge-deploy validate`: the ONNX validation gate from a shell."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("onnx_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Default: ONNX_DIR.")
@click.option("--samples", default=3, show_default=True, help="Seeded inputs per input size.")
@click.option("--seed", default=0, show_default=True, help="Seed of the parity inputs.")
@click.option("--atol", type=float, help="Override the absolute tolerance (manifest, then per-task default).")
@click.option("--rtol", type=float, help="Override the relative tolerance.")
@click.option(
    "--runs", "timed_runs", default=30, show_default=True, help="Timed ONNX Runtime runs for latency, at most."
)
@click.option(
    "--time-budget", default=15.0, show_default=True, help="Seconds of latency timing, at most (warm-up included)."
)
@click.option("--threads", default=0, show_default=True, help="ONNX Runtime intra-op threads (0: its default).")
@click.option("--no-optimize", is_flag=True, help="Do not try an optimized copy of the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (also when the gate fails).")
def validate(
    model_dir: Path,
    onnx_dir: Path,
    out_dir: Path | None,
    samples: int,
    seed: int,
    atol: float | None,
    rtol: float | None,
    timed_runs: int,
    time_budget: float,
    threads: int,
    no_optimize: bool,
    as_json: bool,
) -> None:
    """Check ONNX_DIR/end2end.onnx against the PyTorch model in MODEL_DIR.

    Writes validation.json and validation.html beside the model (or into --out). Exits 6 with the
    failing output and the size of the difference when the model fails the gate.
    """
    from edge_deploy.validation.gate import validate as run_validation
    from edge_deploy.validation.report import ValidationFailed, ValidationSettings

    settings = ValidationSettings(
        samples=samples,
        seed=seed,
        atol=atol,
        rtol=rtol,
        timed_runs=timed_runs,
        time_budget_s=time_budget,
        intra_op_threads=threads,
        optimize=not no_optimize,
    )
    try:
        report = run_validation(model_dir, onnx_dir, out_dir=out_dir, settings=settings)
    except ValidationFailed as failure:
        if as_json:
            click.echo(failure.report.to_json())
        raise
    click.echo(report.to_json() if as_json else summary(report, out_dir or onnx_dir))


def summary(report, out_dir: Path) -> str:
    lines = [f"PASS {report.model.onnx_file} ({report.model.task}, {report.seconds:.1f} s)"]
    for name in report.parity.output_names:
        worst = report.parity.worst(name)
        lines.append(f"  {name}: max abs {worst.max_abs:.2e} (atol {worst.atol:.0e}, rtol {worst.rtol:.0e})")
    tasks = {case.task.kind: case.task.detail for case in report.parity.cases if case.task is not None}
    lines += [f"  {kind}: {detail}" for kind, detail in tasks.items()]
    speed = report.speed
    lines.append(
        f"  ONNX Runtime p50 {speed.p50_ms:.2f} ms, p95 {speed.p95_ms:.2f} ms, load {speed.load_seconds:.2f} s "
        f"({speed.timed_runs} timed runs, stopped by the {speed.stopped_by})"
    )
    if report.optimization is not None:
        lines.append(f"  optimization: {report.optimization.reason}")
    lines.append(f"  ships {report.shipped_onnx}; report {out_dir / 'validation.json'}")
    return "\n".join(lines)


commands = [validate]
