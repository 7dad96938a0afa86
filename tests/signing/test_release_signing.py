"""A release's images and its multi-platform index are signed when EDGE_SIGNING_KEY(_FILE) is set: once,
however often the release step runs, and not at all without a key."""

from __future__ import annotations

import json

import pytest

from edge_deploy.config import RegistrySettings, Settings
from edge_deploy.images.push import TargetResult, push_index
from edge_deploy.images.registry import RegistryClient
from edge_deploy.signing.attach import fallback_tag
from edge_deploy.signing.keys import SigningKey
from edge_deploy.signing.verify import verify_image
from tests.images.conftest import FAST_RETRIES

pytestmark = pytest.mark.docker

REPOSITORY = "signed/model"


@pytest.fixture
def targets(registry, docker_engine, make_scratch_image) -> list[TargetResult]:
    client = RegistryClient(RegistrySettings(registry.host, None, None, True, None), FAST_RETRIES)
    results = []
    for device_class, platform in (("x86_64-cpu", "linux/amd64"), ("arm64-cpu", "linux/arm64")):
        reference = f"{registry.host}/{REPOSITORY}:{device_class}"
        make_scratch_image(reference)
        for line in docker_engine.images.push(reference, stream=True, decode=True):
            assert "error" not in line, line
        digest = client.manifest_digest(REPOSITORY, device_class)
        results.append(TargetResult(device_class, platform, reference, digest, 0, built=True, pushed=True))
    return results


def settings_for(registry, tmp_path, key: SigningKey | None) -> Settings:
    env = {"EDGE_REGISTRY": registry.host, "EDGE_REGISTRY_INSECURE": "true", "EDGE_WORK_DIR": str(tmp_path)}
    if key is not None:  # a mounted key file, as Kubernetes gives it
        (tmp_path / "signing.pem").write_bytes(key.private_pem())
        env["EDGE_SIGNING_KEY_FILE"] = str(tmp_path / "signing.pem")
    return Settings.from_env(env)


def test_every_image_and_the_index_are_signed_once(registry, targets, tmp_path):
    key = SigningKey.generate()
    settings = settings_for(registry, tmp_path, key)
    release = push_index(REPOSITORY, "v1", targets, settings, retry_policy=FAST_RETRIES)
    client = RegistryClient(settings.require_registry(), FAST_RETRIES)
    signed = [*(t.digest for t in targets), release.index_digest]
    assert set(release.signatures) == set(signed)
    identity = f"{registry.host}/{REPOSITORY}"
    for digest in signed:
        verified = verify_image(client, REPOSITORY, digest, key.public, identity=identity)
        assert verified.signature_digest == release.signatures[digest]
    again = push_index(REPOSITORY, "v1", targets, settings, retry_policy=FAST_RETRIES)  # a retried task
    assert again.signatures == release.signatures
    for digest in signed:
        assert len(json.loads(client.get_manifest(REPOSITORY, fallback_tag(digest)).body)["manifests"]) == 1


def test_without_a_key_nothing_is_signed(registry, targets, tmp_path):
    settings = settings_for(registry, tmp_path, None)
    release = push_index(REPOSITORY, "v2", targets, settings, retry_policy=FAST_RETRIES)
    assert release.signatures == {}
    client = RegistryClient(settings.require_registry(), FAST_RETRIES)
    assert client.manifest_digest(REPOSITORY, fallback_tag(release.index_digest)) is None
