"""Cold and warm wall time of the deployment workflow: the same `pyflyte run` twice, Flyte's local cache on.

    .venv/bin/python benchmarks/workflow_cache.py [--sample fast-scnn] [--images auto|yes|no] [--keep]

The embedded default (a local model directory from `edge-deploy sample`, the embedded SQLite record
store, in-process status, no registry). Flyte's local cache is a diskcache under `~/.flyte/local-cache`
(flytekit.core.local_cache.CACHE_LOCATION, expanded with the HOME of the process), so both runs get a
fresh temporary HOME: the user's own cache is never read or written. TMPDIR is shared by both runs and
outlives them, because cached directory outputs point into the first run's temporary folders.
Images: `auto` builds the x86_64 image when a Docker engine answers and a local Python base image exists.
The runtime-layer cache (wheels per platform, shared with the image tests in ~/.cache/edge-deploy-tests)
is warmed before timing, so the cold run measures a new model version on a machine that has deployed
before, not PyPI. A key id of its own per invocation makes the cold run really build the image.

Checks that the warm run reused conversion and validation: flytekit logged a cache hit for both tasks,
the convert and validate stages did not report again (the record's timings come from the stage events),
and both records name the same ONNX sha256, validation verdict and image digest.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from edge_deploy.config import Settings  # noqa: E402
from edge_deploy.crypto import key_env_var  # noqa: E402
from edge_deploy.records import DeploymentRecord, open_record_store  # noqa: E402

CACHED_TASKS = ("tasks.convert.convert_model", "tasks.validate.validate_onnx")
CACHED_STAGES = ("convert", "validate")
TARGET = "x86_64-cpu"
# A key id of its own: image tags derive from the model and the key id, so the cold run really builds.
KEY_ID = f"bench-{secrets.token_hex(4)}"
# Local Python bases, in order of preference: the demo's, then the tests' (both made with debootstrap).
PYTHON_BASES = ("edge-deploy/python-base:bookworm-minbase", "edge-deploy-tests/debian-python:bookworm-minbase")
USER_LAYER_CACHE = Path.home() / ".cache" / "edge-deploy-tests" / "runtime-layers"


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    record: DeploymentRecord
    cache_answers: dict[str, str]  # task name -> "hit" | "miss", from flytekit's log


def python_base(mode: str) -> str | None:
    """The base for the x86_64 image, or None to skip image builds (saying why)."""
    if mode == "no":
        return None
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException as exc:
        if mode == "yes":
            raise SystemExit(f"--images yes, but no Docker engine answers: {exc}") from None
        print(f"no Docker engine ({exc}): image builds skipped")
        return None
    for reference in PYTHON_BASES:
        try:
            client.images.get(reference)
            return reference
        except docker.errors.ImageNotFound:
            continue
    message = f"no local Python base ({' or '.join(PYTHON_BASES)}); `edge-deploy demo` makes one"
    if mode == "yes":
        raise SystemExit(message)
    print(message + ": image builds skipped")
    return None


def benchmark_env(root: Path) -> dict[str, str]:
    home, work, temp = root / "home", root / "work", root / "tmp"
    for directory in (home, work, temp):
        directory.mkdir(parents=True)
    USER_LAYER_CACHE.mkdir(parents=True, exist_ok=True)
    (work / "runtime-layers").symlink_to(USER_LAYER_CACHE, target_is_directory=True)
    foreign = ("EDGE_", "LAKEFS_", "MONGODB_", "REDIS_URL", "FLYTE_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(foreign)}
    env.update(
        HOME=str(home),  # Flyte's local cache: HOME/.flyte/local-cache
        TMPDIR=str(temp),
        EDGE_WORK_DIR=str(work),
        EDGE_SEAL_KEY_ID=KEY_ID,
        FLYTE_LOCAL_CACHE_ENABLED="true",
        FLYTE_SDK_LOGGING_LEVEL="20",  # flytekit logs each cache check, hit and miss at INFO
        FLYTE_SDK_RICH_TRACEBACKS="0",  # one JSON object per log line
    )
    env[key_env_var(KEY_ID)] = base64.b64encode(secrets.token_bytes(32)).decode()
    return env


def write_sample(name: str, dest: Path, env: dict[str, str]) -> None:
    cli = Path(sys.executable).with_name("edge-deploy")
    subprocess.run([str(cli), "sample", name, str(dest)], env=env, check=True, capture_output=True)


def warm_runtime_layer(base: str | None, work_dir: Path) -> None:
    if base is None:
        return
    from edge_deploy.images.context import prepare_runtime_layer
    from edge_deploy.platforms import detect_targets

    (target,) = detect_targets([TARGET], "onnxruntime")
    prepare_runtime_layer(target.spec.runtime, str(target.platform), work_dir)


def cache_answers(log_text: str) -> dict[str, str]:
    """{task name: hit|miss} from flytekit's JSON log: a check names the task, the next answer is for it."""
    answers: dict[str, str] = {}
    checking = None
    for line in log_text.splitlines():
        try:
            message = json.loads(line).get("message", "")
        except (json.JSONDecodeError, AttributeError):
            continue
        if message.startswith("Checking cache for task named "):
            checking = message.split("named ", 1)[1].split(",", 1)[0].strip()
        elif checking and message in ("Cache hit", "Cache miss, task will be executed now"):
            answers[checking] = "hit" if message == "Cache hit" else "miss"
            checking = None
    return answers


def run_workflow(label: str, model_dir: Path, base: str | None, env: dict[str, str]) -> Run:
    run_env = {**env, "EDGE_RUN_ID": f"bench-{label}-{secrets.token_hex(3)}"}
    options = {"build_images": False} if base is None else {"base_images": {TARGET: base}}
    pyflyte = Path(sys.executable).with_name("pyflyte")
    command = [str(pyflyte), "run", "workflows/deploy.py", "deploy_model", "--local_dir", str(model_dir)]
    command += ["--targets", json.dumps([TARGET]), "--options", json.dumps(options)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=run_env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the {label} run failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    store = open_record_store(Settings.from_env(run_env))
    try:
        record = store.get(run_env["EDGE_RUN_ID"])
    finally:
        store.close()
    if record is None:
        raise SystemExit(f"the {label} run left no record")
    return Run(label, seconds, record, cache_answers(done.stderr + done.stdout))


def remove_images(runs: list[Run]) -> None:
    import docker
    import docker.errors

    client = docker.from_env(timeout=60)
    for reference in {image.reference for run in runs if run.record.images for image in run.record.images.platforms}:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(reference, force=True)


def image_digests(record: DeploymentRecord) -> list[str]:
    return [image.digest for image in record.images.platforms] if record.images else []


def report(cold: Run, warm: Run) -> list[str]:
    """Print the figures; return what the warm run failed to reuse (empty when it reused everything)."""
    print(f"{'run':<6}{'wall s':>9}  stage timings (s, as reported by the stages that ran)")
    for run in (cold, warm):
        stages = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in run.record.timings.items())
        print(f"{run.label:<6}{run.seconds:>9.1f}  {stages}")
    print(f"warm/cold = {warm.seconds / cold.seconds:.2f} (warm is {cold.seconds / warm.seconds:.1f}x faster)")
    for run in (cold, warm):
        answers = ", ".join(f"{task.rsplit('.', 1)[1]} {answer}" for task, answer in run.cache_answers.items())
        print(f"{run.label} flyte cache: {answers or 'no cached task was checked'}")
    problems = [
        f"{task}: no cache hit in the warm run" for task in CACHED_TASKS if warm.cache_answers.get(task) != "hit"
    ]
    problems += [f"stage {stage} ran again in the warm run" for stage in CACHED_STAGES if stage in warm.record.timings]
    if cold.record.conversion != warm.record.conversion:
        problems.append("the conversion differs between the runs")
    if cold.record.validation != warm.record.validation:
        problems.append("the validation summary differs between the runs")
    if image_digests(cold.record) != image_digests(warm.record):
        problems.append(f"image digests differ: {image_digests(cold.record)} vs {image_digests(warm.record)}")
    conversion = warm.record.conversion
    print(f"onnx sha256 cold {cold.record.conversion.onnx_sha256[:16]}  warm {conversion.onnx_sha256[:16]}")
    print(f"images cold {image_digests(cold.record) or 'none'}  warm {image_digests(warm.record) or 'none'}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="fast-scnn", help="sample model (edge-deploy sample --list)")
    parser.add_argument("--images", choices=("auto", "yes", "no"), default="auto", help="build the x86_64 image")
    parser.add_argument("--keep", action="store_true", help="keep the temporary HOME, work dir and TMPDIR")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="workflow-cache-bench-"))
    try:
        env = benchmark_env(root)
        base = python_base(args.images)
        model_dir = root / "models" / args.sample
        write_sample(args.sample, model_dir, env)
        warm_runtime_layer(base, Path(env["EDGE_WORK_DIR"]))
        print(f"sample {args.sample}; images: {'x86_64 on ' + base if base else 'not built'}; cache in a temp HOME")
        cold = run_workflow("cold", model_dir, base, env)
        warm = run_workflow("warm", model_dir, base, env)
        problems = report(cold, warm)
        if base is not None:
            remove_images([cold, warm])
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if problems:
        raise SystemExit("the warm run did not reuse everything it should:\n  " + "\n  ".join(problems))
    print("warm run reused conversion and validation")


if __name__ == "__main__":
    main()
