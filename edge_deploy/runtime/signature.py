"""EDGE_REQUIRE_SIGNED_MODEL: the sealed model's detached signature, checked before a byte is decrypted.

The signature (model.onnx.enc.sig, cosign's sign-blob format, see `edge_deploy.signing.blob`) is
made at sealing time with the release signing key; the device names the public key it trusts
(EDGE_SIGNING_PUBLIC_KEY or EDGE_SIGNING_PUBLIC_KEY_FILE, read by `config`). A model that is not
signed by that key is refused: the runtime exits with one line that says why, having decrypted
nothing. Not required: this module does nothing and loads nothing.
"""

from __future__ import annotations

import logging

from edge_deploy.errors import EdgeDeployError
from edge_deploy.runtime.config import REQUIRE_SIGNED, SEALED_MODEL_NAME, SIGNATURE_NAME, RuntimeConfig

log = logging.getLogger(__name__)


class RefusedModelError(EdgeDeployError):
    """The device requires a signed model and this one is not signed by its key; names the reason."""


def check_signature(config: RuntimeConfig) -> None:
    """Refuse (`RefusedModelError`) the model unless its signature verifies with the trusted key, when
    one is required; return at once otherwise."""
    if config.trusted_key is None:
        return
    sealed = config.model_dir / SEALED_MODEL_NAME
    if not sealed.is_file():
        raise RefusedModelError(
            f"{REQUIRE_SIGNED}: refusing {config.model_dir}: it holds no {SEALED_MODEL_NAME} "
            f"(with {SIGNATURE_NAME}), and only a sealed, signed model is served"
        )
    from edge_deploy.signing.blob import BlobSignatureError, verify_file  # hashlib + cryptography's EC code

    try:
        verified = verify_file(sealed, config.trusted_key)
    except BlobSignatureError as exc:
        raise RefusedModelError(f"{REQUIRE_SIGNED}: refusing the model: {exc}") from None
    log.info("%s: the signature verifies with the trusted key %s", sealed, verified.key_fingerprint)
