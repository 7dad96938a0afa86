"""The edge runtime's time to ready for a sealed model, beside ONNX Runtime on the plain model.

    .venv/bin/python benchmarks/edge_runtime_ready.py [--size-mib 1024] [--repeat 5] [--dir D]

Makes an ONNX model of about --size-mib of weights (one MatMul with a square float32 initializer,
seeded), seals it as an edge image holds it (model.onnx.enc + model.json), lays out the runtime's
code as an image does (the files `images.context` copies, byte-compiled), then, in rounds, each
in new processes:
  runtime   `python -m edge_deploy.runtime` from process start until GET /readyz answers 200:
            interpreter, imports, keys, decrypt into memory, sha256 check, session, HTTP server;
            once as it runs by default (EDGE_DECRYPT_TO=memory: a memory file whose weights ONNX
            Runtime takes in place), once with EDGE_DECRYPT_TO=memory-copy (ONNX Runtime copies
            them), once with EDGE_DECRYPT_TO=pipe (no plaintext buffer, for devices short of
            memory), and once with EDGE_REQUIRE_SIGNED_MODEL=true (the signature checked first);
  ORT       a new interpreter that imports onnxruntime and creates a session on the plain model
            file, from process start until the session exists (what serving the model costs
            without any encryption);
  python    `python -c pass`, the interpreter's own start.
Prints the medians, the ratio runtime / ORT (target <= 1.3) and each process's peak RSS (VmHWM,
read from /proc while it runs). Memory is then taken apart in more processes that record their
RSS after their imports, their peak while loading the model and their RSS once it is loaded: the
runtime's `load_model` (in each mode) and ORT's session on the plain file. What the runtime needs
above its own baseline, minus what ORT needs above its own, is what opening a sealed model costs
(target: the model's size plus a few chunks); what it holds once loaded, minus ORT's, is what the
mode costs for as long as the runtime runs. The temp directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout, installed or not

from edge_deploy import crypto  # noqa: E402
from edge_deploy.images.context import byte_compile, copy_runtime_code  # noqa: E402
from edge_deploy.runtime.config import DECRYPT_TO  # noqa: E402
from edge_deploy.signing.blob import sign_file  # noqa: E402
from edge_deploy.signing.keys import SigningKey  # noqa: E402

MIB = 1024 * 1024
KEY_ID = "bench"

STATUS = """
def status_mib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
"""
RUNTIME_LOAD = (
    STATUS
    + """
import json
from edge_deploy.runtime import server
from edge_deploy.runtime.config import RuntimeConfig
from edge_deploy.runtime.model import load_model
baseline = status_mib("VmRSS")
model = load_model(RuntimeConfig.from_env())
print(json.dumps({"baseline_mib": baseline, "peak_rss_mib": status_mib("VmHWM"), "loaded_mib": status_mib("VmRSS")}))
"""
)
ORT_LOAD = (
    STATUS
    + """
import json, sys
import onnxruntime as ort
baseline = status_mib("VmRSS")
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(json.dumps({"baseline_mib": baseline, "peak_rss_mib": status_mib("VmHWM"), "loaded_mib": status_mib("VmRSS")}))
"""
)
ORT_SESSION = """
import sys, time
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print("ready", flush=True)
sys.stdin.read()  # stay alive until the parent has read the peak RSS
"""


def make_model(path: Path, size: int) -> None:
    side = int((size / 4) ** 0.5)
    weight = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"])],
        "edge-bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, side])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def seal(plain: Path, model_dir: Path, keyring: crypto.Keyring) -> None:
    model_dir.mkdir()
    sealed = crypto.encrypt_file(plain, model_dir / "model.onnx.enc", keyring, KEY_ID, checksums=True)
    metadata = {"name": "edge-bench", "model_sha256": sealed.plaintext_sha256, "key_id": KEY_ID}
    (model_dir / "model.json").write_text(json.dumps({**metadata, "execution_providers": ["CPUExecutionProvider"]}))


def trusting_a_signature(model_dir: Path, directory: Path, env: dict[str, str]) -> dict[str, str]:
    """Sign the sealed model (model.onnx.enc.sig) and return `env` as a device that requires it sets it."""
    signing_key = SigningKey.generate()
    sign_file(model_dir / "model.onnx.enc", signing_key)
    (directory / "trusted.pub").write_bytes(signing_key.public.pem())
    return {**env, "EDGE_REQUIRE_SIGNED_MODEL": "true", "EDGE_SIGNING_PUBLIC_KEY_FILE": str(directory / "trusted.pub")}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/PID/status (this benchmark needs Linux)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def runtime_ready(model_dir: Path, env: dict[str, str], decrypt_to: str) -> dict[str, float]:
    """Seconds from process start until GET /readyz answers 200. The runtime's "serving" log line
    says when to ask, so no polling loop competes with it for the CPU while it loads."""
    port = free_port()
    environment = {**env, "EDGE_MODEL_DIR": str(model_dir), "EDGE_HOST": "127.0.0.1", "EDGE_PORT": str(port)}
    environment["EDGE_DECRYPT_TO"] = decrypt_to
    os.sync()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_deploy.runtime"], env=environment, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in process.stderr:
            if " serving " in line:
                break
        else:
            raise SystemExit(f"the runtime exited without serving (exit status {process.wait()})")
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def ort_session(plain: Path, env: dict[str, str]) -> dict[str, float]:
    os.sync()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", ORT_SESSION, str(plain)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        if process.stdout.readline().strip() != b"ready":
            raise SystemExit("the ONNX Runtime session process failed")
        return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib(process.pid)}
    finally:
        process.communicate(b"", timeout=60)


def interpreter(env: dict[str, str]) -> dict[str, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return {"seconds": time.perf_counter() - start}


def load_memory(script: str, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """MiB a process needs to load the model (its peak), and holds once loaded, above its RSS once its
    imports are done."""
    done = subprocess.run([sys.executable, "-c", script, *argv], env=env, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    return result["peak_rss_mib"] - result["baseline_mib"], result["loaded_mib"] - result["baseline_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="weights of the model")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where the temp files go (default: the system temp directory)")
    args = parser.parse_args()
    key = crypto.generate_key()
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="runtime-bench-", dir=args.dir) as directory:
        app = Path(directory, "app")  # the runtime's code as an edge image holds it
        copy_runtime_code(app / "edge_deploy")
        byte_compile(app, f"{sys.version_info.major}.{sys.version_info.minor}")
        env = {**os.environ, "PYTHONPATH": str(app), "PYTHONDONTWRITEBYTECODE": "1"}
        env[crypto.key_env_var(KEY_ID)] = crypto.encode_key(key)
        plain, model_dir = Path(directory, "model.onnx"), Path(directory, "model")
        make_model(plain, args.size_mib * MIB)
        seal(plain, model_dir, crypto.Keyring({KEY_ID: key}))
        signed_env = trusting_a_signature(model_dir, Path(directory), env)
        size = plain.stat().st_size
        print(f"model: {size / MIB:.0f} MiB ONNX, sha256 {hashlib.sha256(plain.read_bytes()).hexdigest()[:12]}...")
        operations = {
            "edge runtime, sealed": lambda: runtime_ready(model_dir, env, "memory"),
            "  the same, memory-copy": lambda: runtime_ready(model_dir, env, "memory-copy"),
            "  the same, via a pipe": lambda: runtime_ready(model_dir, env, "pipe"),
            "  the same, signed": lambda: runtime_ready(model_dir, signed_env, "memory"),
            "ORT session, plain": lambda: ort_session(plain, env),
            "python -c pass": lambda: interpreter(env),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in operations}
        for _ in range(args.repeat):
            for name, operation in operations.items():
                runs[name].append(operation())
        runtime_env = {**env, "EDGE_MODEL_DIR": str(model_dir)}
        runtime_load = {
            mode: load_memory(RUNTIME_LOAD, [], {**runtime_env, "EDGE_DECRYPT_TO": mode}) for mode in DECRYPT_TO
        }
        ort_load, ort_loaded = load_memory(ORT_LOAD, [str(plain)], env)
    medians = {name: statistics.median(run["seconds"] for run in results) for name, results in runs.items()}
    peaks = {name: max(run.get("peak_rss_mib", 0.0) for run in results) for name, results in runs.items()}
    baseline = medians["ORT session, plain"]
    print(f"\n{args.repeat} rounds, medians (from process start):")
    header = f"  {'operation':<24} {'seconds':>8} {'vs ORT':>7} {'peak RSS MiB':>13}"
    print(header + "\n  " + "-" * (len(header) - 2))
    for name, seconds in medians.items():
        peak = f"{peaks[name]:>13.0f}" if peaks[name] else f"{'-':>13}"
        print(f"  {name:<24} {seconds:>8.2f} {seconds / baseline:>7.2f} {peak}")
    print(
        f"loading the model, RSS above the process's own baseline, at the peak and once loaded "
        f"(ORT on the plain file: {ort_load:.0f} and {ort_loaded:.0f} MiB):"
    )
    for mode, (load, loaded) in runtime_load.items():
        extra, kept = load - ort_load, loaded - ort_loaded
        print(
            f"  edge runtime, EDGE_DECRYPT_TO={mode + ':':<12} peak {load:.0f} MiB, {extra:.0f} MiB more than ORT "
            f"= {extra * MIB / size:.2f}x the model ({size / MIB:.0f} MiB); loaded {loaded:.0f} MiB, "
            f"{kept:.0f} MiB more = {kept * MIB / size:.2f}x"
        )
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; temp files deleted")


if __name__ == "__main__":
    main()
