"""DSSE envelopes (Dead Simple Signing Envelope v1), the wrapper in-toto attestations are signed in.

The signature is over PAE(payloadType, payload), never over the JSON of the envelope, so a verifier
checks the bytes before it parses them:

    PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from edge_deploy.errors import EdgeDeployError
from edge_deploy.signing.keys import PublicKey, Signer

IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


class EnvelopeError(EdgeDeployError):
    """An envelope that is malformed or not signed by the expected key."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """The pre-authentication encoding: what is signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, str], ...]  # (keyid, base64 signature)

    def to_json(self) -> bytes:
        document = {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [{"keyid": keyid, "sig": sig} for keyid, sig in self.signatures],
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        try:
            document = json.loads(data)
            signatures = tuple((s.get("keyid", ""), s["sig"]) for s in document["signatures"])
            return cls(document["payloadType"], base64.b64decode(document["payload"], validate=True), signatures)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EnvelopeError(f"not a DSSE envelope ({type(exc).__name__})") from None

    def verified_payload(self, key: PublicKey) -> bytes:
        """The payload, when one of the signatures is `key`'s over PAE(type, payload)."""
        signed = pae(self.payload_type, self.payload)
        if not any(key.verifies(signed, sig) for _, sig in self.signatures):
            raise EnvelopeError(f"the envelope is not signed by the key {key.fingerprint()}")
        return self.payload


def sign_envelope(key: Signer, payload: bytes, payload_type: str = IN_TOTO_PAYLOAD) -> Envelope:
    signature = base64.b64encode(key.sign(pae(payload_type, payload))).decode()
    return Envelope(payload_type, payload, ((key.public.fingerprint(), signature),))
