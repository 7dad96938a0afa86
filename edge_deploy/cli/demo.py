"""`edge-deploy demo`: the whole pipeline on the embedded default, with no server at all.

It writes a sample model directory, makes a demo key, runs the `deploy_model` workflow in this
process as `pyflyte run` does (local directory as the source, the embedded SQLite record store,
in-process status), builds the x86_64 image when a Docker engine answers (saying so when it does
not), and prints a summary.

The terminal shows one line per stage with its time, followed from the run's live status; what
torch, mmengine and Flyte print goes to a log file the summary names (`-v` keeps it on the
terminal instead).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import click

from edge_deploy.cli.progress import StageLines, format_seconds, output_to_log
from edge_deploy.config import Settings
from edge_deploy.crypto import generate_key, write_key_file
from edge_deploy.errors import EdgeDeployError

DEMO_KEY_ID = "demo"
# The samples' weights are seeded random numbers, so a detector's scores stay under its configured threshold
# and a plain /v1/predict would answer with no boxes at all: the demo asks for the top few at any score.
SAMPLE_PREDICT_QUERY = "?score_threshold=0&max_detections=3"
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
    help="Where the demo keeps its model, key, records, artifacts and log.",
)
@click.option("--images/--no-images", default=True, show_default=True, help="Build the x86_64 image (needs Docker).")
@click.pass_context
def demo(ctx: click.Context, sample: str, demo_dir: Path, images: bool) -> None:
    """Run the deployment workflow locally on a sample model and print what it produced."""
    demo_dir = demo_dir.resolve()
    env = _demo_env(demo_dir)
    os.environ.update(env)
    run_id = env["EDGE_RUN_ID"]
    log_path = demo_dir / "logs" / f"{run_id}.log"
    verbose = bool(ctx.find_root().params.get("verbose"))
    click.echo(f"run {run_id}: sample {sample}" + ("" if verbose else f"; library output goes to {log_path}"))
    started = time.monotonic()
    with _terminal(log_path, verbose) as terminal:
        lines = StageLines(terminal)
        try:
            model_dir = _sample_dir(lines, demo_dir, sample)
            base = _python_base(lines) if images else None
            _run_workflow(lines, run_id, model_dir, base)
        finally:
            lines.close()
        summary = _summary(run_id, Settings.from_env(), None if verbose else log_path, sample)
    click.echo(f"done in {format_seconds(time.monotonic() - started)}\n")
    click.echo("\n".join(summary))


@contextlib.contextmanager
def _terminal(log_path: Path, verbose: bool) -> Iterator[TextIO]:
    if verbose:
        yield click.get_text_stream("stdout")
        return
    try:
        with output_to_log(log_path) as terminal:
            yield terminal
    except EdgeDeployError as exc:
        raise EdgeDeployError(f"{exc} (library output: {log_path})") from exc


def _demo_env(demo_dir: Path) -> dict[str, str]:
    key_dir = demo_dir / "keys"
    if not (key_dir / DEMO_KEY_ID).exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        write_key_file(key_dir / DEMO_KEY_ID, generate_key())
    for name in ("MONGODB_URI", "REDIS_URL", "EDGE_REGISTRY"):  # the embedded default, whatever the shell has
        os.environ.pop(name, None)
    return {
        "EDGE_WORK_DIR": str(demo_dir / "work"),
        "EDGE_KEY_DIR": str(key_dir),
        "EDGE_SEAL_KEY_ID": DEMO_KEY_ID,
        "EDGE_RUN_ID": f"demo-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        # cached outputs point into temporary folders that do not outlive a run
        "FLYTE_LOCAL_CACHE_ENABLED": "false",
    }


def _sample_dir(lines: StageLines, demo_dir: Path, sample: str) -> Path:
    model_dir = demo_dir / "models" / sample
    if not model_dir.exists():
        from edge_deploy.samples import write_sample

        with lines.step("sample"):
            write_sample(sample, model_dir)
    return model_dir


def _python_base(lines: StageLines) -> str | None:
    """A local Python base for the x86_64 image, or None (with the reason) when there is no engine."""
    from edge_deploy.images.base import DEFAULT_REFERENCE, ensure_python_base
    from edge_deploy.images.build import engine_client

    try:
        client = engine_client()
    except EdgeDeployError as exc:
        lines.out.write(f"  no Docker engine: image builds skipped ({exc})\n")
        return None
    with lines.step("base image"):  # made with debootstrap the first time (about 2 minutes)
        ensure_python_base(client, DEFAULT_REFERENCE)
    return DEFAULT_REFERENCE


def _run_workflow(lines: StageLines, run_id: str, model_dir: Path, base: str | None) -> None:
    """`deploy_model` in this process, its stages shown as the live status reports them."""
    from edge_deploy.status import PROCESS_STATUS
    from workflows.local import run_local_model

    follower = threading.Thread(target=_show_stages, args=(lines, PROCESS_STATUS, run_id), daemon=True)
    follower.start()
    try:
        run_local_model(
            model_dir, [DEMO_TARGET], build_images=base is not None, base_images={DEMO_TARGET: base} if base else None
        )
    except Exception as exc:
        progress = PROCESS_STATUS.progress(run_id)
        if progress and progress.error:
            where = f"at stage {progress.stage}: {progress.error}"
        else:
            where = f"({_last_line(exc)})"
        raise EdgeDeployError(
            f"the workflow failed {where}; `edge-deploy deployments show {run_id}` has the record"
        ) from exc
    finally:
        follower.join(timeout=5)


def _show_stages(lines: StageLines, status, run_id: str) -> None:
    for event in status.follow(run_id):
        lines.show(event)


def _last_line(exc: BaseException) -> str:
    """Flyte wraps a task's error in a multi-line message whose last line is the original one."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:300]


def _ask_the_image(reference: str, sample: str) -> list[str]:
    """How to run the image the demo built and ask it about a photo (docs/device-guide.md has more)."""
    import matplotlib

    from edge_deploy.conversion.contract import Task
    from edge_deploy.samples import SAMPLES

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    key_dir = Path(os.environ["EDGE_KEY_DIR"])  # set by _demo_env
    detects = SAMPLES[sample].task in (Task.DETECTION, Task.INSTANCE_SEGMENTATION)
    query = SAMPLE_PREDICT_QUERY if detects else ""
    return [
        "run the image as a device would (the key file stays 0600: the container runs as you), then ask it:",
        f'  docker run -d --rm --name edge-demo -p 8080:8080 --user "$(id -u):$(id -g)" '
        f"-v {key_dir / DEMO_KEY_ID}:/run/secrets/edge-keys/{DEMO_KEY_ID}:ro {reference}",
        f"  curl -s -H 'Content-Type: image/jpeg' --data-binary @{photo} 'localhost:8080/v1/predict{query}'",
        "  docker stop edge-demo",
        f"(the {sample} sample's weights are random: the answer shows the format, not what is in the photo)",
    ]


def _summary(run_id: str, settings: Settings, log_path: Path | None, sample: str) -> list[str]:
    """The lines that tell what the run produced, read back from its record."""
    from edge_deploy.records import open_record_store

    store = open_record_store(settings)
    try:
        record = store.get(run_id)
    finally:
        store.close()
    if record is None:
        raise EdgeDeployError(f"run {run_id} left no record in {settings.work_dir}")
    artifacts = settings.work_dir / "runs" / run_id / "edge"
    lines = [f"run {run_id}: {record.status.state}"]
    if record.validation:
        validation = record.validation
        worst = ", ".join(f"{e.output} {e.max_abs_error:.1e}" for e in validation.worst_errors)
        verdict = "PASSED" if validation.passed else "FAILED"
        lines.append(f"validation: {verdict}; worst |onnx - torch|: {worst}; p50 {validation.latency_p50_ms:.1f} ms")
    if record.images:
        for image in record.images.platforms:
            lines.append(f"image {image.platform}: {image.reference} ({image.digest}, {image.size / 2**20:.0f} MiB)")
            if image.acceptance:
                lines.append(f"  acceptance: {image.acceptance.summary()}")
        lines += _ask_the_image(record.images.platforms[0].reference, sample)
    else:
        lines.append("images: none built")
    lines.append(f"validation report: {artifacts / 'validation.html'}")
    lines.append(f"record: {artifacts / 'record.json'} (and the embedded store in {settings.work_dir})")
    if log_path is not None:
        lines.append(f"library output (warnings and logs of torch, OpenMMLab and Flyte): {log_path}")
    return lines


commands = [demo]
