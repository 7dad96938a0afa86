"""Signing images in cosign's format and finding and checking the signatures, against a real registry on
loopback (Debian's docker-registry, distribution 2.8: no referrers API, so the OCI 1.1 referrers tag is
used). The signature bytes are also checked by OpenSSL, an implementation this project did not write,
from what plain HTTP requests fetch."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge_deploy.config import RegistrySettings
from edge_deploy.errors import ConfigError
from edge_deploy.images.registry import RegistryClient
from edge_deploy.signing.attach import fallback_tag, sign_image
from edge_deploy.signing.cosign import SIGNATURE_ANNOTATION, SIGNATURE_ARTIFACT, signature_manifest
from edge_deploy.signing.keys import SigningKey
from edge_deploy.signing.verify import SignatureError, verify_image
from tests.images.conftest import FAST_RETRIES

pytestmark = pytest.mark.docker


@pytest.fixture
def client(registry) -> RegistryClient:
    return RegistryClient(RegistrySettings(registry.host, None, None, True, None), FAST_RETRIES)


@pytest.fixture
def pushed(registry, docker_engine, make_scratch_image, client):
    """Two images in one repository: (repository, identity, digest of the first, digest of the second)."""
    repository = "signing/app"
    digests = []
    for tag in ("one", "two"):
        reference = f"{registry.host}/{repository}:{tag}"
        make_scratch_image(reference)
        for line in docker_engine.images.push(reference, stream=True, decode=True):
            assert "error" not in line, line
        digests.append(client.manifest_digest(repository, tag))
    return repository, f"{registry.host}/{repository}", *digests


def test_a_signed_image_verifies_and_its_signature_is_listed_under_the_referrers_tag(client, pushed, registry):
    repository, identity, digest, _ = pushed
    key = SigningKey.generate()
    attached = sign_image(client, repository, digest, key, identity=identity)
    assert attached.indexed_by_registry is False  # distribution 2.8 has no referrers API
    verified = verify_image(client, repository, digest, key.public, identity=identity)
    assert verified.signature_digest == attached.signature_digest
    index = json.loads(client.get_manifest(repository, fallback_tag(digest)).body)
    assert [(m["digest"], m["artifactType"]) for m in index["manifests"]] == [
        (attached.signature_digest, SIGNATURE_ARTIFACT)
    ]


def test_a_second_signature_joins_the_first(client, pushed):
    repository, identity, digest, _ = pushed
    first, second = SigningKey.generate(), SigningKey.generate()
    sign_image(client, repository, digest, first, identity=identity)
    sign_image(client, repository, digest, second, identity=identity)
    for key in (first, second):
        assert verify_image(client, repository, digest, key.public).identity == identity
    assert len(json.loads(client.get_manifest(repository, fallback_tag(digest)).body)["manifests"]) == 2


def test_an_unsigned_image_and_another_key_are_refused_with_the_reason(client, pushed):
    repository, identity, digest, other = pushed
    with pytest.raises(SignatureError, match="has no signature attached"):
        verify_image(client, repository, other, SigningKey.generate().public)
    sign_image(client, repository, digest, SigningKey.generate(), identity=identity)
    with pytest.raises(SignatureError, match="is not signed by this key"):
        verify_image(client, repository, digest, SigningKey.generate().public)
    with pytest.raises(SignatureError, match="names the repository"):
        verify_image(client, repository, digest, SigningKey.generate().public, identity="elsewhere/app")


def test_a_signature_moved_onto_another_image_is_refused(client, pushed):
    """Someone who can push copies image one's signed payload into a signature manifest for image two."""
    repository, identity, digest, other = pushed
    key = SigningKey.generate()
    attached = sign_image(client, repository, digest, key, identity=identity)
    original = json.loads(client.get_manifest(repository, attached.signature_digest).body)
    layer = original["layers"][0]
    payload = client.get_blob(repository, layer["digest"])
    subject = client.get_manifest(repository, other)
    forged = signature_manifest(
        {"mediaType": subject.media_type, "digest": other, "size": len(subject.body)},
        payload,
        layer["annotations"][SIGNATURE_ANNOTATION],
    )
    forged_digest, _ = client.put_manifest_with_subject(repository, original["mediaType"], forged)
    entry = {"mediaType": original["mediaType"], "digest": forged_digest, "size": len(forged),
             "artifactType": SIGNATURE_ARTIFACT}  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    client.put_manifest(repository, fallback_tag(other), index["mediaType"], json.dumps(index).encode())
    with pytest.raises(SignatureError, match=f"signs {digest}"):
        verify_image(client, repository, other, key.public)


def test_openssl_verifies_the_signature_from_the_registrys_own_bytes(client, pushed, registry, tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed"
    repository, identity, digest, _ = pushed
    key = SigningKey.generate()
    sign_image(client, repository, digest, key, identity=identity)
    # Plain HTTP, as any client would: the referrers tag, the signature manifest, the payload blob.
    base = f"{registry.url}/v2/{repository}"
    accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
    index = requests.get(f"{base}/manifests/{fallback_tag(digest)}", headers=accept, timeout=10).json()
    manifest = requests.get(f"{base}/manifests/{index['manifests'][0]['digest']}", headers=accept, timeout=10).json()
    assert manifest["subject"]["digest"] == digest
    layer = manifest["layers"][0]
    payload = requests.get(f"{base}/blobs/{layer['digest']}", timeout=10).content
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "signature.der").write_bytes(base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]))
    (tmp_path / "public.pem").write_bytes(key.public.pem())
    command = [openssl, "dgst", "-sha256", "-verify", "public.pem", "-signature", "signature.der", "payload"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Verified OK" in done.stdout
    (tmp_path / "payload").write_bytes(payload.replace(digest.encode(), b"sha256:" + b"0" * 64))
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "Verification failure" in done.stdout


@pytest.mark.parametrize(
    ("content", "password", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), None, "must be an ECDSA P-256 key"),
        (lambda: "not a key", None, "is not a PEM private key"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "wrong", "is not encrypted: unset EDGE_SIGNING_KEY_PASSWORD"),
    ],
)
def test_a_bad_key_file_is_named_and_never_quoted(tmp_path, content, password, message):
    made = content()
    path = tmp_path / "signing.pem"
    if isinstance(made, str):
        path.write_text(made)
    else:
        path.write_bytes(made.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))  # fmt: skip
    with pytest.raises(ConfigError, match=message) as raised:
        SigningKey.from_file(path, password)
    assert "PRIVATE KEY" not in str(raised.value) and str(path) in str(raised.value)


def test_an_encrypted_key_needs_its_password(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "signing.pem"
    encryption = serialization.BestAvailableEncryption(b"secret-words")
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    with pytest.raises(ConfigError, match="is encrypted: set EDGE_SIGNING_KEY_PASSWORD"):
        SigningKey.from_file(path)
    assert SigningKey.from_file(path, "secret-words").public.pem() == SigningKey(key).public.pem()
    assert "secret" not in repr(SigningKey.from_file(path, "secret-words"))
