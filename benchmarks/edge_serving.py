"""What the edge runtime's HTTP layer and task pipeline cost, beside the same work in process.

    .venv/bin/python benchmarks/edge_serving.py [--samples resnet18 rtmdet-tiny] [--requests 200] [--dir D]

For each sample (written and converted here, in a temp directory), the runtime runs as a developer
runs it (`edge-deploy runtime DIR`, its own process, HTTP/1.1) and the same model is opened in this
process. Timed per request, after a warm-up, the runs interleaved:
  (a) ORT     `session.run` in this process on the preprocessed tensor;
  (b) OIP     Open Inference Protocol binary infer of that tensor over one keep-alive connection;
  (c) predict `/v1/predict` with the JPEG, over one keep-alive connection;
  (d) local   the same decode, preprocess, infer and postprocess in this process, without HTTP.
Each step runs in blocks, the four in turn for 5 rounds, after a warm-up; one request runs at a time,
so the runtime's process and this one never compete for the CPU. Prints p50 and p90 of each, the
ratios b/a and c/d at p50 (targets <= 1.10), and the throughput of 4 concurrent clients on
/v1/predict against 4 threads doing (d) in this process (target >= 0.9x).

Startup-to-ready against ONNX Runtime's session creation is benchmarks/edge_runtime_ready.py
(`--size-mib 47` for a classifier-sized model, 1024 for a large one); the image sizes per platform
are printed by `--layers` (the runtime layer with and without Pillow, as pip installs it for each
platform).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 5
PAUSE_SECONDS = 0.3
sys.path.insert(0, str(REPO))  # run from a checkout, installed or not


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f}"


class Client:
    """One keep-alive HTTP/1.1 connection, as a device client keeps it."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        self.connection.request("POST", path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:300]!r}")
        return data


def oip_binary(name: str, tensor) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [{"name": name, "shape": list(tensor.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": tensor.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()  # fmt: skip
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + tensor.tobytes(), headers


def measure(name: str, work: Path, requests: int) -> dict:
    import requests as http

    from edge_deploy.conversion import convert, load_model_dir
    from edge_deploy.runtime.codecs.images import decode_frame
    from edge_deploy.runtime.config import RuntimeConfig
    from edge_deploy.runtime.dataplane import DataPlane, PredictOptions
    from edge_deploy.runtime.model import load_model
    from edge_deploy.samples import write_sample
    from tests.fixtures.processes import free_port, running
    from tests.runtime.photos import photos

    write_sample(name, work / name)
    convert(load_model_dir(work / name), work / f"{name}-onnx")
    config = RuntimeConfig.from_env({"EDGE_MODEL_DIR": str(work / f"{name}-onnx")})
    plane = DataPlane.open(config, load_model(config))
    photo = photos()["astronaut"]
    tensor = plane.serving.preprocess(decode_frame(photo, "image/jpeg", 10**8)).tensor
    input_name = plane.serving.input_name
    options = PredictOptions()

    def in_process_predict() -> None:
        plane.predict(decode_frame(photo, "image/jpeg", 10**8), options)

    port = free_port()
    argv = [sys.executable, "-m", "edge_deploy.cli", "runtime", str(work / f"{name}-onnx"), "--port", str(port)]
    ready = lambda: http.get(f"http://127.0.0.1:{port}/readyz").ok  # noqa: E731
    with running(argv, "edge-deploy runtime", ready, work / f"{name}.log"):
        client = Client(port)
        body, headers = oip_binary(input_name, tensor)
        steps = {
            "a ORT session.run": lambda: plane.model.session.run(None, {input_name: tensor}),
            "b OIP binary/HTTP": lambda: client.post("/v2/models/model/infer", body, headers),
            "c /v1/predict JPEG": lambda: client.post("/v1/predict", photo, {"Content-Type": "image/jpeg"}),
            "d predict in process": in_process_predict,
        }
        times: dict[str, list[float]] = {key: [] for key in steps}
        for step in steps.values():  # warm-up
            for _ in range(10):
                step()
        # blocks of each step in turn, not single requests interleaved: ONNX Runtime's threads spin
        # for a while after a run, and would take the CPU from the other process's next request
        block = max(10, requests // ROUNDS)
        for _ in range(ROUNDS):
            for key, step in steps.items():
                time.sleep(PAUSE_SECONDS)
                for _ in range(block):
                    started = time.perf_counter()
                    step()
                    times[key].append(time.perf_counter() - started)
        throughput = concurrency(port, photo, in_process_predict, max(40, requests // 2))
    summary = {key: (statistics.median(v), percentile(v, 0.9)) for key, v in times.items()}
    return {"sample": name, "input": list(tensor.shape), "steps": summary, **throughput}


def concurrency(port: int, photo: bytes, in_process, count: int, workers: int = 4) -> dict:
    def http_worker() -> None:
        client = Client(port)
        for _ in range(count):
            client.post("/v1/predict", photo, {"Content-Type": "image/jpeg"})

    def local_worker() -> None:
        for _ in range(count):
            in_process()

    rates = {}
    for label, worker in (("http", http_worker), ("local", local_worker)):
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(worker) for _ in range(workers)]:
                future.result()
        rates[label] = workers * count / (time.perf_counter() - started)
    return {"http_rps": rates["http"], "local_rps": rates["local"]}


def layer_sizes(work: Path) -> list[tuple[str, str, float, float]]:
    """(device class, platform, MiB without Pillow, MiB with) of the runtime layer pip installs."""
    from dataclasses import replace

    from edge_deploy.errors import EdgeDeployError
    from edge_deploy.images.context import prepare_runtime_layer
    from edge_deploy.platforms import PlatformMatrix

    rows = []
    for name, spec in PlatformMatrix.load().platforms.items():
        if not spec.supported:
            continue
        with_pillow = spec.runtime
        without = replace(with_pillow, packages=tuple(p for p in with_pillow.packages if not p.startswith("pillow")))
        try:
            sizes = [prepare_runtime_layer(r, str(spec.platform), work).size / 2**20 for r in (without, with_pillow)]
        except EdgeDeployError as exc:  # wheels this machine cannot fetch (an index it does not reach)
            print(f"  {name}: not measured here: {str(exc)[:160]}")
            continue
        rows.append((name, str(spec.platform), *sizes))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", nargs="+", default=["resnet18", "rtmdet-tiny"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--layers", action="store_true", help="also print the runtime layer per platform")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp directory, deleted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-serving-") as temp:
        work = args.dir or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        print(f"edge serving, {cpu} CPUs, {args.requests} requests per step after 10 warm-up rounds\n")
        for name in args.samples:
            result = measure(name, work, args.requests)
            steps = result["steps"]
            print(f"{result['sample']} (input {result['input']}):")
            for key, (p50, p90) in steps.items():
                print(f"  {key:<22} p50 {ms(p50)} ms   p90 {ms(p90)} ms")
            b_a = steps["b OIP binary/HTTP"][0] / steps["a ORT session.run"][0]
            c_d = steps["c /v1/predict JPEG"][0] / steps["d predict in process"][0]
            ratio = result["http_rps"] / result["local_rps"]
            print(f"  b/a at p50 {b_a:.3f} (target <= 1.10)   c/d at p50 {c_d:.3f} (target <= 1.10)")
            print(f"  4 clients on /v1/predict {result['http_rps']:.1f} req/s, 4 threads in process "
                  f"{result['local_rps']:.1f}/s: {ratio:.2f}x (target >= 0.9)\n")  # fmt: skip
        if args.layers:
            print("runtime layer per platform (MiB installed): without Pillow -> with")
            for name, platform, before, after in layer_sizes(work / "layers"):
                print(f"  {name:<14} {platform:<16} {before:7.1f} -> {after:7.1f} (+{after - before:.1f})")


if __name__ == "__main__":
    main()
