"""The edge runtime's HTTP API, in-process, against ONNX Runtime on the host."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from edge_deploy.runtime import model as model_module
from edge_deploy.runtime.model import ModelLoadError, load_model
from tests.runtime.conftest import MAX_BODY_BYTES, runtime_config
from tests.runtime.onnx_models import INPUT_NAME, INPUT_SHAPE


def host_outputs(sealed_model, batch: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(sealed_model.plaintext_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {INPUT_NAME: batch}), strict=True))


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def sample(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, *INPUT_SHAPE)).astype(np.float32)


def test_health_readiness_and_metadata(runtime_url, sealed_model):
    assert requests.get(f"{runtime_url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{runtime_url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["model_sha256"] == sealed_model.model_sha256
    meta = requests.get(f"{runtime_url}/v1/model", timeout=5).json()
    assert meta["model_sha256"] == sealed_model.model_sha256
    assert meta["inputs"] == [{"name": INPUT_NAME, "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    assert [o["name"] for o in meta["outputs"]] == ["features", "scores"]
    assert meta["providers"] == ["CPUExecutionProvider"]


def test_json_inference_equals_onnxruntime_on_the_host(runtime_url, sealed_model):
    batch = sample(3)
    response = requests.post(f"{runtime_url}/v1/infer", json={"inputs": {INPUT_NAME: batch.tolist()}}, timeout=10)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    for name, expected in host_outputs(sealed_model, batch).items():
        assert outputs[name]["shape"] == list(expected.shape) and outputs[name]["dtype"] == "float32"
        np.testing.assert_array_equal(np.array(outputs[name]["data"], dtype=np.float32), expected)


@pytest.mark.parametrize("content_type", ["application/x-npz", "application/x-npy"])
def test_binary_inference_equals_onnxruntime_on_the_host(runtime_url, sealed_model, content_type):
    batch = sample(1)
    if content_type == "application/x-npz":
        body = npz_bytes(**{INPUT_NAME: batch})
    else:
        buffer = io.BytesIO()
        np.save(buffer, batch)
        body = buffer.getvalue()
    response = requests.post(f"{runtime_url}/v1/infer", data=body, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-npz"
    with np.load(io.BytesIO(response.content), allow_pickle=False) as outputs:
        for name, expected in host_outputs(sealed_model, batch).items():
            np.testing.assert_array_equal(outputs[name], expected)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"inputs": {"pixels": [[0.0]]}}, "unknown input 'pixels'; the model's inputs are images"),
        ({"inputs": {}}, "missing input(s) images"),
        ({"inputs": {INPUT_NAME: np.zeros((1, 3, 4, 8)).tolist()}}, "dimension 2 must be 8"),
        ({"inputs": {INPUT_NAME: np.zeros((3, 8, 8)).tolist()}}, "has 3 dimensions"),
        ({"inputs": {INPUT_NAME: [[1.0, 2.0], [3.0]]}}, "ragged"),
        ({"inputs": {INPUT_NAME: [["a"]]}}, "numbers only"),
        ({"images": []}, 'expected a JSON object {"inputs"'),
    ],
)
def test_bad_json_requests_get_400_with_a_reason(runtime_url, body, reason):
    response = requests.post(f"{runtime_url}/v1/infer", json=body, timeout=10)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_binary_input_of_the_wrong_dtype_is_refused(runtime_url):
    body = npz_bytes(**{INPUT_NAME: sample(1).astype(np.float64)})
    response = requests.post(
        f"{runtime_url}/v1/infer", data=body, headers={"Content-Type": "application/x-npz"}, timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"] == "input 'images': dtype float64, the model takes float32"


def test_malformed_bodies_and_methods_get_4xx(runtime_url):
    post = lambda data, ctype: requests.post(  # noqa: E731
        f"{runtime_url}/v1/infer", data=data, headers={"Content-Type": ctype}, timeout=10
    )
    assert post(b"{not json", "application/json").status_code == 400
    assert "not a readable .npz" in post(b"garbage", "application/x-npz").json()["error"]
    assert post(b"1,2,3", "text/csv").status_code == 415
    too_large = post(b"0" * (MAX_BODY_BYTES + 1), "application/json")
    assert too_large.status_code == 413 and "EDGE_MAX_BODY_BYTES" in too_large.json()["error"]
    assert requests.get(f"{runtime_url}/v1/infer", timeout=5).status_code == 405
    assert requests.get(f"{runtime_url}/v2/nothing", timeout=5).status_code == 404


def test_missing_gpu_provider_falls_back_to_cpu_with_one_warning(sealed_model, edge_key, caplog):
    env = {**edge_key.env, "EDGE_PROVIDERS": "CUDAExecutionProvider,CPUExecutionProvider"}
    with caplog.at_level(logging.WARNING, logger="edge_deploy.runtime"):
        model = load_model(runtime_config(sealed_model.model_dir, env))
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "CUDAExecutionProvider" in warnings[0].getMessage()


def test_without_the_key_loading_names_the_key_id_and_never_a_key(sealed_model, edge_key):
    with pytest.raises(ModelLoadError) as failure:
        load_model(runtime_config(sealed_model.model_dir, {}))
    message = str(failure.value)
    assert f"key id '{edge_key.key_id}'" in message and "EDGE_KEY_DIR" in message


def test_a_key_file_in_the_key_directory_opens_the_model(sealed_model, edge_key, tmp_path):
    (tmp_path / edge_key.key_id).write_text(edge_key.env[next(iter(edge_key.env))])
    model = load_model(runtime_config(sealed_model.model_dir, {"EDGE_KEY_DIR": str(tmp_path)}))
    assert model.model_sha256 == sealed_model.model_sha256


def test_a_model_that_does_not_match_its_recorded_sha256_is_refused(sealed_model, edge_key, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx.enc").write_bytes((sealed_model.model_dir / "model.onnx.enc").read_bytes())
    metadata = json.loads((sealed_model.model_dir / "model.json").read_text())
    (model_dir / "model.json").write_text(json.dumps({**metadata, "model_sha256": "0" * 64}))
    with pytest.raises(ModelLoadError, match=r"does not match model\.json"):
        load_model(runtime_config(model_dir, edge_key.env))


def open_memory_files() -> list[str]:
    """The memfd files this process holds open (/proc/self/fd links read `/memfd:NAME (deleted)`)."""
    fds = Path("/proc/self/fd")
    return [link for link in (os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()) if "memfd:" in link]


def test_the_plaintext_lives_in_one_memory_file_that_is_gone_once_the_session_exists(
    sealed_model, edge_key, monkeypatch
):
    opened: list[object] = []
    real_session = model_module.ort.InferenceSession

    def session_on(source, *args, **kwargs):
        opened.append((source, open_memory_files()))
        return real_session(source, *args, **kwargs)

    monkeypatch.setattr(model_module.ort, "InferenceSession", session_on)
    before = open_memory_files()
    model = load_model(runtime_config(sealed_model.model_dir, edge_key.env))

    [(source, memory_files)] = opened
    assert isinstance(source, str) and source.startswith("/proc/self/fd/")  # a path, never a bytes copy
    assert any("edge-model" in name for name in memory_files)
    assert open_memory_files() == before  # released: only ONNX Runtime's own copy of the weights stays
    assert model.model_sha256 == sealed_model.model_sha256


def test_without_memfd_the_model_loads_from_bytes(sealed_model, edge_key, monkeypatch):
    monkeypatch.setattr(model_module, "_MEMFD_PATHS", False)
    model = load_model(runtime_config(sealed_model.model_dir, edge_key.env))
    assert model.model_sha256 == sealed_model.model_sha256
    assert model.run({"images": np.zeros((1, 3, 8, 8), np.float32)})["scores"].shape == (1, 4)


def test_a_malformed_setting_the_runtime_does_not_use_cannot_stop_it(sealed_model, edge_key):
    env = {**edge_key.env, "MONGODB_URI": "localhost:27017", "REDIS_URL": "not a url", "EDGE_REGISTRY": "https://x"}
    assert load_model(runtime_config(sealed_model.model_dir, env)).model_sha256 == sealed_model.model_sha256
