"""The built x86_64 image as a device team receives it: started with its key mounted for the image's own
user, asked about real photos on /v1/predict and compared with the OpenMMLab inference APIs (one
sample per task family); asked by tritonclient; and, for a model that needs an MMDeploy operator,
started with the operator library it carries."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import docker
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests

from edge_deploy.config import Settings
from edge_deploy.crypto import Keyring, encode_key
from edge_deploy.images.context import seal_model
from edge_deploy.images.errors import OperatorLibraryError
from edge_deploy.images.operators import operator_library
from edge_deploy.images.push import ImageProvenance, ReleaseRequest, build_and_push
from edge_deploy.platforms import PlatformMatrix, detect_targets
from edge_deploy.runtime.config import find_mmdeploy_ops_library
from edge_deploy.samples import write_shipped_config
from edge_deploy.validation.structure import custom_ops_of
from tests.fixtures.processes import free_port
from tests.images.conftest import LAYER_CACHE
from tests.runtime.photos import photos
from tests.runtime.task_answers import TASK_SAMPLES, check_answers

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DCN_CONFIG = "mmdet:dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py"


@pytest.fixture(scope="module")
def image_of(docker_engine, debian_python_base, edge_key, tmp_path_factory) -> Iterator[Callable[[Path, str], str]]:
    """`image_of(onnx_dir, name)` -> the reference of a freshly built x86_64 image of that conversion."""
    scratch = tmp_path_factory.mktemp("task-images")
    keyring = Keyring({edge_key.key_id: edge_key.key})
    built: list[str] = []

    def build(onnx_dir: Path, name: str) -> str:
        onnx_path = onnx_dir / "end2end.onnx"
        sealed = seal_model(onnx_path, keyring, edge_key.key_id, scratch / name, name)
        ops = tuple(custom_ops_of(onnx.load(str(onnx_path), load_external_data=False)))
        request = ReleaseRequest(
            model=replace(sealed, serving_dir=onnx_dir, custom_ops=ops),
            targets=detect_targets(["x86_64-cpu"], "onnxruntime"),
            repository=f"edge-tests/{name}",
            release_tag="v1",
            provenance=ImageProvenance("https://example.com/edge-deploy.git", "0" * 40, validation_status="passed"),
            base_images={"x86_64-cpu": debian_python_base.reference},
        )
        result = build_and_push(request, Settings(work_dir=LAYER_CACHE), docker_engine, push=False)
        built.append(result.targets[0].reference)
        return built[-1]

    yield build
    for reference in built:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_engine.images.remove(reference, force=True)


@contextlib.contextmanager
def started(docker_engine, reference: str, edge_key, key_dir: Path) -> Iterator[str]:
    """The image run as a device runs it, its key file mounted read-only for the image's user (uid
    10001: mode 0444 here; a Kubernetes secret volume with defaultMode 0440 and fsGroup 10001 works
    alike). Host networking, only so that the test's clients reach it on loopback."""
    key_file = key_dir / edge_key.key_id
    key_file.parent.mkdir(exist_ok=True)
    key_file.write_text(encode_key(edge_key.key))
    key_file.chmod(0o444)
    port = free_port()
    container = docker_engine.containers.run(
        reference,
        detach=True,
        network_mode="host",
        environment={"EDGE_PORT": str(port), "EDGE_HOST": "127.0.0.1"},
        volumes={str(key_file): {"bind": f"/run/secrets/edge-keys/{edge_key.key_id}", "mode": "ro"}},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-3000:]
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/readyz", timeout=2).ok:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the image did not get ready: {container.logs().decode()[-3000:]}")
        yield url
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("task", list(TASK_SAMPLES))
def test_the_image_answers_photos_like_the_openmmlab_inference_api(
    task_sample, image_of, docker_engine, edge_key, task, tmp_path
):
    sample = task_sample(TASK_SAMPLES[task])
    reference = image_of(sample.onnx_dir, TASK_SAMPLES[task])
    with started(docker_engine, reference, edge_key, tmp_path / "keys") as url:
        described = requests.get(url + "/v1/model", timeout=10).json()
        assert described["task"] == task and described["classes"]
        assert check_answers(task, url, sample.source) > 0


def test_tritonclient_infers_on_the_image(task_sample, image_of, docker_engine, edge_key, tmp_path):
    import tritonclient.http as triton

    sample = task_sample("resnet18")
    with started(docker_engine, image_of(sample.onnx_dir, "resnet18"), edge_key, tmp_path / "keys") as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_ready() and client.is_model_ready("model")
        batch = np.random.default_rng(3).standard_normal((2, 3, 224, 224)).astype(np.float32)
        tensor = triton.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        result = client.infer("model", [tensor]).as_numpy("output")
    session = ort.InferenceSession(str(sample.onnx_dir / "end2end.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(result, session.run(None, {"input": batch})[0], rtol=1e-5, atol=1e-6)


def test_a_model_with_an_mmdeploy_operator_ships_its_library_and_starts(image_of, docker_engine, edge_key, tmp_path):
    from edge_deploy.conversion import convert, load_model_dir

    onnx_dir = tmp_path / "dcn-onnx"
    convert(load_model_dir(write_shipped_config(DCN_CONFIG, tmp_path / "dcn")), onnx_dir)
    ops = custom_ops_of(onnx.load(str(onnx_dir / "end2end.onnx"), load_external_data=False))
    assert "mmdeploy::MMCVModulatedDeformConv2d" in ops
    reference = image_of(onnx_dir, "dcn")
    with started(docker_engine, reference, edge_key, tmp_path / "keys") as url:
        described = requests.get(url + "/v1/model", timeout=10).json()
        answer = requests.post(url + "/v1/predict", data=photos()["coffee"], headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 200 and isinstance(answer.json()["detections"], list), answer.text
        batch = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
        infer = requests.post(
            url + "/v2/models/model/infer",
            json={
                "inputs": [
                    {"name": "input", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}
                ]
            },
            timeout=120,
        )
        assert infer.status_code == 200, infer.text
    assert described["operator_libraries"] == ["ops/libmmdeploy_onnxruntime_ops.so"]
    # the same answer as ONNX Runtime on the build host with MMDeploy's library
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(find_mmdeploy_ops_library()))
    session = ort.InferenceSession(str(onnx_dir / "end2end.onnx"), options, providers=["CPUExecutionProvider"])
    expected = dict(zip(["dets", "labels"], session.run(None, {"input": batch}), strict=True))
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in infer.json()["outputs"]}
    np.testing.assert_allclose(outputs["dets"], expected["dets"], rtol=1e-4, atol=1e-3)


def test_a_platform_without_the_operator_library_is_refused_naming_the_operator(tmp_path):
    arm64 = PlatformMatrix.load().platforms["arm64-cpu"]
    with pytest.raises(
        OperatorLibraryError, match=r"MMCVModulatedDeformConv2d.*no wheel \(and so no library\) for linux/arm64"
    ):
        operator_library(("mmdeploy::MMCVModulatedDeformConv2d",), arm64.runtime, "linux/arm64/v8", tmp_path)
