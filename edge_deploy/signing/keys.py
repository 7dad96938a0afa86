"""The signing key: an ECDSA P-256 private key in PEM, read once, never logged or copied.

It comes from EDGE_SIGNING_KEY (the PEM itself, e.g. a Kubernetes Secret as a variable) or
EDGE_SIGNING_KEY_FILE (a mounted file). cosign's own key files (`cosign generate-key-pair`) are
encrypted with its own scheme; export such a key to PKCS#8 PEM (or make one with `openssl ecparam
-name prime256v1 -genkey | openssl pkcs8 -topk8 -nocrypt`). An encrypted PKCS#8 PEM works with
EDGE_SIGNING_KEY_PASSWORD.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from edge_deploy.errors import ConfigError

CURVE = ec.SECP256R1


class Signer(Protocol):
    """What signs: a `SigningKey` here, or a key that stays in Azure Key Vault (signing.keyvault)."""

    def sign(self, payload: bytes) -> bytes:
        """ECDSA P-256 with SHA-256 over `payload`, DER-encoded."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """The same signature, given the payload's SHA-256 digest (a file hashed in chunks)."""
        ...

    @property
    def public(self) -> PublicKey: ...


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs; its repr names only the public key's fingerprint."""

    private: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def from_pem(cls, data: bytes, password: str | None = None, source: str = "EDGE_SIGNING_KEY") -> SigningKey:
        """The key in `data`; errors name `source` (the variable or file), never the key's text."""
        try:
            key = serialization.load_pem_private_key(data, password.encode() if password else None)
        except TypeError:
            raise ConfigError(
                f"{source} is encrypted: set EDGE_SIGNING_KEY_PASSWORD"
                if not password
                else f"{source} is not encrypted: unset EDGE_SIGNING_KEY_PASSWORD"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{source} is not a PEM private key (or its password is wrong)") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, CURVE):
            raise ConfigError(f"{source} must be an ECDSA P-256 key (cosign's key type)")
        return cls(key)

    @classmethod
    def from_file(cls, path: Path, password: str | None = None) -> SigningKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"EDGE_SIGNING_KEY_FILE {path}: cannot read it ({exc.strerror})") from None
        return cls.from_pem(data, password, f"EDGE_SIGNING_KEY_FILE {path}")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(CURVE()))

    def sign(self, payload: bytes) -> bytes:
        """ECDSA with SHA-256 over `payload`, DER-encoded (what cosign writes, base64, in its annotation)."""
        return self.private.sign(payload, ec.ECDSA(hashes.SHA256()))

    def sign_digest(self, digest: bytes) -> bytes:
        return self.private.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.private.public_key())

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey

    @classmethod
    def from_pem(cls, data: bytes, where: str = "public key") -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{where} is not a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, CURVE):
            raise ConfigError(f"{where} must be an ECDSA P-256 public key")
        return cls(key)

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def fingerprint(self) -> str:
        """SHA-256 of the DER public key, hex: the DSSE keyid, and how messages name a key."""
        der = self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()

    def verifies(self, payload: bytes, signature_b64: str) -> bool:
        try:
            self.key.verify(base64.b64decode(signature_b64, validate=True), payload, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True
