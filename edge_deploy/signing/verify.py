"""Find an image's cosign signatures (referrers API, else the referrers tag) and check them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge_deploy.errors import EdgeDeployError
from edge_deploy.images.registry import RegistryClient
from edge_deploy.signing.attach import referrers_from_tag
from edge_deploy.signing.cosign import SIGNATURE_ANNOTATION, SIGNATURE_ARTIFACT, SIMPLE_SIGNING, SignedPayload
from edge_deploy.signing.keys import PublicKey


class SignatureError(EdgeDeployError):
    """The image has no valid signature by the key; the message says what was found instead."""


@dataclass(frozen=True)
class VerifiedSignature:
    image_digest: str
    signature_digest: str
    identity: str


@dataclass(frozen=True)
class Referrer:
    """An artifact attached to a manifest: its manifest's digest and its one layer's descriptor."""

    manifest_digest: str
    layer: dict


def referrers_of(client: RegistryClient, repository: str, digest: str, artifact_type: str) -> list[Referrer]:
    """The artifacts of `artifact_type` attached to `digest` (referrers API, else the referrers tag)
    whose manifest really names `digest` as its subject; each one's first layer."""
    listed = client.referrers(repository, digest)
    if listed is None:
        listed = referrers_from_tag(client, repository, digest) or []
    found = []
    for entry in listed:
        if entry.get("artifactType") not in (None, artifact_type):
            continue
        manifest = json.loads(client.get_manifest(repository, entry["digest"]).body)
        if manifest.get("artifactType") != artifact_type or (manifest.get("subject") or {}).get("digest") != digest:
            continue
        found += [Referrer(entry["digest"], layer) for layer in (manifest.get("layers") or [])[:1]]
    return found


def signatures(client: RegistryClient, repository: str, digest: str) -> list[SignedPayload]:
    """Every cosign signature attached to `digest` whose manifest really names it as its subject."""
    found = []
    for referrer in referrers_of(client, repository, digest, SIGNATURE_ARTIFACT):
        signature = (referrer.layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if referrer.layer.get("mediaType") == SIMPLE_SIGNING and signature:
            payload = client.get_blob(repository, referrer.layer["digest"])
            found.append(SignedPayload(referrer.manifest_digest, payload, signature))
    return found


def verify_image(
    client: RegistryClient, repository: str, digest: str, key: PublicKey, *, identity: str | None = None
) -> VerifiedSignature:
    """The first signature of `digest` made by `key` whose payload names `digest` (and `identity`, when
    given); else `SignatureError` saying why none counts."""
    found = signatures(client, repository, digest)
    if not found:
        raise SignatureError(f"{repository}@{digest} has no signature attached")
    reasons = []
    for signed in found:
        named_identity, named_digest = signed.names()
        if named_digest != digest:
            reasons.append(f"{signed.manifest_digest} signs {named_digest or 'something that is not an image'}")
        elif identity is not None and named_identity != identity:
            reasons.append(f"{signed.manifest_digest} names the repository {named_identity}, not {identity}")
        elif not key.verifies(signed.payload, signed.signature_b64):
            reasons.append(f"{signed.manifest_digest} is not signed by this key")
        else:
            return VerifiedSignature(digest, signed.manifest_digest, named_identity)
    raise SignatureError(f"{repository}@{digest}: no valid signature by this key ({'; '.join(reasons)})")
