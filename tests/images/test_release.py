"""The edge images for real: built on the engine, run with --network none, pushed, indexed, pulled."""

from __future__ import annotations

import io
import json
import tarfile

import docker
import numpy as np
import onnxruntime as ort
import pytest

from edge_deploy.crypto import encode_key
from edge_deploy.images.push import build_and_push
from tests.images.conftest import FAST_RETRIES
from tests.runtime.onnx_models import INPUT_NAME, INPUT_SHAPE

pytestmark = pytest.mark.docker

# Runs inside the container (it has python3 and, through PYTHONPATH, numpy): one JSON and one npz
# request to the runtime on the container's loopback, answers printed as JSON.
CLIENT = r"""
import io, json, sys, time, urllib.request
import numpy as np
batch = np.array(json.loads(sys.argv[1]), dtype=np.float32)
def post(body, ctype):
    request = urllib.request.Request("http://127.0.0.1:8080/v1/infer", data=body, headers={"Content-Type": ctype})
    return urllib.request.urlopen(request, timeout=30).read()
for _ in range(300):
    try:
        urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=2); break
    except Exception:
        time.sleep(0.1)
as_json = json.loads(post(json.dumps({"inputs": {"images": batch.tolist()}}).encode(), "application/json"))
buffer = io.BytesIO(); np.savez(buffer, images=batch)
as_npz = np.load(io.BytesIO(post(buffer.getvalue(), "application/x-npz")))
meta = json.loads(urllib.request.urlopen("http://127.0.0.1:8080/v1/model").read())
print(json.dumps({"json": {k: v["data"] for k, v in as_json["outputs"].items()},
                  "npz": {k: as_npz[k].tolist() for k in as_npz.files}, "meta": meta}))
"""


def target(release, name):
    return next(t for t in release.result.targets if t.device_class == name)


def host_outputs(sealed_model, batch):
    session = ort.InferenceSession(str(sealed_model.plaintext_path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {INPUT_NAME: batch}), strict=True))


def test_x86_64_image_serves_the_model_like_onnxruntime_on_the_host(
    release, docker_engine, sealed_model, edge_key, tmp_path
):
    x86 = target(release, "x86_64-cpu")
    key_file = tmp_path / "keys" / edge_key.key_id
    key_file.parent.mkdir()
    key_file.write_text(encode_key(edge_key.key))
    key_file.chmod(0o444)  # the image runs as uid 10001 (a Kubernetes secret volume sets defaultMode alike)
    container = docker_engine.containers.run(
        x86.reference,
        detach=True,
        network_mode="none",
        volumes={str(key_file): {"bind": f"/run/secrets/edge-keys/{edge_key.key_id}", "mode": "ro"}},
    )
    try:
        batch = np.random.default_rng(5).standard_normal((2, *INPUT_SHAPE)).astype(np.float32)
        exit_code, output = container.exec_run(["python3", "-c", CLIENT, json.dumps(batch.tolist())])
        assert exit_code == 0, output.decode()[-2000:] + container.logs().decode()[-2000:]
        answer = json.loads(output)
        for name, expected in host_outputs(sealed_model, batch).items():
            np.testing.assert_array_equal(np.array(answer["json"][name], dtype=np.float32), expected)
            np.testing.assert_array_equal(np.array(answer["npz"][name], dtype=np.float32), expected)
        assert answer["meta"]["model_sha256"] == sealed_model.model_sha256
        assert answer["meta"]["providers"] == ["CPUExecutionProvider"]
        container.stop(timeout=20)  # SIGTERM: graceful shutdown, exit 0
        assert container.wait(timeout=30)["StatusCode"] == 0
        assert edge_key.env[next(iter(edge_key.env))] not in container.logs().decode()
    finally:
        container.remove(force=True)


def test_image_config_runs_as_non_root_and_carries_the_labels(release, docker_engine, sealed_model):
    config = docker_engine.images.get(target(release, "x86_64-cpu").reference).attrs["Config"]
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    assert labels["io.edge-deploy.model.sha256"] == sealed_model.model_sha256
    assert labels["io.edge-deploy.lakefs.repository"] == "models"
    assert labels["io.edge-deploy.lakefs.commit"] == "c0ffee"
    assert labels["io.edge-deploy.validation.status"] == "passed"
    assert labels["io.edge-deploy.platform"] == "linux/amd64"
    assert labels["org.opencontainers.image.revision"] == release.request.provenance.revision
    assert labels["org.opencontainers.image.source"] == release.request.provenance.source
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_without_the_key_the_container_exits_with_one_clear_line(release, docker_engine, edge_key):
    container = docker_engine.containers.run(target(release, "x86_64-cpu").reference, detach=True, network_mode="none")
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        lines = container.logs().decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("edge-runtime: error: cannot open the sealed model")
        assert f"key id '{edge_key.key_id}'" in lines[0]
    finally:
        container.remove(force=True)


def test_pull_by_platform_gets_the_image_of_that_architecture(release, docker_engine):
    index = release.result.index_reference
    assert release.result.index_digest and release.result.index_digest.startswith("sha256:")
    for platform, architecture in (("linux/arm64", "arm64"), ("linux/amd64", "amd64")):
        pulled = docker_engine.images.pull(index, platform=platform)
        assert pulled.attrs["Architecture"] == architecture
        expected = target(release, "arm64-cpu" if architecture == "arm64" else "x86_64-cpu")
        assert any(digest.endswith(expected.digest) for digest in pulled.attrs["RepoDigests"])
        docker_engine.images.remove(index)


def test_results_are_typed_per_target(release):
    by_name = {t.device_class: t for t in release.result.targets}
    assert set(by_name) == {"x86_64-cpu", "arm64-cpu"}
    assert by_name["arm64-cpu"].platform == "linux/arm64/v8" and by_name["arm64-cpu"].build_mode == "cross"
    assert by_name["x86_64-cpu"].build_mode == "native"
    for result in by_name.values():
        assert (
            result.digest.startswith("sha256:") and result.size > 30_000_000
        )  # compressed; the ONNX Runtime layer alone is ~50 MB
        assert result.reference.split(":")[-1].startswith(result.device_class + "-")


def test_a_second_build_of_unchanged_inputs_pushes_nothing(release, docker_engine):
    for result in release.result.targets:  # nothing local to reuse: a build would have to happen
        docker_engine.images.remove(result.reference)
    again = build_and_push(release.request, release.settings, docker_engine, retry_policy=FAST_RETRIES)
    assert [(t.digest, t.built, t.pushed) for t in again.targets] == [
        (t.digest, False, False) for t in release.result.targets
    ]
    assert (again.index_digest, again.index_pushed) == (release.result.index_digest, False)
    for result in again.targets:
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(result.reference)
        docker_engine.images.pull(result.reference)  # the registry still has it: leave the engine as we found it


def test_no_layer_of_any_image_holds_the_plaintext_model_or_the_key(release, docker_engine, sealed_model, edge_key):
    secrets = {
        "plaintext model": sealed_model.plaintext_path.read_bytes(),
        "model weights": sealed_model.weights,
        "key (raw)": edge_key.key,
        "key (base64)": encode_key(edge_key.key).encode(),
    }
    for result in release.result.targets:
        image = docker_engine.images.get(result.reference)
        archive = b"".join(image.save(named=False))
        files_seen = 0
        with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
            for member in outer.getmembers():
                if not member.isfile():
                    continue
                data = outer.extractfile(member).read()
                _assert_free_of(secrets, data, f"{result.reference}: {member.name}")
                if tarfile.is_tarfile(io.BytesIO(data)):
                    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                        for entry in layer.getmembers():
                            if entry.isfile():
                                files_seen += 1
                                content = layer.extractfile(entry).read()
                                _assert_free_of(secrets, content, f"{result.reference}: {member.name}: {entry.name}")
        assert files_seen > 1000  # the scan did open the layers (the ONNX Runtime layer alone has thousands)


def _assert_free_of(secrets: dict[str, bytes], data: bytes, where: str) -> None:
    for what, secret in secrets.items():
        assert secret not in data, f"{where} contains the {what}"
