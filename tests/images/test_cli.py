"""`edge-deploy platforms` and `edge-deploy build` through the real command line group."""

from __future__ import annotations

import contextlib
import json

import docker.errors
import pytest
from click.testing import CliRunner

from edge_deploy.cli import cli
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
