"""The runtime with the clients device teams already have: tritonclient (Triton, KServe, MLServer and
OpenVINO Model Server users), curl, and requests; and what bad requests cost a running runtime."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from tests.fixtures.processes import free_port, running
from tests.runtime.onnx_models import INPUT_NAME, INPUT_SHAPE
from tests.runtime.photos import photos

MODEL_NAME = "edge-test"


@pytest.fixture(scope="module")
def triton_url(sealed_model, edge_key, tmp_path_factory):
    """The runtime as the image runs it (`python -m edge_deploy.runtime`), in its own process."""
    port = free_port()
    env = {
        **edge_key.env,
        "EDGE_MODEL_DIR": str(sealed_model.model_dir),
        "EDGE_HOST": "127.0.0.1",
        "EDGE_PORT": str(port),
        "EDGE_MODEL_NAME": MODEL_NAME,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    url = f"127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("triton") / "runtime.log"
    with running(
        [sys.executable, "-m", "edge_deploy.runtime"],
        "edge runtime",
        lambda: requests.get(f"http://{url}/readyz").ok,
        log,
        env,
    ):
        yield url


def host_scores(sealed_model, batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(sealed_model.plaintext_path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {INPUT_NAME: batch}), strict=True))


def test_tritonclient_sees_a_ready_server_and_the_models_metadata(triton_url):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(triton_url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(MODEL_NAME)
    assert metadata["inputs"] == [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *INPUT_SHAPE]}]
    assert [o["name"] for o in metadata["outputs"]] == ["features", "scores"]
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infers_with_binary_and_with_json_tensors(triton_url, sealed_model, binary):
    import tritonclient.http as triton

    batch = np.random.default_rng(7).standard_normal((3, *INPUT_SHAPE)).astype(np.float32)
    client = triton.InferenceServerClient(triton_url)
    tensor = triton.InferInput(INPUT_NAME, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("scores", "features")]
    result = client.infer(MODEL_NAME, [tensor], outputs=outputs, request_id="r-1")
    expected = host_scores(sealed_model, batch)
    assert result.get_response()["id"] == "r-1"
    for name in ("scores", "features"):
        np.testing.assert_allclose(result.as_numpy(name), expected[name], rtol=1e-6, atol=1e-6)
    # no outputs named: tritonclient asks for every output in binary
    everything = client.infer(MODEL_NAME, [tensor])
    np.testing.assert_allclose(everything.as_numpy("features"), expected["features"], rtol=1e-6, atol=1e-6)


def test_tritonclient_gets_the_servers_reason_for_a_bad_request(triton_url):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(triton_url)
    tensor = triton.InferInput(INPUT_NAME, [1, 3, 4, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 4, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="dimension 2 must be 8"):
        client.infer(MODEL_NAME, [tensor])
    assert client.is_server_ready()


def test_curl_posts_a_photo_and_gets_named_classes(converted_sample, tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is not installed (apt-get install curl)"
    onnx_dir = converted_sample("resnet18").out_dir
    port = free_port()
    argv = [sys.executable, "-m", "edge_deploy.cli", "runtime", str(onnx_dir), "--port", str(port)]
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photos()["chelsea"])
    ready = lambda: requests.get(f"http://127.0.0.1:{port}/readyz").ok  # noqa: E731
    with running(argv, "edge-deploy runtime", ready, tmp_path / "runtime.log"):
        done = subprocess.run(
            [curl, "-sS", "--fail-with-body", "-H", "Content-Type: image/jpeg", "--data-binary", f"@{photo}",
             f"http://127.0.0.1:{port}/v1/predict?top_k=3"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["task"] == "classification" and answer["image"] == {"width": 451, "height": 300}
    assert len(answer["classes"]) == 3 and all(isinstance(c["name"], str) and c["name"] for c in answer["classes"])
    assert [c["score"] for c in answer["classes"]] == sorted((c["score"] for c in answer["classes"]), reverse=True)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npz_bomb(inflated: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("input.npy", "w") as member:
        member.write(npy_header((1, 3, 224, 224)))
        for _ in range(inflated >> 20):
            member.write(bytes(1 << 20))
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def nan_npy() -> bytes:
    array = np.zeros((1, 3, 224, 224), dtype=np.float32)
    array[0, 1, 2, 3] = np.nan
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def oip_binary_request(stated: int) -> tuple[dict[str, str], bytes]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 3, 224, 224],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": stated},
                }
            ]
        }
    ).encode()
    return {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }, header + bytes(stated)


NPY, NPZ, JSON = ({"Content-Type": t} for t in ("application/x-npy", "application/x-npz", "application/json"))
JPEG, PNG = {"Content-Type": "image/jpeg"}, {"Content-Type": "image/png"}
# (what, path, headers, body (None: a 1 GiB npz bomb, made when used), status, words in the reason)
BAD_REQUESTS = [
    ("npy header claiming 3 TiB", "/v1/infer", NPY, npy_header((1, 3, 1 << 19, 1 << 19)) + bytes(64), 400,
     "dimension 2 must be 224"),
    ("npz inflating 1 MiB to 1 GiB", "/v1/infer", NPZ, None, 413, "unpacks to"),
    ("NaN in a binary tensor", "/v1/infer", NPY, nan_npy(), 400, "NaN or infinite"),
    ("NaN in JSON", "/v1/infer", JSON, b'{"inputs": {"input": NaN}}', 400, "JSON has no NaN"),
    ("JSON with too many numbers", "/v1/infer", JSON, b'{"inputs": {"input": [' + b"0," * 5_000_000 + b"0]}}", 413,
     "EDGE_MAX_JSON_ELEMENTS"),
    ("a body over the limit", "/v1/infer", NPY, bytes(65 << 20), 413, "EDGE_MAX_BODY_BYTES"),
    ("a corrupt JPEG", "/v1/predict", JPEG, photos()["chelsea"][:3000], 400, "corrupt or truncated"),
    ("a PNG claiming 100000x100000", "/v1/predict", PNG, png_claiming(100_000, 100_000), 413, "EDGE_MAX_IMAGE_PIXELS"),
    ("a GIF", "/v1/predict", JPEG, b"GIF89a" + bytes(100), 400, "not a JPEG, PNG or WebP"),
    ("text to the photo endpoint", "/v1/predict", {"Content-Type": "text/plain"}, b"hello", 415, "not a photo"),
    ("an unknown query", "/v1/predict?threshold=1", JPEG, photos()["chelsea"], 400, "unknown query parameter"),
    ("OIP binary of a wrong size", "/v2/models/model/infer", *oip_binary_request(12), 400, "binary_data_size 12"),
    ("an unknown model", "/v2/models/other/infer", JSON, b"{}", 404, "no model 'other'"),
]  # fmt: skip


def test_every_bad_request_gets_its_4xx_costs_no_more_than_its_size_and_the_next_request_is_answered(
    converted_sample, tmp_path
):
    onnx_dir = converted_sample("resnet18").out_dir
    model_mb = (onnx_dir / "end2end.onnx").stat().st_size / 2**20
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "edge_deploy.cli", "runtime", str(onnx_dir), "--port", str(port)]
    env = {"EDGE_BODY_TIMEOUT_S": "1"}
    with running(
        argv, "edge-deploy runtime", lambda: requests.get(url + "/readyz").ok, tmp_path / "r.log", env
    ) as proc:
        process = psutil.Process(proc.pid)

        def good() -> requests.Response:
            return requests.post(url + "/v1/predict", data=photos()["chelsea"], headers=JPEG, timeout=60)

        assert good().status_code == 200
        settled = process.memory_info().rss / 2**20
        peak = settled
        for what, path, headers, body, status, words in BAD_REQUESTS:
            body = npz_bomb(1 << 30) if body is None else body
            response = requests.post(url + path, data=body, headers=headers, timeout=60)
            assert response.status_code == status, (what, response.status_code, response.text)
            assert words in response.json()["error"], (what, response.json())
            peak = max(peak, process.memory_info().rss / 2**20)
            assert good().status_code == 200, what
        # a body that stops arriving: 408, and the server goes on
        with __import__("socket").create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\nContent-Length: 99\r\n\r\n1"
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 408 ")
        assert good().status_code == 200
    # the largest body accepted is 64 MiB (EDGE_MAX_BODY_BYTES) and one is read at a time here
    bound = 64 + 80
    assert peak - settled < bound, (
        f"RSS grew {peak - settled:.0f} MiB over {settled:.0f} MiB (model {model_mb:.0f} MiB)"
    )
    print(f"RSS {settled:.0f} MiB after a photo, peak {peak:.0f} MiB through the refusals (model {model_mb:.0f} MiB)")
