"""Evidence attached to an image as OCI 1.1 referrers: its SBOM, and signed attestations (DSSE).

    SBOM          artifactType application/vnd.cyclonedx+json; the layer is the CycloneDX document
    attestation   artifactType application/vnd.dsse.envelope.v1+json; the layer is the envelope, with
                  the statement's predicate type in the layer's `predicateType` annotation (as cosign
                  annotates its attestation layers)

The SBOM is not signed by itself: the provenance lists its digest, and the provenance is signed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from edge_deploy.images.registry import RegistryClient
from edge_deploy.signing.attach import AttachedSignature, attach_referrer
from edge_deploy.signing.dsse import ENVELOPE_MEDIA_TYPE, Envelope, EnvelopeError, sign_envelope
from edge_deploy.signing.keys import PublicKey, Signer
from edge_deploy.signing.provenance import SBOM_MEDIA_TYPE
from edge_deploy.signing.verify import referrers_of

log = logging.getLogger(__name__)

PREDICATE_ANNOTATION = "predicateType"


def attach_sbom(client: RegistryClient, repository: str, digest: str, document: bytes) -> str:
    """Attach the CycloneDX `document` to `digest` (once: an identical one already attached is kept).
    Returns the document's digest, which the provenance names."""
    document_digest = "sha256:" + hashlib.sha256(document).hexdigest()
    if any(r.layer.get("digest") == document_digest for r in referrers_of(client, repository, digest, SBOM_MEDIA_TYPE)):
        return document_digest
    attach_referrer(client, repository, digest, SBOM_MEDIA_TYPE, SBOM_MEDIA_TYPE, document)
    return document_digest


def attached_sbom(client: RegistryClient, repository: str, digest: str) -> str | None:
    """The digest of an SBOM document attached to `digest`, if any."""
    found = referrers_of(client, repository, digest, SBOM_MEDIA_TYPE)
    return found[0].layer.get("digest") if found else None


def attest(
    client: RegistryClient, repository: str, digest: str, statement: bytes, predicate_type: str, key: Signer
) -> AttachedSignature:
    """Sign `statement` (in-toto, JSON) in a DSSE envelope and attach it to `digest`."""
    envelope = sign_envelope(key, statement).to_json()
    attached = attach_referrer(
        client,
        repository,
        digest,
        ENVELOPE_MEDIA_TYPE,
        ENVELOPE_MEDIA_TYPE,
        envelope,
        {PREDICATE_ANNOTATION: predicate_type},
    )
    log.info("attested %s@%s (%s, %s)", repository, digest, predicate_type, attached.signature_digest)
    return attached


@dataclass(frozen=True)
class VerifiedStatement:
    manifest_digest: str  # the attestation's manifest
    payload: bytes  # the statement, its signature checked


def verified_statements(
    client: RegistryClient, repository: str, digest: str, predicate_type: str, key: PublicKey
) -> tuple[list[VerifiedStatement], list[str]]:
    """The attestations of `predicate_type` on `digest` whose envelope `key` signed, and why each other
    one was set aside."""
    verified, rejected = [], []
    for referrer in referrers_of(client, repository, digest, ENVELOPE_MEDIA_TYPE):
        if (referrer.layer.get("annotations") or {}).get(PREDICATE_ANNOTATION) != predicate_type:
            continue
        try:
            envelope = Envelope.from_json(client.get_blob(repository, referrer.layer["digest"]))
            verified.append(VerifiedStatement(referrer.manifest_digest, envelope.verified_payload(key)))
        except EnvelopeError as exc:
            rejected.append(f"{referrer.manifest_digest}: {exc}")
    return verified, rejected
