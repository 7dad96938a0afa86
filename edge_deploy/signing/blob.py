"""Detached signatures of files, in cosign's `sign-blob` format: `<file>.sig` holds one line, the
base64 of a DER ECDSA P-256 signature with SHA-256 over the file's bytes.

    signature = sign_file(path, key)       # writes <path>.sig (temp file, then rename)
    verify_file(path, key.public)          # or raises BlobSignatureError naming the file and why

The same check by tools we did not write:

    base64 -d path.sig > sig.der && openssl dgst -sha256 -verify pub.pem -signature sig.der path
    cosign verify-blob --key pub.pem --signature path.sig path

A sealed model is hundreds of MB, so the file is hashed in chunks and the digest signed as a
prehashed message: the signature is the one ECDSA-SHA256 makes over the whole file, without
reading it into memory. Imported only where a signature is made or required: the edge runtime ships
this module, and loads cryptography's EC code only when the device asks for a signed model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from edge_deploy.errors import EdgeDeployError
from edge_deploy.signing.keys import PublicKey, Signer

SIGNATURE_SUFFIX = ".sig"
CHUNK_BYTES = 4 * 1024 * 1024
# base64 of a DER P-256 signature is at most 96 characters; more is not a signature, and is not read
MAX_SIGNATURE_BYTES = 1024
PREHASHED_SHA256 = ec.ECDSA(utils.Prehashed(hashes.SHA256()))


class BlobSignatureError(EdgeDeployError):
    """A file's detached signature is missing, malformed or not made by the key; names the file and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class BlobSignature:
    """A file's detached signature and the key that made it (named by its fingerprint, never its bytes)."""

    path: Path  # the .sig file
    key_fingerprint: str  # SHA-256 of the public key's DER form, hex (PublicKey.fingerprint)
    public_pem: str = ""  # that public key, for the acceptance run that requires the signature


def signature_path(path: Path) -> Path:
    """Where the signature of `path` lives: beside it, named `<name>.sig` (as `cosign sign-blob` users name it)."""
    return path.with_name(path.name + SIGNATURE_SUFFIX)


def sign_file(path: Path, key: Signer) -> BlobSignature:
    """Sign `path`'s bytes and write the signature to `<path>.sig`, replacing any there."""
    der = key.sign_digest(_sha256(path))
    target = signature_path(path)
    _write_atomically(target, base64.b64encode(der))
    return BlobSignature(target, key.public.fingerprint(), key.public.pem().decode())


def verify_file(path: Path, key: PublicKey) -> BlobSignature:
    """Check `<path>.sig` against `path`'s bytes and `key`; BlobSignatureError says what is wrong."""
    der = _read_signature(path)
    fingerprint = key.fingerprint()
    try:
        key.key.verify(der, _sha256(path), PREHASHED_SHA256)
    except InvalidSignature:
        raise BlobSignatureError(
            path,
            f"the signature does not verify with the key whose fingerprint is {fingerprint} "
            "(the file changed after it was signed, or another key signed it)",
        ) from None
    return BlobSignature(signature_path(path), fingerprint, key.pem().decode())


def _read_signature(path: Path) -> bytes:
    """The DER signature in `<path>.sig`, checked to be one (so that a damaged file is called malformed)."""
    sig_path = signature_path(path)
    try:
        with open(sig_path, "rb") as stream:
            text = stream.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        raise BlobSignatureError(path, f"not signed: there is no {sig_path.name} beside it") from None
    except OSError as exc:
        raise BlobSignatureError(path, f"cannot read {sig_path.name}: {exc.strerror}") from None
    if len(text) > MAX_SIGNATURE_BYTES:
        raise BlobSignatureError(path, f"{sig_path.name} is malformed: longer than any signature")
    try:
        der = base64.b64decode(text.strip(), validate=True)
        utils.decode_dss_signature(der)
    except (binascii.Error, ValueError):
        raise BlobSignatureError(
            path, f"{sig_path.name} is malformed: not one line of base64 of a DER ECDSA signature"
        ) from None
    return der


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while block := stream.read(CHUNK_BYTES):
                digest.update(block)  # hashlib releases the GIL for blocks this size
    except OSError as exc:
        raise BlobSignatureError(path, f"cannot read it: {exc.strerror}") from None
    return digest.digest()


def _write_atomically(target: Path, data: bytes) -> None:
    """`data` in `target`, all or nothing: a reader never sees half a signature."""
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, 0o644)  # a signature is public: the image's non-root user reads it
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
