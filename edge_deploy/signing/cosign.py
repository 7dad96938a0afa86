"""What a cosign signature of an image is: the signed payload and the manifest that carries it.

The payload is cosign's "simple signing" document naming the image's manifest digest. The signature
(ECDSA P-256, SHA-256, DER, base64) sits in the annotation `dev.cosignproject.cosign/signature` of the
payload's layer, as cosign writes it. The manifest is an OCI 1.1 artifact (artifactType
`application/vnd.dev.cosign.artifact.sig.v1+json`) whose `subject` is the signed manifest: the layout
of cosign's `--registry-referrers-mode=oci-1-1`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data), **extra}


def simple_signing_payload(repository: str, digest: str, annotations: dict[str, str] | None = None) -> bytes:
    """The bytes that are signed: the repository (without tag) and the manifest digest of the image."""
    document = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": annotations or None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def artifact_manifest(artifact_type: str, subject: dict[str, Any], layer: dict[str, Any]) -> bytes:
    """An OCI 1.1 artifact manifest of `artifact_type` with one layer, attached to `subject` (a descriptor)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY_MEDIA_TYPE, EMPTY_CONFIG),
        "layers": [layer],
        "subject": subject,
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def signature_manifest(subject: dict[str, Any], payload: bytes, signature_b64: str) -> bytes:
    """The OCI manifest that attaches `signature_b64` over `payload` to `subject` (a descriptor)."""
    layer = descriptor(SIMPLE_SIGNING, payload, annotations={SIGNATURE_ANNOTATION: signature_b64})
    return artifact_manifest(SIGNATURE_ARTIFACT, subject, layer)


@dataclass(frozen=True)
class SignedPayload:
    """A signature as read back: which manifest carries it, the payload and the signature."""

    manifest_digest: str
    payload: bytes
    signature_b64: str

    def names(self) -> tuple[str, str]:
        """(repository, manifest digest) the payload says it signs; ("", "") when it is not cosign's."""
        try:
            critical = json.loads(self.payload)["critical"]
            if critical.get("type") != SIGNATURE_TYPE:
                return "", ""
            return critical["identity"]["docker-reference"], critical["image"]["docker-manifest-digest"]
        except (ValueError, KeyError, TypeError):
            return "", ""
