"""The acceptance stage on built images: a good image is accepted on x86_64 (natively) and on arm64
(under qemu-user, on a real Debian arm64 userland), labelled after acceptance and pushed; a broken one
(its runtime told the wrong normalization) fails at `accept`, naming the target and the difference,
and nothing of it is pushed or kept."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from flytekit.types.directory import FlyteDirectory

from edge_deploy.acceptance.accept import AcceptanceFailed
from edge_deploy.cli import cli
from edge_deploy.config import Secret, Settings
from edge_deploy.conversion import load_model_dir
from edge_deploy.crypto import Keyring, encode_key
from edge_deploy.images.context import seal_model
from edge_deploy.images.push import AcceptanceInputs, ImageProvenance, ReleaseRequest, build_and_push
from edge_deploy.platforms import detect_targets
from edge_deploy.records.assemble import image_set
from edge_deploy.signing.blob import sign_file
from edge_deploy.signing.keys import SigningKey
from edge_deploy.validation.gate import validate
from edge_deploy.validation.report import ValidationSettings
from tests.fixtures.processes import require_binary
from tests.images.conftest import FAST_RETRIES, LAYER_CACHE, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NO_SPEED = ValidationSettings(samples=1, warmup_runs=0, timed_runs=1, optimize=False)


@pytest.fixture(scope="module")
def classifier(task_sample, tmp_path_factory):
    """resnet18 converted, with the gate's photo reference (the built-in photos, mmpretrain's answers)."""
    sample = task_sample("resnet18")
    out = tmp_path_factory.mktemp("acceptance-reference")
    report = validate(load_model_dir(sample.source), sample.onnx_dir, out_dir=out, settings=NO_SPEED)
    summary = report.photos
    assert summary.unavailable is None and len(summary.photos) == 2
    return sample, out / summary.directory


def request_for(onnx_dir: Path, reference_dir: Path, edge_key, bases: dict, out: Path, repository: str):
    keyring = Keyring({edge_key.key_id: edge_key.key})
    sealed = seal_model(onnx_dir / "end2end.onnx", keyring, edge_key.key_id, out, "resnet18")
    return ReleaseRequest(
        model=replace(sealed, serving_dir=onnx_dir),
        targets=detect_targets(list(bases), "onnxruntime"),
        repository=repository,
        release_tag="v1",
        provenance=ImageProvenance("https://example.com/edge-deploy.git", "0" * 40, validation_status="passed"),
        base_images={name: base.reference for name, base in bases.items()},
        acceptance=AcceptanceInputs(reference_dir, {edge_key.key_id: Secret(encode_key(edge_key.key))}, out),
    )


def tags(registry, repository: str) -> list[str]:
    answer = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=10)
    return [] if answer.status_code == 404 else answer.json().get("tags") or []


def test_the_sample_is_accepted_on_x86_64_and_emulated_arm64_then_labelled_and_pushed(
    classifier, docker_engine, registry, debian_python_base, arm64_python_base, edge_key, tmp_path
):
    sample, reference_dir = classifier
    bases = {"x86_64-cpu": debian_python_base, "arm64-cpu": arm64_python_base}
    request = request_for(sample.onnx_dir, reference_dir, edge_key, bases, tmp_path, "accept/good")
    result = build_and_push(request, registry_settings(registry.host), docker_engine, retry_policy=FAST_RETRIES)

    x86, arm = result.targets
    for target, mode, photos in ((x86, "native", 2), (arm, "emulated", 1)):
        acceptance = target.acceptance
        assert acceptance is not None and acceptance.status == "accepted", acceptance
        assert acceptance.mode == mode and acceptance.photos == photos and acceptance.compared == 5 * photos
        assert all(agreement.passed for agreement in acceptance.agreements)
        # each photo's tensor through /v2 infer, raw outputs within the gate's tolerances
        assert len(acceptance.tensor_agreements) == photos and all(a.passed for a in acceptance.tensor_agreements)
        assert acceptance.open_inference_protocol and acceptance.startup_s > 0 and acceptance.p50_ms > 0
        assert acceptance.image_bytes > 100 * 2**20
        assert target.pushed and target.digest
        labels = docker_engine.images.get(target.image_id).labels
        assert labels["io.edge-deploy.validation.status"] == "passed"
        assert labels["io.edge-deploy.acceptance.status"] == "accepted"
        assert labels["io.edge-deploy.acceptance.photos"] == str(photos)
        # the tests' base images are overrides outside any allow-list: each image says so, as must a
        # production image built on an unvetted base
        base = bases[target.device_class].reference
        assert labels["io.edge-deploy.policy.loosened"].startswith(f"base_images.{target.device_class}={base} (")
        assert target.loosened == [labels["io.edge-deploy.policy.loosened"]]
    assert result.index_digest and "v1" in tags(registry, "accept/good")  # the index, over both
    # the record keeps each verdict beside its digest
    recorded = {image.platform: image.acceptance for image in image_set(result).platforms}
    assert recorded["linux/amd64"].status == recorded["linux/arm64/v8"].status == "accepted"
    assert recorded["linux/arm64/v8"].mode == "emulated" and recorded["linux/arm64/v8"].photos == 1
    for target in (x86, arm):
        docker_engine.images.remove(target.reference, force=True)
    # the page: each photo with PyTorch's answer and the image's side by side, as a browser shows it
    page = tmp_path / "acceptance-x86_64-cpu.html"
    text = page.read_text()
    assert text.count("<img") == 4 and text.count("<figcaption>PyTorch (the OpenMMLab API)") == 2
    assert rendered_share(page, tmp_path) > 0.3  # most of the page is photos, not broken-image icons


def rendered_share(page: Path, scratch: Path) -> float:
    """Debian's headless Chromium screenshots the page; the share of its pixels that are not
    (near) white, i.e. drawn photos: broken images would leave their alt text on white."""
    from PIL import Image

    chromium = require_binary("chromium", "apt-get install chromium (Debian's)")
    shot = scratch / "page.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={scratch / 'chromium'}", f"--screenshot={shot}", "--window-size=1000,900"]
    subprocess.run([chromium, *flags, page.as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    return float((pixels.min(axis=2) < 235).mean())


def test_an_image_with_the_wrong_normalization_fails_acceptance_and_nothing_is_pushed(
    classifier, docker_engine, registry, debian_python_base, edge_key, tmp_path
):
    sample, reference_dir = classifier
    broken = tmp_path / "onnx"
    shutil.copytree(sample.onnx_dir, broken)
    serving = json.loads((broken / "serving.json").read_text())
    serving["normalization"]["mean"] = [0.0, 0.0, 0.0]  # the runtime preprocesses unlike the model's pipeline
    (broken / "serving.json").write_text(json.dumps(serving))
    bases = {"x86_64-cpu": debian_python_base}
    request = request_for(broken, reference_dir, edge_key, bases, tmp_path / "sealed", "accept/broken")
    images_before = {image.id for image in docker_engine.images.list(all=True)}

    with pytest.raises(AcceptanceFailed) as failed:
        build_and_push(request, registry_settings(registry.host), docker_engine, retry_policy=FAST_RETRIES)

    message = str(failed.value)
    assert message.startswith("target x86_64-cpu (linux/amd64) failed acceptance: photo ")
    assert "PyTorch's" in message  # the difference, in the task's terms
    assert failed.value.stage == "accept"
    assert tags(registry, "accept/broken") == []  # neither the image nor an index
    made = [docker_engine.images.get(i) for i in {i.id for i in docker_engine.images.list(all=True)} - images_before]
    ours = [image for image in made if image.labels.get("io.edge-deploy.content-digest") and not image.tags]
    assert ours == []  # the failed candidate is gone
    assert not any("accept/broken" in tag for image in made for tag in image.tags)  # and nothing was tagged
    page = (tmp_path / "sealed" / "acceptance-x86_64-cpu.html").read_text()
    assert "failed" in page and page.count("<img") == 4  # the page shows what differed


def test_the_cli_runs_a_validated_model_s_image_as_a_device_before_it_is_released(
    classifier, docker_engine, debian_python_base, edge_key, tmp_path
):
    sample, reference_dir = classifier
    validated = tmp_path / "validated"  # what `edge-deploy validate ONNX_DIR` leaves: the ONNX, its photos
    shutil.copytree(sample.onnx_dir, validated)
    shutil.copytree(reference_dir, validated / reference_dir.name)
    env = {**edge_key.env, "EDGE_WORK_DIR": str(LAYER_CACHE), "EDGE_SEAL_KEY_ID": edge_key.key_id}
    argv = ["build", str(validated / "end2end.onnx"), "--name", "resnet18", "--target", "x86_64-cpu"]
    argv += ["--repository", "accept/cli", "--release-tag", "v1", "--no-push"]
    argv += ["--base-image", f"x86_64-cpu={debian_python_base.reference}", "--validation-status", "passed"]

    result = CliRunner().invoke(cli, argv, env=env)

    assert result.exit_code == 0, result.output
    assert "acceptance accepted: 2 photos answered as PyTorch did" in result.output
    assert (validated / "acceptance-x86_64-cpu.html").is_file()
    reference = result.output.split()[4]  # the image's reference, from the build line
    assert docker_engine.images.get(reference).labels["io.edge-deploy.acceptance.status"] == "accepted"
    docker_engine.images.remove(reference, force=True)


def test_a_build_task_whose_image_fails_acceptance_fails_the_run_at_accept_naming_the_target(
    classifier, docker_engine, registry, debian_python_base, edge_key, tmp_path, monkeypatch
):
    """The Flyte tasks as the workflow chains them: seal_model, then build_image with a runtime told the
    wrong normalization, then the workflow's failure handler: the record says `accept` and names the target."""
    from edge_deploy.records import open_record_store
    from edge_deploy.status import PROCESS_STATUS
    from edge_deploy.storage.results import describe_local_directory
    from edge_deploy.validation.report import ValidationReport
    from tasks.images import build_image
    from tasks.record import record_failure
    from tasks.seal import seal_model as seal_task

    sample, reference_dir = classifier
    run_id = f"accept-{tmp_path.name[-12:]}"
    for name in ("MONGODB_URI", "REDIS_URL", "LAKEFS_ENDPOINT", "EDGE_KEY_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**edge_key.env, "EDGE_SEAL_KEY_ID": edge_key.key_id, "EDGE_RUN_ID": run_id}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EDGE_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("EDGE_REGISTRY", registry.host)
    monkeypatch.setenv("EDGE_REGISTRY_INSECURE", "true")
    monkeypatch.setenv("FLYTE_LOCAL_CACHE_ENABLED", "false")
    validated = tmp_path / "validated"
    shutil.copytree(sample.onnx_dir, validated)
    serving = json.loads((validated / "serving.json").read_text())
    serving["normalization"]["mean"] = [0.0, 0.0, 0.0]
    (validated / "serving.json").write_text(json.dumps(serving))
    report = ValidationReport.read(reference_dir.parent / "validation.json")
    sealed_model, seal, serving_dir = seal_task(model_dir=FlyteDirectory(str(validated)), file_name="end2end.onnx")
    provenance = describe_local_directory(sample.source)

    with pytest.raises(Exception, match=r"target x86_64-cpu \(linux/amd64\) failed acceptance: photo "):
        build_image(
            target="x86_64-cpu",
            sealed_model=sealed_model,
            seal=seal,
            serving=serving_dir,
            photo_reference=FlyteDirectory(str(reference_dir)),
            report=report,
            provenance=provenance,
            repository="accept/task",
            release_tag="v1",
            base_images={"x86_64-cpu": debian_python_base.reference},
        )
    record_failure(local_dir=FlyteDirectory(str(sample.source)), targets=["x86_64-cpu"])

    store = open_record_store(Settings.from_env())
    try:
        record = store.get(run_id)
    finally:
        store.close()
    assert (record.status.state, record.status.failed_stage) == ("failed", "accept")
    assert "target x86_64-cpu (linux/amd64) failed acceptance: photo " in record.status.error
    assert record.images is None and record.published is None
    assert tags(registry, "accept/task") == []  # nothing of the image reached the registry
    assert PROCESS_STATUS.events(run_id)[-1].kind == "run-failed"


def test_a_signed_model_is_run_as_a_device_that_requires_its_signature(
    classifier, docker_engine, debian_python_base, edge_key, tmp_path, monkeypatch
):
    sample, reference_dir = classifier
    release_key = SigningKey.generate()
    (tmp_path / "release.pem").write_bytes(release_key.private_pem())
    monkeypatch.setenv("EDGE_SIGNING_KEY_FILE", str(tmp_path / "release.pem"))  # seal_model signs with it
    bases = {"x86_64-cpu": debian_python_base}
    request = request_for(sample.onnx_dir, reference_dir, edge_key, bases, tmp_path / "sealed", "accept/signed")
    assert request.model.signature is not None
    settings = Settings(work_dir=LAYER_CACHE)

    accepted = build_and_push(request, settings, docker_engine, push=False).targets[0]
    assert accepted.acceptance.status == "accepted", accepted.acceptance.detail
    docker_engine.images.remove(accepted.reference, force=True)

    # the same model signed by another key: a device trusting the release key refuses to start
    sign_file(request.model.sealed_path, SigningKey.generate())
    with pytest.raises(AcceptanceFailed, match="does not verify with the key"):
        build_and_push(request, settings, docker_engine, push=False)
