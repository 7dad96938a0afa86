"""Signatures, provenance and SBOM on a registry with the OCI 1.1 referrers API: the registry indexes
them by their subject (`OCI-Subject`), no referrers tag is written, and they are found through
`GET /v2/<name>/referrers/<digest>`. The API is the tests' proxy in front of distribution 2.8
(tests.referrers_proxy): no registry that has it installs on the build machine."""

from __future__ import annotations

import json
import os

import pytest

from edge_deploy.config import RegistrySettings
from edge_deploy.images.registry import OCI_MANIFEST, RegistryClient
from edge_deploy.signing.attach import fallback_tag, sign_image
from edge_deploy.signing.attest import attach_sbom, attached_sbom, attest, verified_statements
from edge_deploy.signing.keys import SigningKey
from edge_deploy.signing.provenance import SLSA_PROVENANCE, STATEMENT_TYPE
from edge_deploy.signing.verify import SignatureError, verify_image
from tests.images.conftest import FAST_RETRIES

REPOSITORY = "referrers/model"


@pytest.fixture
def client(referrers_registry) -> RegistryClient:
    return RegistryClient(RegistrySettings(referrers_registry, None, None, True, None), FAST_RETRIES)


@pytest.fixture
def image(client) -> str:
    """A small OCI image (an empty config and one layer), pushed through the proxy; its digest."""
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(64)  # a new image for each test
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", client.put_blob(REPOSITORY, config), config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", client.put_blob(REPOSITORY, layer), layer)],
    }
    return client.put_manifest(REPOSITORY, f"t{layer.hex()[:8]}", OCI_MANIFEST, json.dumps(manifest).encode())


def descriptor(media_type: str, digest: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def test_a_signature_is_indexed_by_the_registry_and_found_through_the_api(client, image):
    key = SigningKey.generate()
    identity = client.repository_reference(REPOSITORY)
    attached = sign_image(client, REPOSITORY, image, key, identity=identity)
    assert attached.indexed_by_registry is True  # the registry said OCI-Subject
    assert client.manifest_digest(REPOSITORY, fallback_tag(image)) is None  # so no referrers tag
    listed = client.referrers(REPOSITORY, image)
    assert [entry["digest"] for entry in listed] == [attached.signature_digest]
    assert (
        verify_image(client, REPOSITORY, image, key.public, identity=identity).signature_digest
        == attached.signature_digest
    )
    with pytest.raises(SignatureError, match="not signed by this key"):
        verify_image(client, REPOSITORY, image, SigningKey.generate().public)


def test_provenance_and_sbom_are_found_through_the_api(client, image):
    key = SigningKey.generate()
    statement = json.dumps({"_type": STATEMENT_TYPE, "predicateType": SLSA_PROVENANCE, "subject": [], "predicate": {}})
    attested = attest(client, REPOSITORY, image, statement.encode(), SLSA_PROVENANCE, key)
    sbom = attach_sbom(client, REPOSITORY, image, b'{"bomFormat":"CycloneDX","specVersion":"1.6"}')
    found, rejected = verified_statements(client, REPOSITORY, image, SLSA_PROVENANCE, key.public)
    assert [item.manifest_digest for item in found] == [attested.signature_digest] and rejected == []
    assert attached_sbom(client, REPOSITORY, image) == sbom
    assert client.manifest_digest(REPOSITORY, fallback_tag(image)) is None
    artifact_types = sorted(entry["artifactType"] for entry in client.referrers(REPOSITORY, image))
    assert artifact_types == ["application/vnd.cyclonedx+json", "application/vnd.dsse.envelope.v1+json"]
