"""Signing with a key that stays in Azure Key Vault, against the offline stand-in (tests.keyvault_server):
a stand-in that speaks Key Vault's REST API and the identity platform's token endpoint, not Key Vault.
Its fidelity is checked first with Microsoft's own clients (azure-identity, azure-keyvault-keys)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge_deploy.config import Settings
from edge_deploy.errors import ConfigError, TransientError
from edge_deploy.images.context import sign_sealed_model
from edge_deploy.images.push import push_index
from edge_deploy.images.registry import RegistryClient
from edge_deploy.retry import RetryPolicy
from edge_deploy.signing.blob import BlobSignatureError, verify_file
from edge_deploy.signing.keyvault import KeyVaultError, KeyVaultKey
from edge_deploy.signing.release_signer import release_signer
from edge_deploy.signing.verify import verify_image
from tests.images.conftest import FAST_RETRIES
from tests.signing.test_release_signing import REPOSITORY, targets  # noqa: F401 - the pushed images, a fixture

QUICK = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def trusted_ca(keyvault, monkeypatch):
    """The stand-in's CA, the way a private CA is given to requests (and to Microsoft's SDK)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(keyvault.ca_file))


@pytest.fixture
def microsoft(keyvault, trusted_ca) -> KeyClient:
    # The stand-in is on 127.0.0.1, which cannot be a subdomain of the resource it names: the SDK's
    # check of that (which our client does too, with the loopback's own host allowed) is turned off
    # here, and only here. Instance discovery would ask login.microsoftonline.com, which is not offline.
    credential = ClientSecretCredential(
        keyvault.tenant,
        keyvault.client_id,
        keyvault.client_secret,
        authority=keyvault.url,
        disable_instance_discovery=True,
    )
    return KeyClient(keyvault.url, credential, verify_challenge_resource=False)


@pytest.fixture
def vault_key(microsoft) -> str:
    """A new EC P-256 key, made the way an operator makes one; its id, version included."""
    return microsoft.create_ec_key(f"release-{id(microsoft) % 10_000}", curve="P-256").id


def test_microsofts_own_clients_sign_with_the_stand_in(microsoft, vault_key):
    key = microsoft.get_key(vault_key.rsplit("/", 2)[1])
    crypto = microsoft.get_cryptography_client(key.name, key_version=key.properties.version)
    digest = hashlib.sha256(b"payload").digest()
    signed = crypto.sign(SignatureAlgorithm.es256, digest)
    assert signed.key_id == vault_key and len(signed.signature) == 64
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big"), ec.SECP256R1()
    ).public_key()
    der = encode_dss_signature(
        int.from_bytes(signed.signature[:32], "big"), int.from_bytes(signed.signature[32:], "big")
    )
    public.verify(der, b"payload", ec.ECDSA(hashes.SHA256()))  # raises when it does not verify
    with pytest.raises(ResourceNotFoundError, match=r"KeyNotFound|was not found"):
        microsoft.get_key("no-such-key")


def test_a_release_is_signed_by_the_vault_with_a_workload_identity(
    keyvault,
    vault_key,
    trusted_ca,
    registry,
    targets,  # noqa: F811
    tmp_path,
):
    env = {
        "EDGE_REGISTRY": registry.host,
        "EDGE_REGISTRY_INSECURE": "true",
        "EDGE_WORK_DIR": str(tmp_path),
        "EDGE_SIGNING_KEY_URI": vault_key.rsplit("/", 1)[0],  # no version: the vault's current one
        **keyvault.credentials_env(federated=True),
    }
    settings = Settings.from_env(env)
    release = push_index(REPOSITORY, "kv-1", targets, settings, retry_policy=FAST_RETRIES)
    public = release_signer(settings).public
    client = RegistryClient(settings.require_registry(), FAST_RETRIES)
    for digest in [*(t.digest for t in targets), release.index_digest]:
        assert verify_image(client, REPOSITORY, digest, public).signature_digest == release.signatures[digest]
    assert keyvault.url not in json.dumps(release.to_dict())  # nothing about the key travels with the release


def test_bad_settings_name_what_to_fix(keyvault, tmp_path):
    base = {"EDGE_SIGNING_KEY_URI": f"{keyvault.url}/keys/release"}
    with pytest.raises(ConfigError, match="AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE"):
        Settings.from_env(base)
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env(base | keyvault.credentials_env() | {"EDGE_SIGNING_KEY": "pem"})
    with pytest.raises(ConfigError, match="https URL"):
        Settings.from_env({"EDGE_SIGNING_KEY_URI": "http://vault.example/keys/release"})
    identity = Settings.from_env(base | keyvault.credentials_env()).azure_identity
    with pytest.raises(ConfigError, match=r"https://<vault>/keys/<name>\[/<version>\]"):
        KeyVaultKey(f"{keyvault.url}/secrets/release", identity)


def test_refusals_name_the_key_and_the_reason(keyvault, vault_key, trusted_ca):
    settings = Settings.from_env({"EDGE_SIGNING_KEY_URI": vault_key} | keyvault.credentials_env())
    missing = KeyVaultKey(f"{keyvault.url}/keys/not-there", settings.azure_identity, QUICK)
    with pytest.raises(KeyVaultError, match=r"keys/not-there: GET .* HTTP 404 KeyNotFound"):
        _ = missing.public
    wrong_app = Settings.from_env(
        {"EDGE_SIGNING_KEY_URI": vault_key} | keyvault.credentials_env() | {"AZURE_CLIENT_ID": "someone-else"}
    )
    with pytest.raises(
        KeyVaultError, match=r"refused a token for application someone-else .*(invalid_client|unauthorized_client)"
    ):
        KeyVaultKey(vault_key, wrong_app.azure_identity, QUICK).sign(b"x")
    assert keyvault.client_secret not in repr(settings)  # the secret is never shown


def test_the_vault_being_unavailable_is_retried_a_bounded_number_of_times(keyvault, vault_key, trusted_ca):
    settings = Settings.from_env({"EDGE_SIGNING_KEY_URI": vault_key} | keyvault.credentials_env())
    key = KeyVaultKey(vault_key, settings.azure_identity, QUICK)
    arm_faults(keyvault, 2)  # two 503s, then an answer: within the three attempts
    signature = key.sign(b"payload")
    assert key.public.verifies(b"payload", base64.b64encode(signature).decode())
    arm_faults(keyvault, 5)
    with pytest.raises(TransientError, match="HTTP 503"):
        key.sign(b"payload")
    arm_faults(keyvault, 0)


def test_a_challenge_for_another_resource_gets_no_token(keyvault):
    settings = Settings.from_env({"EDGE_SIGNING_KEY_URI": f"{keyvault.url}/keys/release"} | keyvault.credentials_env())
    key = KeyVaultKey(f"{keyvault.url}/keys/release", settings.azure_identity)
    response = requests.Response()
    response.status_code = 401
    response.headers["WWW-Authenticate"] = (
        'Bearer authorization="https://login.example/t", resource="https://vault.azure.net"'
    )
    with pytest.raises(
        KeyVaultError, match=r"asks for a token for https://vault\.azure\.net, which is not this vault's"
    ):
        key._challenge(response)
    response.headers["WWW-Authenticate"] = f'Bearer authorization="https://login.example/t", resource="{keyvault.url}"'
    assert key._challenge(response) == (keyvault.tenant, f"{keyvault.url}/.default")


def arm_faults(keyvault, count: int) -> None:
    requests.post(
        f"{keyvault.url}/_test/faults", json={"count": count}, verify=str(keyvault.ca_file), timeout=10
    ).raise_for_status()


def test_the_vault_signs_the_sealed_model_as_a_device_checks_it(keyvault, vault_key, trusted_ca, tmp_path):
    settings = Settings.from_env({"EDGE_SIGNING_KEY_URI": vault_key} | keyvault.credentials_env(federated=True))
    sealed = tmp_path / "model.onnx.enc"
    sealed.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # hashed in chunks: only its digest goes to the vault
    signer = release_signer(settings)
    signature = sign_sealed_model(sealed, signer)
    assert verify_file(sealed, signer.public).key_fingerprint == signature.key_fingerprint
    with sealed.open("r+b") as changed:
        changed.write(b"\0")
    with pytest.raises(BlobSignatureError, match="does not verify"):
        verify_file(sealed, signer.public)
