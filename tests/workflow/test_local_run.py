"""The whole workflow on the embedded default: a local model directory, no servers at all."""

import json
from pathlib import Path

import onnx
import pytest
from flytekit.types.directory import FlyteDirectory

from edge_deploy.config import Settings
from edge_deploy.crypto import Keyring, decrypt_file_to_bytes
from edge_deploy.records import open_record_store
from edge_deploy.status import PROCESS_STATUS
from edge_deploy.validation.report import ValidationSettings
from tasks.options import DeployOptions
from tests.workflow.conftest import EDGE_KEY
from workflows.deploy import deploy_model

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def stored_record(run_id):
    store = open_record_store(Settings.from_env())
    try:
        return store.get(run_id)
    finally:
        store.close()


def test_local_model_converts_validates_seals_builds_and_records(
    workflow_env, sample_model_dir, debian_python_base, docker_engine
):
    model = sample_model_dir("fast-scnn")
    options = DeployOptions(base_images={"x86_64-cpu": debian_python_base.reference})

    record = deploy_model(local_dir=FlyteDirectory(str(model)), targets=["x86_64-cpu"], options=options)

    assert record.run_id == workflow_env and record.status.state == "succeeded"
    assert record.validation.passed and record.conversion.deploy_profile
    (image,) = record.images.platforms
    assert image.platform == "linux/amd64"
    built = docker_engine.images.get(image.reference)
    assert built.id == image.digest and built.labels["io.edge-deploy.model.sha256"]
    assert stored_record(record.run_id) == record  # the embedded store holds exactly what was returned
    artifacts = Path(Settings.from_env().work_dir) / "runs" / record.run_id / "edge"
    published = json.loads((artifacts / "record.json").read_text())
    assert published["run_id"] == record.run_id and published["status"]["state"] == "succeeded"
    assert json.loads((artifacts / "validation.json").read_text())["passed"] is True
    stages = [e.stage for e in PROCESS_STATUS.events(record.run_id) if e.kind == "stage-finished"]
    assert stages[:3] == ["download", "decrypt", "convert"] and stages[-1] == "record"
    assert {"validate", "platforms", "encrypt", "build", "publish"} <= set(stages)
    docker_engine.images.remove(image.reference, force=True)


def test_a_failing_gate_records_the_failure_and_publishes_nothing(workflow_env, sample_model_dir):
    model = sample_model_dir("fast-scnn")
    # No tolerance at all: ONNX Runtime and PyTorch differ by ~1e-6 on Fast-SCNN's logits.
    strict = DeployOptions(build_images=False, validation=ValidationSettings(atol=0.0, rtol=0.0, optimize=False))

    with pytest.raises(Exception, match="max abs error"):
        deploy_model(local_dir=FlyteDirectory(str(model)), targets=["x86_64-cpu"], options=strict)

    record = stored_record(workflow_env)
    assert record.status.state == "failed" and record.status.failed_stage == "validate"
    assert "max abs error" in record.status.error
    assert record.images is None and record.published is None
    assert not (Path(Settings.from_env().work_dir) / "runs" / workflow_env / "edge").exists()
    assert PROCESS_STATUS.events(workflow_env)[-1].kind == "run-failed"


def test_the_sealed_model_in_the_artifacts_only_when_the_source_was_encrypted(workflow_env, sample_model_dir, tmp_path):
    from edge_deploy.crypto import encrypt_file

    model = tmp_path / "encrypted-model"
    source = sample_model_dir("fast-scnn")
    model.mkdir()
    keyring = Keyring({"edge-test": EDGE_KEY})
    for path in source.iterdir():
        if path.suffix == ".pth":
            encrypt_file(path, model / (path.name + ".enc"), keyring, "edge-test")
        else:
            (model / path.name).write_bytes(path.read_bytes())

    record = deploy_model(
        local_dir=FlyteDirectory(str(model)), targets=["x86_64-cpu"], options=DeployOptions(build_images=False)
    )

    artifacts = Path(Settings.from_env().work_dir) / "runs" / record.run_id / "edge"
    # the shipped model is end2end.onnx, or end2end.optimized.onnx when the gate kept an optimized copy
    assert list(artifacts.glob("*.onnx")) == []
    (sealed,) = artifacts.glob("*.onnx.enc")
    assert onnx.load_from_string(decrypt_file_to_bytes(sealed, keyring)).graph.output  # a model, with the key
    assert record.status.state == "succeeded" and record.images is None
