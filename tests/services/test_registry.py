"""The registry fixtures are real distribution v2 registries: the HTTP API answers, TLS and basic auth are
enforced, and the Docker engine pushes to both with a manifest digest the registry confirms."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

import docker
import pytest
import requests
from docker.models.images import Image

from tests.fixtures.registry import AuthRegistry, Registry

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def push(client: docker.DockerClient, repository: str, tag: str, auth_config: dict | None = None) -> str:
    """Push through the engine and return the manifest digest it reports; an error event fails the push."""
    digest = None
    for event in client.images.push(repository, tag=tag, auth_config=auth_config, stream=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"push of {repository}:{tag} failed: {event['error']}")
        digest = event.get("aux", {}).get("Digest", digest)
    if digest is None:
        raise RuntimeError(f"push of {repository}:{tag} reported no digest")
    return digest


def unique_name() -> str:
    return f"edge-deploy-tests/tiny-{secrets.token_hex(4)}"


def test_plain_registry_answers_the_v2_api(registry: Registry):
    response = requests.get(f"{registry.url}/v2/", timeout=5)

    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.url == f"http://{registry.host}"


def test_tls_registry_lists_its_catalog_to_the_right_credentials(registry_tls_auth: AuthRegistry):
    response = requests.get(
        f"{registry_tls_auth.url}/v2/_catalog",
        auth=(registry_tls_auth.username, registry_tls_auth.password),
        verify=str(registry_tls_auth.ca_cert),
        timeout=5,
    )

    assert response.status_code == 200
    assert isinstance(response.json()["repositories"], list)


def test_tls_registry_rejects_a_wrong_password(registry_tls_auth: AuthRegistry):
    response = requests.get(
        f"{registry_tls_auth.url}/v2/_catalog",
        auth=(registry_tls_auth.username, "not-the-password"),
        verify=str(registry_tls_auth.ca_cert),
        timeout=5,
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_tls_registry_certificate_is_trusted_only_through_its_ca(registry_tls_auth: AuthRegistry):
    # verify=True means the default bundle, which does not hold the fixture's CA.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{registry_tls_auth.url}/v2/", verify=True, timeout=5)


def upload_blob(registry: Registry, name: str, content: bytes) -> str:
    """A monolithic blob upload through the v2 API (POST, then PUT with the digest); returns the digest."""
    digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
    started = requests.post(f"{registry.url}/v2/{name}/blobs/uploads/", timeout=5)
    assert started.status_code == 202, started.text
    location = requests.compat.urljoin(f"{registry.url}/", started.headers["Location"])
    finished = requests.put(location, params={"digest": digest}, data=content, timeout=5)
    assert finished.status_code == 201, finished.text
    return digest


def test_stopped_registry_refuses_connections_and_keeps_its_blobs(registry: Registry):
    name = unique_name()
    digest = upload_blob(registry, name, b"an artifact that must survive a registry restart")

    with registry.stopped(), pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{registry.url}/v2/", timeout=5)

    assert requests.head(f"{registry.url}/v2/{name}/blobs/{digest}", timeout=5).status_code == 200


@pytest.mark.docker
def test_engine_pushes_to_the_plain_registry_with_a_digest_it_confirms(
    registry: Registry, docker_engine: docker.DockerClient, make_scratch_image: Callable[[str], Image]
):
    name = unique_name()
    image = make_scratch_image(f"{name}:build")
    image.tag(f"{registry.host}/{name}", tag="v1")

    digest = push(docker_engine, f"{registry.host}/{name}", "v1")

    response = requests.get(f"{registry.url}/v2/{name}/manifests/v1", headers={"Accept": MANIFEST_TYPES}, timeout=5)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest
    assert f"sha256:{hashlib.sha256(response.content).hexdigest()}" == digest
    tags = requests.get(f"{registry.url}/v2/{name}/tags/list", timeout=5).json()
    assert tags == {"name": name, "tags": ["v1"]}


@pytest.mark.docker
def test_engine_pushes_to_the_tls_registry_only_with_credentials(
    registry_tls_auth: AuthRegistry, docker_engine: docker.DockerClient, make_scratch_image: Callable[[str], Image]
):
    name = unique_name()
    repository = f"{registry_tls_auth.host}/{name}"
    make_scratch_image(f"{name}:build").tag(repository, tag="v1")

    with pytest.raises(RuntimeError, match="no basic auth credentials"):
        push(docker_engine, repository, "v1")
    with pytest.raises(RuntimeError, match="authentication required"):
        push(docker_engine, repository, "v1", auth_config={"username": registry_tls_auth.username, "password": "no"})
    digest = push(docker_engine, repository, "v1", auth_config=registry_tls_auth.auth_config)

    response = requests.get(
        f"{registry_tls_auth.url}/v2/{name}/manifests/v1",
        headers={"Accept": MANIFEST_TYPES},
        auth=(registry_tls_auth.username, registry_tls_auth.password),
        verify=str(registry_tls_auth.ca_cert),
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest
    assert f"sha256:{hashlib.sha256(response.content).hexdigest()}" == digest
