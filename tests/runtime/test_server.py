"""The edge runtime's HTTP API, in-process, against ONNX Runtime on the host."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from edge_deploy.crypto import read_header
from edge_deploy.errors import ConfigError
from edge_deploy.runtime import model as model_module
from edge_deploy.runtime import plaintext as plaintext_module
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


def open_links(kind: str) -> list[str]:
    """What this process's descriptors of one kind point at (`pipe:[...]`, `/memfd:NAME (deleted)`)."""
    links = (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink())
    return [link for link in links if kind in link]


@pytest.fixture
def sessions(monkeypatch):
    """Records what each InferenceSession is created from, and what that path is at that moment."""
    created: list[tuple[object, str | None]] = []
    real_session = model_module.ort.InferenceSession

    def session_on(source, *args, **kwargs):
        created.append((source, os.readlink(source) if isinstance(source, str) else None))
        return real_session(source, *args, **kwargs)

    monkeypatch.setattr(model_module.ort, "InferenceSession", session_on)
    return created


def test_with_memory_copy_the_session_reads_one_memory_file_closed_once_it_exists(sealed_model, edge_key, sessions):
    model = load_model(runtime_config(sealed_model.model_dir, {**edge_key.env, "EDGE_DECRYPT_TO": "memory-copy"}))

    [(source, target)] = sessions
    assert isinstance(source, str) and source.startswith("/proc/self/fd/")  # never a bytes copy
    assert "memfd:edge-model" in target
    assert open_links("memfd:") == []
    assert not [t for t in threading.enumerate() if t.name.startswith("edge-runtime-")]
    assert model.model_sha256 == sealed_model.model_sha256


def test_a_cpu_session_can_read_the_plaintext_through_a_pipe_and_nothing_stays_open(sealed_model, edge_key, sessions):
    before = open_links("pipe:")
    model = load_model(runtime_config(sealed_model.model_dir, {**edge_key.env, "EDGE_DECRYPT_TO": "pipe"}))

    [(source, target)] = sessions
    assert isinstance(source, str) and source.startswith("/proc/self/fd/")
    assert target.startswith("pipe:")  # no plaintext buffer: decrypted while ONNX Runtime reads
    assert open_links("pipe:") == before
    assert not [t for t in threading.enumerate() if t.name.startswith("edge-runtime-")]
    assert model.model_sha256 == sealed_model.model_sha256


def test_an_unknown_decrypt_to_setting_is_named_with_its_choices(sealed_model, edge_key):
    with pytest.raises(ConfigError, match=r"EDGE_DECRYPT_TO must be one of memory, memory-copy, pipe, got 'disk'"):
        runtime_config(sealed_model.model_dir, {**edge_key.env, "EDGE_DECRYPT_TO": "disk"})


def test_a_session_that_may_be_created_twice_reads_one_memory_file_twice(sealed_model, edge_key, sessions, monkeypatch):
    """A preferred provider that fails is retried on the CPU: the model must be readable again
    (so a memory file, even where a pipe was asked for)."""
    monkeypatch.setattr(model_module, "usable_providers", lambda _: ["NoSuchExecutionProvider", "CPUExecutionProvider"])
    with pytest.warns(UserWarning, match="NoSuchExecutionProvider"):  # ONNX Runtime's own, about the name
        model = load_model(runtime_config(sealed_model.model_dir, {**edge_key.env, "EDGE_DECRYPT_TO": "pipe"}))

    [(first, first_target), (second, second_target)] = sessions
    assert first == second and first_target == second_target and "memfd:edge-model" in first_target
    assert open_links("memfd:") == []  # closed once the session exists
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.model_sha256 == sealed_model.model_sha256


@pytest.mark.parametrize("decrypt_to", ["memory", "pipe"])
@pytest.mark.parametrize("where", ["first chunk", "last chunk"])
def test_a_tampered_chunk_stops_the_load_even_when_the_stream_parses(
    sealed_model, edge_key, tmp_path, where, decrypt_to
):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    raw = bytearray((sealed_model.model_dir / "model.onnx.enc").read_bytes())
    raw[read_header(sealed_model.model_dir / "model.onnx.enc").size + 5 if where == "first chunk" else -3] ^= 1
    (model_dir / "model.onnx.enc").write_bytes(raw)
    (model_dir / "model.json").write_text((sealed_model.model_dir / "model.json").read_text())
    with pytest.raises(ModelLoadError, match=r"chunk \d+ \(.*\) failed authentication"):
        load_model(runtime_config(model_dir, {**edge_key.env, "EDGE_DECRYPT_TO": decrypt_to}))
    assert not [t for t in threading.enumerate() if t.name.startswith("edge-runtime-")]


def test_without_proc_the_model_loads_from_bytes(sealed_model, edge_key, sessions, monkeypatch):
    monkeypatch.setattr(plaintext_module, "PROC_FD", Path("/nonexistent/proc/self/fd"))
    model = load_model(runtime_config(sealed_model.model_dir, edge_key.env))
    [(source, _)] = sessions
    assert isinstance(source, bytes) and hashlib.sha256(source).hexdigest() == sealed_model.model_sha256
    assert model.run({"images": np.zeros((1, 3, 8, 8), np.float32)})["scores"].shape == (1, 4)


def test_a_malformed_setting_the_runtime_does_not_use_cannot_stop_it(sealed_model, edge_key):
    env = {**edge_key.env, "MONGODB_URI": "localhost:27017", "REDIS_URL": "not a url", "EDGE_REGISTRY": "https://x"}
    assert load_model(runtime_config(sealed_model.model_dir, env)).model_sha256 == sealed_model.model_sha256
