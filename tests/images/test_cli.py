"""`edge-deploy platforms` and `edge-deploy build` through the real command line group."""

from __future__ import annotations

import contextlib
import json

import docker.errors
import pytest
from click.testing import CliRunner

from edge_deploy.cli import cli
from edge_deploy.signing.keys import SigningKey
from tests.images.conftest import LAYER_CACHE


def test_platforms_lists_the_matrix_and_the_host():
    result = CliRunner().invoke(cli, ["platforms", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["host"] == "linux/amd64"
    assert {row["name"] for row in document["platforms"]} >= {"x86_64-cpu", "arm64-cpu", "jetson-orin", "armv7-cpu"}


def test_platforms_resolves_targets_and_refuses_unsupported_ones_in_one_line():
    resolved = CliRunner().invoke(cli, ["platforms", "linux/arm64", "--json"])
    assert [row["name"] for row in json.loads(resolved.output)["targets"]] == ["arm64-cpu"]
    refused = CliRunner().invoke(cli, ["platforms", "linux/arm/v7"])
    assert refused.exit_code == 2  # a target to fix, like any setting (docs/user-guide.md: exit codes)
    assert refused.output.startswith("error: target 'linux/arm/v7' (armv7-cpu, linux/arm/v7) is not supported")
    assert len(refused.output.strip().splitlines()) == 1


@pytest.mark.docker
def test_build_seals_a_plain_model_builds_and_pushes(registry, arm64_base, sealed_model, edge_key, docker_engine):
    env = {
        **edge_key.env,
        "EDGE_REGISTRY": f"{registry.host}/cli",
        "EDGE_REGISTRY_INSECURE": "true",
        "EDGE_WORK_DIR": str(LAYER_CACHE),
        "EDGE_SEAL_KEY_ID": edge_key.key_id,
    }
    argv = ["build", str(sealed_model.plaintext_path), "--name", "edge-test-conv", "--target", "linux/arm64"]
    argv += ["--repository", "conv", "--release-tag", "cli-v1", "--base-image", f"arm64-cpu={arm64_base.reference}"]
    result = CliRunner().invoke(cli, [*argv, "--validation-status", "passed", "--json"], env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    (only,) = document["targets"]
    assert (only["device_class"], only["built"], only["pushed"]) == ("arm64-cpu", True, True)
    assert only["reference"].startswith(f"{registry.host}/cli/conv:arm64-cpu-")
    assert document["index_reference"] == f"{registry.host}/cli/conv:cli-v1"
    labels = docker_engine.images.get(only["reference"]).attrs["Config"]["Labels"]
    assert labels["io.edge-deploy.model.sha256"] == sealed_model.model_sha256
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_engine.images.remove(only["reference"], force=True)


def test_a_build_beside_the_gates_report_is_signed_with_its_provenance_and_verifies(
    registry, arm64_base, sealed_model, edge_key, docker_engine, tmp_path
):
    model = tmp_path / "model" / "end2end.onnx"
    model.parent.mkdir()
    model.write_bytes(sealed_model.plaintext_path.read_bytes())
    report = {"passed": True, "shipped_sha256": sealed_model.model_sha256, "structure": {"custom_ops": []}}
    (model.parent / "validation.json").write_text(json.dumps(report))
    key = SigningKey.generate()
    (tmp_path / "release.pem").write_bytes(key.private_pem())
    (tmp_path / "release.pub").write_bytes(key.public.pem())
    env = {
        **edge_key.env,
        "EDGE_REGISTRY": f"{registry.host}/cli",
        "EDGE_REGISTRY_INSECURE": "true",
        "EDGE_WORK_DIR": str(LAYER_CACHE),
        "EDGE_SEAL_KEY_ID": edge_key.key_id,
        "EDGE_SIGNING_KEY_FILE": str(tmp_path / "release.pem"),
    }
    argv = ["build", str(model), "--name", "edge-test-conv", "--target", "linux/arm64", "--repository", "signed"]
    argv += ["--release-tag", "cli-signed", "--base-image", f"arm64-cpu={arm64_base.reference}"]
    built = CliRunner().invoke(cli, [*argv, "--validation-status", "passed", "--json"], env=env)
    assert built.exit_code == 0, built.output
    document = json.loads(built.output)
    assert set(document["attestations"]) == {document["targets"][0]["digest"]}
    verify_env = {k: v for k, v in env.items() if k != "EDGE_SIGNING_KEY_FILE"}
    verified = CliRunner().invoke(
        cli, ["verify", document["index_reference"], "--key", str(tmp_path / "release.pub"), "--json"], env=verify_env
    )
    assert verified.exit_code == 0, verified.output
    chain = json.loads(verified.output)
    [image] = chain["images"]
    states = {link["name"]: link["status"] for link in image["links"]}
    assert states == {
        "signature": "ok", "provenance": "ok", "labels": "ok", "sbom": "ok", "sealed-model": "ok",
        "validation-report": "unreached", "source-model": "unreached",
    }  # fmt: skip
    assert chain["verified"] is True and chain["index_signature"]["status"] == "ok"
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_engine.images.remove(document["targets"][0]["reference"], force=True)
