"""Attach a signature to an image in its registry, as an OCI 1.1 referrer.

A registry with the referrers API indexes the signature by its `subject` when it is pushed (it says so
with `OCI-Subject`). For one without (distribution 2.x, older registries), the OCI 1.1 fallback is
kept by the signer: an image index under the tag `sha256-<hex of the signed digest>` that lists every
referrer, read, extended and written back. Two signers writing that tag at the same moment can lose
one entry; the signature itself stays in the registry and is found again by the next signing.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

from edge_deploy.images.registry import OCI_INDEX, RegistryClient
from edge_deploy.signing.cosign import (
    EMPTY_CONFIG,
    OCI_MANIFEST,
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT,
    SIMPLE_SIGNING,
    artifact_manifest,
    descriptor,
    simple_signing_payload,
)
from edge_deploy.signing.keys import Signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttachedSignature:
    image_digest: str  # what was signed (or what the artifact is about)
    signature_digest: str  # the manifest that carries the signature (or the artifact)
    indexed_by_registry: bool  # False: the referrers tag fallback was written


def fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag of `digest` (sha256:abc... -> sha256-abc...)."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}"


def sign_image(
    client: RegistryClient, repository: str, digest: str, key: Signer, *, identity: str
) -> AttachedSignature:
    """Sign the manifest `digest` in `repository` (an image or an index) and attach the signature.
    `identity` is the repository as the payload names it (host/path, no tag)."""
    payload = simple_signing_payload(identity, digest)
    signature_b64 = base64.b64encode(key.sign(payload)).decode()
    attached = attach_referrer(
        client, repository, digest, SIGNATURE_ARTIFACT, SIMPLE_SIGNING, payload, {SIGNATURE_ANNOTATION: signature_b64}
    )
    log.info("signed %s@%s (signature %s)", identity, digest, attached.signature_digest)
    return attached


def attach_referrer(
    client: RegistryClient,
    repository: str,
    digest: str,
    artifact_type: str,
    media_type: str,
    data: bytes,
    annotations: dict[str, str] | None = None,
) -> AttachedSignature:
    """Push `data` as the one layer of an OCI 1.1 artifact of `artifact_type` whose subject is the
    manifest `digest`, and list it under the referrers tag when the registry does not index it."""
    subject = client.get_manifest(repository, digest)
    client.put_blob(repository, EMPTY_CONFIG)
    client.put_blob(repository, data)
    layer = descriptor(media_type, data, annotations=annotations) if annotations else descriptor(media_type, data)
    body = artifact_manifest(artifact_type, descriptor(subject.media_type, subject.body), layer)
    manifest_digest, indexed = client.put_manifest_with_subject(repository, OCI_MANIFEST, body)
    if not indexed:
        _add_to_referrers_tag(client, repository, digest, descriptor(OCI_MANIFEST, body, artifactType=artifact_type))
    return AttachedSignature(digest, manifest_digest, indexed)


def _add_to_referrers_tag(client: RegistryClient, repository: str, digest: str, entry: dict) -> None:
    tag = fallback_tag(digest)
    manifests = referrers_from_tag(client, repository, digest) or []
    if any(item.get("digest") == entry["digest"] for item in manifests):
        return
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*manifests, entry]}
    client.put_manifest(repository, tag, OCI_INDEX, json.dumps(index, separators=(",", ":")).encode())


def referrers_from_tag(client: RegistryClient, repository: str, digest: str) -> list[dict] | None:
    """The descriptors listed under the referrers tag of `digest`, or None when there is no such tag."""
    tag = fallback_tag(digest)
    if client.manifest_digest(repository, tag) is None:
        return None
    return list(json.loads(client.get_manifest(repository, tag).body).get("manifests") or [])
