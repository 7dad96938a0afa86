"""The edge runtime as a process: what it imports, how it fails without a key, how it shuts down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.processes import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY_MODULES = ("torch", "mmcv", "mmdeploy", "mmengine", "flytekit", "boto3", "botocore", "docker", "yaml")


def runtime_env(model_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    return {**keep, "PYTHONPATH": str(REPO_ROOT), "EDGE_MODEL_DIR": str(model_dir), **extra}


def test_the_runtime_imports_only_numpy_onnxruntime_and_the_crypto_module(sealed_model, edge_key):
    script = (
        "import sys, json\n"
        "from edge_deploy.runtime.config import RuntimeConfig\nfrom edge_deploy.runtime.model import load_model\n"
        "from edge_deploy.runtime import server, routes\n"
        "model = load_model(RuntimeConfig.from_env())\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=runtime_env(sealed_model.model_dir, edge_key.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    top_level = set(json.loads(done.stdout))
    assert {"numpy", "onnxruntime", "edge_deploy", "cryptography"} <= top_level
    assert not top_level & set(HEAVY_MODULES), top_level & set(HEAVY_MODULES)


def test_without_a_key_the_runtime_exits_2_with_one_line_naming_the_key_id(sealed_model, edge_key):
    done = subprocess.run(
        [sys.executable, "-m", "edge_deploy.runtime"],
        env=runtime_env(sealed_model.model_dir, {}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-runtime: error: cannot open the sealed model")
    assert f"'{edge_key.key_id}'" in lines[0]


def test_sigterm_finishes_gracefully_and_the_key_never_reaches_the_log(sealed_model, edge_key, tmp_path):
    port, log_path = free_port(), tmp_path / "runtime.log"
    env = runtime_env(sealed_model.model_dir, {**edge_key.env, "EDGE_HOST": "127.0.0.1", "EDGE_PORT": str(port)})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_deploy.runtime"], env={**env, "EDGE_LOG_LEVEL": "DEBUG"}, stderr=log
        )
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok, "edge runtime", 60, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log_path.read_text()
    assert "SIGTERM: shutting down" in text and "stopped" in text
    key_text = next(iter(edge_key.env.values()))
    assert key_text not in text


def test_the_code_an_edge_image_ships_is_enough_to_serve_and_starts_from_bytecode(sealed_model, edge_key, tmp_path):
    """Only what `images.context` puts into an image is on the path: nothing else of edge_deploy, and
    every module byte-compiled (unchecked hash), since the image's user cannot write __pycache__."""
    from edge_deploy.images.context import byte_compile, copy_runtime_code

    copy_runtime_code(tmp_path / "app" / "edge_deploy")
    byte_compile(tmp_path / "app", f"{sys.version_info.major}.{sys.version_info.minor}")
    script = (
        "import sys, json, importlib.util\n"  # an editable install would find the checkout's modules: an image has none
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        "from edge_deploy.runtime.config import RuntimeConfig\nfrom edge_deploy.runtime.model import load_model\n"
        "from edge_deploy.runtime import server, dataplane\n"
        "sha = load_model(RuntimeConfig.from_env()).model_sha256\n"
        "ours = [m for name, m in sys.modules.items() if name.startswith('edge_deploy')]\n"
        "compiled = [m.__name__ for m in ours if open(m.__cached__, 'rb').read(8)[4:8] == b'\\x01\\0\\0\\0']\n"
        "print(json.dumps({'sha256': sha, 'modules': [m.__name__ for m in ours], 'compiled': compiled}))\n"
    )
    env = {**runtime_env(sealed_model.model_dir, edge_key.env), "PYTHONPATH": str(tmp_path / "app")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # as in the image
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sha256"] == sealed_model.model_sha256
    assert "edge_deploy.runtime.dataplane" in result["modules"]
    assert sorted(result["compiled"]) == sorted(result["modules"])  # flags 0b01: hash-based, source not checked


def settled_thread_count(pid: int) -> int:
    """The process's thread count once it stays the same for half a second (a request's thread may be ending)."""
    counts = [len(os.listdir(f"/proc/{pid}/task"))]
    while len(counts) < 3 or len(set(counts[-3:])) > 1:
        assert len(counts) < 60, f"the runtime's thread count did not settle in 15 s: {counts}"
        time.sleep(0.25)
        counts.append(len(os.listdir(f"/proc/{pid}/task")))
    return counts[-1]


def runtime_threads(sealed_model, edge_key, extra: dict[str, str]) -> int:
    port = free_port()
    env = runtime_env(sealed_model.model_dir, {**edge_key.env, "EDGE_HOST": "127.0.0.1", "EDGE_PORT": str(port)})
    env.pop("OPENBLAS_NUM_THREADS", None)
    process = subprocess.Popen([sys.executable, "-m", "edge_deploy.runtime"], env={**env, **extra})
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok, "edge runtime", 60, process)
        return settled_thread_count(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def test_numpy_starts_no_blas_thread_pool_in_the_runtime_unless_asked(sealed_model, edge_key):
    """The runtime makes no BLAS calls; OpenBLAS's pool of a thread per CPU only spins at start-up
    (~90 ms of CPU), so the runtime sets OPENBLAS_NUM_THREADS=1 unless the device sets it."""
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("with one CPU OpenBLAS starts no pool anyway, so there is nothing to tell apart")
    default = runtime_threads(sealed_model, edge_key, {})
    assert runtime_threads(sealed_model, edge_key, {"OPENBLAS_NUM_THREADS": "1"}) == default
    assert runtime_threads(sealed_model, edge_key, {"OPENBLAS_NUM_THREADS": "2"}) == default + 1
