"""Failures of the image stage, each against the real thing: an engine that is not there, a base that
is missing or for another platform, a registry with auth refusing a wrong password, a stopped
registry, and a build that fails halfway (which must leave nothing behind)."""

from __future__ import annotations

import hashlib

import pytest

from edge_deploy.config import RegistrySettings, Secret
from edge_deploy.images import build as engine
from edge_deploy.images.context import DOCKERFILE
from edge_deploy.images.errors import (
    BaseImageMissingError,
    BuildError,
    EngineUnavailableError,
    RegistryAuthError,
    RegistryUnavailableError,
)
from edge_deploy.images.push import build_and_push, push_image
from edge_deploy.images.registry import IndexEntry, RegistryClient, index_body
from edge_deploy.platforms import OciPlatform
from tests.images.conftest import FAST_RETRIES, registry_settings, release_request

pytestmark = pytest.mark.docker


def test_an_unreachable_engine_says_how_to_set_docker_host(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(EngineUnavailableError) as failure:
        engine.engine_client()
    assert f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in str(failure.value)
    assert "DOCKER_HOST=" in str(failure.value)


def test_a_missing_base_image_is_named_with_its_platform(docker_engine):
    with pytest.raises(BaseImageMissingError) as failure:
        engine.resolve_base(docker_engine, "edge-deploy-tests/no-such-base:1", OciPlatform.parse("linux/arm64"))
    message = str(failure.value)
    assert message.startswith("base image edge-deploy-tests/no-such-base:1 for linux/arm64/v8 is not in the Docker")


def test_a_base_of_another_architecture_is_refused(docker_engine, arm64_base):
    with pytest.raises(BaseImageMissingError, match="is linux/arm64/v8, but the target platform is linux/amd64"):
        engine.resolve_base(docker_engine, arm64_base.reference, OciPlatform.parse("linux/amd64"))


def test_a_wrong_registry_password_fails_before_any_build_and_never_shows_the_password(
    docker_engine, registry_tls_auth, debian_python_base, sealed_model
):
    wrong = "wrong-" + registry_tls_auth.password
    settings = registry_settings(
        registry_tls_auth.host,
        registry_insecure=False,
        registry_ca_bundle=registry_tls_auth.ca_cert,
        registry_username=registry_tls_auth.username,
        registry_password=wrong,
    )
    request = release_request(sealed_model, {"x86_64-cpu": debian_python_base})
    images_before = {image.id for image in docker_engine.images.list(all=True)}
    with pytest.raises(RegistryAuthError) as failure:
        build_and_push(request, settings, docker_engine, retry_policy=FAST_RETRIES)
    message = str(failure.value)
    assert f"refused the credentials of user '{registry_tls_auth.username}'" in message
    assert wrong not in message and registry_tls_auth.password not in message
    assert {image.id for image in docker_engine.images.list(all=True)} == images_before


def test_the_right_password_pushes_over_tls_and_an_engine_push_with_a_wrong_one_is_refused(
    docker_engine, registry_tls_auth, make_scratch_image
):
    good = RegistrySettings(
        registry_tls_auth.host,
        registry_tls_auth.username,
        Secret(registry_tls_auth.password),
        insecure=False,
        ca_bundle=registry_tls_auth.ca_cert,
    )
    reference = f"{registry_tls_auth.host}/edge-tests/scratch:auth"
    make_scratch_image(reference)
    digest = push_image(docker_engine, reference, good, FAST_RETRIES)
    client = RegistryClient(good, FAST_RETRIES)
    assert client.manifest_digest("edge-tests/scratch", "auth") == digest
    manifest = client.get_manifest("edge-tests/scratch", digest)
    entry = IndexEntry(manifest.media_type, digest, len(manifest.body), {"architecture": "amd64", "os": "linux"})
    index_digest, pushed = client.put_index("edge-tests/scratch", "release", [entry])
    assert pushed and client.manifest_digest("edge-tests/scratch", "release") == index_digest
    assert index_digest == "sha256:" + hashlib.sha256(index_body([entry])[1]).hexdigest()

    bad = RegistrySettings(good.server, good.username, Secret("not-the-password"), False, good.ca_bundle)
    with pytest.raises(RegistryAuthError) as failure:
        push_image(docker_engine, reference, bad, FAST_RETRIES)
    assert "not-the-password" not in str(failure.value)


def test_a_stopped_registry_fails_after_bounded_retries_before_any_build(
    docker_engine, registry, debian_python_base, sealed_model
):
    request = release_request(sealed_model, {"x86_64-cpu": debian_python_base}, release_tag="down")
    with registry.stopped(), pytest.raises(RegistryUnavailableError) as failure:
        build_and_push(request, registry_settings(registry.host), docker_engine, retry_policy=FAST_RETRIES)
    message = str(failure.value)
    assert f"registry {registry.host} is unavailable" in message and "gave up after 3 attempts" in message


def test_a_failed_build_leaves_no_image_and_no_tag(docker_engine, debian_python_base, sealed_model, tmp_path):
    failing = tmp_path / "Dockerfile"
    failing.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "RUN exit 3\nUSER 10001:10001"))
    request = release_request(sealed_model, {"x86_64-cpu": debian_python_base}, dockerfile=failing)
    images_before = {image.id for image in docker_engine.images.list(all=True)}
    with pytest.raises(BuildError, match="returned a non-zero code: 3"):
        build_and_push(request, registry_settings("unused.invalid"), docker_engine, push=False)
    assert {image.id for image in docker_engine.images.list(all=True)} == images_before
    assert not docker_engine.images.list(name="edge/edge-tests/conv")
