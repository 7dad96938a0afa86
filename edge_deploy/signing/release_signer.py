"""The release's signer, as the settings name it: a key in Azure Key Vault (EDGE_SIGNING_KEY_URI) or
a PEM key (EDGE_SIGNING_KEY or EDGE_SIGNING_KEY_FILE), or None when signing is off. The one place
both the seal task (the sealed model's detached signature) and the index task (images, index and
provenance) get it from."""

from __future__ import annotations

from edge_deploy.config import Settings
from edge_deploy.signing.keys import Signer, SigningKey
from edge_deploy.signing.keyvault import KeyVaultKey


def release_signer(settings: Settings) -> Signer | None:
    if settings.signing_key_uri is not None:
        assert settings.azure_identity is not None  # Settings requires it with the URI
        return KeyVaultKey(settings.signing_key_uri, settings.azure_identity)
    if settings.signing_key is not None:
        password = settings.signing_key_password.reveal() if settings.signing_key_password else None
        return SigningKey.from_pem(settings.signing_key.reveal().encode(), password)
    return None
