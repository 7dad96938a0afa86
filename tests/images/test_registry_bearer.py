"""Bearer-token auth, the way ACR and Docker Hub do it, against a real registry.

Debian's docker-registry runs with `auth: token`: it answers 401 with
`WWW-Authenticate: Bearer realm=...,service=...,scope=...` and accepts only JWTs signed by a key it
trusts. The token service here is the other half of that protocol: it checks basic credentials and
issues ES256 JWTs with the requested repository access, signed by a key whose certificate is the
registry's `rootcertbundle`. The registry does the verifying, so a token it accepts is a real token.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from edge_deploy.config import RegistrySettings, Secret
from edge_deploy.images.errors import RegistryAuthError
from edge_deploy.images.push import push_image
from edge_deploy.images.registry import IndexEntry, RegistryClient
from tests.fixtures.processes import free_port, require_binary, running
from tests.images.conftest import FAST_RETRIES

pytestmark = pytest.mark.docker

SERVICE, ISSUER = "edge-test-registry", "edge-test-token-issuer"


@dataclass(frozen=True)
class TokenRegistry:
    host: str
    username: str
    password: str
    issued: list[str]  # scopes the token service granted, in order

    def settings(self, password: str | None = None) -> RegistrySettings:
        return RegistrySettings(self.host, self.username, Secret(password or self.password), True, None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` distribution looks trusted keys up by: base32 of sha256(DER)[:30], in groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _jwt(key: ec.EllipticCurvePrivateKey, claims: dict) -> str:
    header = {"typ": "JWT", "alg": "ES256", "kid": _libtrust_key_id(key.public_key())}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _signing_certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _token_handler(key: ec.EllipticCurvePrivateKey, username: str, password: str, issued: list[str]):
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                return self._answer(401, {"details": "bad credentials"})
            query = parse_qs(urlsplit(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
                issued.append(scope)
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": username, "aud": query.get("service", [""])[0], "exp": now + 300,
                      "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}  # fmt: skip
            token = _jwt(key, claims)
            return self._answer(200, {"token": token, "access_token": token, "expires_in": 300})

        def _answer(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    work: Path = tmp_path_factory.mktemp("token-registry")
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "token-signer.pem").write_bytes(_signing_certificate(key))
    username, password, issued = "edge-sp", secrets.token_urlsafe(16), []
    token_server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(key, username, password, issued))
    threading.Thread(target=token_server.serve_forever, daemon=True).start()
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "auth": {
            "token": {
                "realm": f"http://127.0.0.1:{token_server.server_address[1]}/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(work / "token-signer.pem"),
            }
        },
    }
    (work / "config.yml").write_text(yaml.safe_dump(config))
    binary = require_binary("docker-registry", "apt-get install docker-registry")
    url = f"http://127.0.0.1:{port}/v2/"
    try:
        with running([binary, "serve", str(work / "config.yml")], "token-auth registry",
                     lambda: requests.get(url, timeout=1).status_code == 401, work / "registry.log"):  # fmt: skip
            yield TokenRegistry(f"127.0.0.1:{port}", username, password, issued)
    finally:
        token_server.shutdown()
        token_server.server_close()


def test_the_registry_challenges_with_bearer(token_registry):
    challenge = requests.get(f"http://{token_registry.host}/v2/", timeout=5).headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer realm=") and f'service="{SERVICE}"' in challenge


def test_bearer_tokens_from_the_challenge_carry_a_push_and_an_index(token_registry, docker_engine, make_scratch_image):
    reference = f"{token_registry.host}/edge/scratch:bearer"
    make_scratch_image(reference)
    digest = push_image(docker_engine, reference, token_registry.settings(), FAST_RETRIES)  # the engine's own flow
    client = RegistryClient(token_registry.settings(), FAST_RETRIES)
    issued_before = len(token_registry.issued)
    client.check_access("edge/scratch")
    assert token_registry.issued[issued_before:] == ["repository:edge/scratch:pull,push"]  # our client's token
    assert client.manifest_digest("edge/scratch", "bearer") == digest
    assert client.manifest_digest("edge/scratch", "no-such-tag") is None
    manifest = client.get_manifest("edge/scratch", digest)
    entry = IndexEntry(manifest.media_type, digest, len(manifest.body), {"architecture": "amd64", "os": "linux"})
    index_digest, pushed = client.put_index("edge/scratch", "release", [entry])
    assert pushed and client.manifest_digest("edge/scratch", "release") == index_digest
    assert len(token_registry.issued) == issued_before + 1  # one token served every later call


def test_a_wrong_password_at_the_token_service_is_an_auth_error_without_the_password(token_registry):
    client = RegistryClient(token_registry.settings(password="wrong-password"), FAST_RETRIES)
    with pytest.raises(RegistryAuthError) as failure:
        client.check_access("edge/scratch")
    message = str(failure.value)
    assert f"refused the credentials of user '{token_registry.username}'" in message
    assert "wrong-password" not in message and token_registry.password not in message
