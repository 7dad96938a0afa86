"""`edge-deploy demo`: the whole pipeline on the embedded default, with no server at all.

It writes a sample model directory, makes a demo key, runs the workflow with `pyflyte run`
(local directory as the source, the embedded SQLite record store, in-process status), builds the
x86_64 image when a Docker engine answers (saying so when it does not), and prints a summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from edge_deploy.config import Settings
from edge_deploy.crypto import generate_key, write_key_file
from edge_deploy.errors import EdgeDeployError

DEMO_KEY_ID = "demo"
DEMO_TARGET = "x86_64-cpu"


@click.command()
@click.option(
    "--sample", default="rtmdet-tiny", show_default=True, help="Sample model to deploy (see `sample --list`)."
)
@click.option(
    "--dir",
    "demo_dir",
    type=click.Path(path_type=Path),
    default=Path(".edge-deploy/demo"),
    show_default=True,
    help="Where the demo keeps its model, key, records and artifacts.",
)
@click.option("--images/--no-images", default=True, show_default=True, help="Build the x86_64 image (needs Docker).")
def demo(sample: str, demo_dir: Path, images: bool) -> None:
    """Run the deployment workflow locally on a sample model and print what it produced."""
    from edge_deploy.samples import write_sample

    demo_dir = demo_dir.resolve()
    model_dir = demo_dir / "models" / sample
    if not model_dir.exists():
        write_sample(sample, model_dir)
    env = _demo_env(demo_dir)
    options: dict[str, object] = {"build_images": False}
    if images:
        base = _python_base()
        if base:
            options = {"build_images": True, "base_images": {DEMO_TARGET: base}}
    run_id = env["EDGE_RUN_ID"]
    click.echo(f"== running the workflow (run {run_id}) on {model_dir}")
    started = time.monotonic()
    _pyflyte_run(model_dir, options, env)
    click.echo(f"== done in {time.monotonic() - started:.0f}s")
    _summary(run_id, Settings.from_env(env))


def _demo_env(demo_dir: Path) -> dict[str, str]:
    key_dir = demo_dir / "keys"
    if not (key_dir / DEMO_KEY_ID).exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        write_key_file(key_dir / DEMO_KEY_ID, generate_key())
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "REDIS_URL", "EDGE_REGISTRY")}
    env.update(
        EDGE_WORK_DIR=str(demo_dir / "work"),
        EDGE_KEY_DIR=str(key_dir),
        EDGE_SEAL_KEY_ID=DEMO_KEY_ID,
        EDGE_RUN_ID=f"demo-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        # cached outputs point into temporary folders that do not outlive a run
        FLYTE_LOCAL_CACHE_ENABLED="false",
    )
    return env


def _python_base() -> str | None:
    """A local Python base for the x86_64 image, or None (with the reason) when there is no engine."""
    from edge_deploy.images.base import DEFAULT_REFERENCE, ensure_python_base
    from edge_deploy.images.build import engine_client

    try:
        client = engine_client()
    except EdgeDeployError as exc:
        click.echo(f"== no Docker engine: skipping image builds ({exc})")
        return None
    click.echo(f"== Docker engine found; base image {DEFAULT_REFERENCE} (made with debootstrap the first time)")
    ensure_python_base(client, DEFAULT_REFERENCE)
    return DEFAULT_REFERENCE


def _pyflyte_run(model_dir: Path, options: dict[str, object], env: dict[str, str]) -> None:
    import workflows.deploy

    command = [
        sys.executable,
        "-m",
        "flytekit.clis.sdk_in_container.pyflyte",
        "run",
        workflows.deploy.__file__,
        "deploy_model",
        "--local_dir",
        str(model_dir),
        "--targets",
        json.dumps([DEMO_TARGET]),
        "--options",
        json.dumps(options),
    ]
    if subprocess.run(command, env=env).returncode != 0:
        raise EdgeDeployError(
            f"the workflow failed; `edge-deploy deployments show {env['EDGE_RUN_ID']}` has the record"
        )


def _summary(run_id: str, settings: Settings) -> None:
    from edge_deploy.records import open_record_store

    store = open_record_store(settings)
    try:
        record = store.get(run_id)
    finally:
        store.close()
    if record is None:
        raise EdgeDeployError(f"run {run_id} left no record in {settings.work_dir}")
    artifacts = settings.work_dir / "runs" / run_id / "edge"
    validation = record.validation
    click.echo(f"\nrun {run_id}: {record.status.state}")
    if validation:
        worst = ", ".join(f"{e.output} {e.max_abs_error:.1e}" for e in validation.worst_errors)
        verdict = "PASSED" if validation.passed else "FAILED"
        click.echo(f"validation: {verdict}; worst |onnx - torch|: {worst}; p50 {validation.latency_p50_ms:.1f} ms")
    if record.images:
        for image in record.images.platforms:
            click.echo(f"image {image.platform}: {image.reference} ({image.digest}, {image.size / 2**20:.0f} MiB)")
    else:
        click.echo("images: none built")
    click.echo(f"validation report: {artifacts / 'validation.html'}")
    click.echo(f"record: {artifacts / 'record.json'} (and the embedded store in {settings.work_dir})")


commands = [demo]
