"""The stand-in's HTTP handler (see the package docstring)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_SECONDS = 3600
KEY_PATH = re.compile(
    r"^/keys/(?P<name>[0-9A-Za-z-]{1,127})(?:/(?P<version>[0-9a-f]{32}))?(?:/(?P<op>sign|create))?/?$"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Vault:
    tenant: str
    client_id: str
    client_secret: str
    federated_token: str | None
    base_url: str = ""  # https://127.0.0.1:<port>, set once the port is known
    keys: dict[str, dict[str, ec.EllipticCurvePrivateKey]] = field(default_factory=dict)  # name -> version -> key
    latest: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (audience, expiry)
    faults: int = 0
    signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bundle(self, name: str, version: str) -> dict:
        numbers = self.keys[name][version].public_key().public_numbers()
        kid = f"{self.base_url}/keys/{name}/{version}"
        jwk = {"kid": kid, "kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"],
               "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}  # fmt: skip
        now = int(time.time())
        attributes = {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable"}
        return {"key": jwk, "attributes": attributes}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Handler(BaseHTTPRequestHandler):
    server_version = "KeyVaultStandIn/1"
    vault: Vault
    tls: ssl.SSLContext

    def setup(self) -> None:
        # the TLS handshake runs in the connection's own thread: a client that stalls holds only that one
        self.request = self.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> " + (format % args), flush=True)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        try:
            status, body = self._route()
            self._send(status, body)
        except ApiError as error:
            self._send(error.status, {"error": {"code": error.code, "message": error.message}}, error.headers)

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        # read once, before any answer: a body left unread would reset the connection under the answer
        if not hasattr(self, "_read_body"):
            self._read_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._read_body

    def _route(self) -> tuple[int, dict]:
        self._body()
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        tenant = self.vault.tenant
        if self.command == "POST" and path == "/_test/faults":
            self.vault.faults = int(json.loads(self._body())["count"])
            return 200, {"armed": self.vault.faults}
        if path == f"/{tenant}/oauth2/v2.0/token" and self.command == "POST":
            return 200, self._token(parse_qs(self._body().decode()))
        if path == f"/{tenant}/v2.0/.well-known/openid-configuration":
            return 200, self._openid_configuration()
        if path == "/common/discovery/instance":
            return 200, self._instance_discovery()
        match = KEY_PATH.match(path)
        if match is None:
            raise ApiError(404, "NotFound", f"no such endpoint: {self.command} {path}")
        if not query.get("api-version"):
            raise ApiError(400, "BadParameter", "The 'api-version' query parameter is missing.")
        self._authorize()
        with self.vault.lock:
            if self.vault.faults > 0:
                self.vault.faults -= 1
                raise ApiError(503, "ServiceUnavailable", "The service is unavailable (an armed test fault).")
        return self._key_operation(match["name"], match["version"], match["op"])

    # -- the identity platform ------------------------------------------------------------------------------------

    def _token(self, form: dict[str, list[str]]) -> dict:
        field_of = {name: values[0] for name, values in form.items()}
        if field_of.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "only client_credentials is supported here")
        if field_of.get("client_id") != self.vault.client_id:
            raise ApiError(
                400, "unauthorized_client", f"AADSTS700016: application {field_of.get('client_id')} not found"
            )
        secret_ok = field_of.get("client_secret") == self.vault.client_secret
        assertion_ok = (
            self.vault.federated_token is not None
            and field_of.get("client_assertion_type") == ASSERTION_TYPE
            and field_of.get("client_assertion") == self.vault.federated_token
        )
        if not (secret_ok or assertion_ok):
            raise ApiError(401, "invalid_client", "AADSTS7000215: invalid client secret or assertion")
        scope = field_of.get("scope", "")
        if not scope.endswith("/.default"):
            raise ApiError(400, "invalid_scope", f"AADSTS70011: scope {scope!r} is not <resource>/.default")
        token = secrets.token_urlsafe(32)
        self.vault.tokens[token] = (scope.removesuffix("/.default"), time.time() + TOKEN_SECONDS)
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "ext_expires_in": TOKEN_SECONDS,
            "access_token": token,
        }

    def _openid_configuration(self) -> dict:
        base = f"{self.vault.base_url}/{self.vault.tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def _instance_discovery(self) -> dict:
        host = urlsplit(self.vault.base_url).netloc
        configuration = f"{self.vault.base_url}/{self.vault.tenant}/v2.0/.well-known/openid-configuration"
        return {
            "tenant_discovery_endpoint": configuration,
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }

    # -- the vault ----------------------------------------------------------------------------------------------------

    def _authorize(self) -> None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        audience, expiry = self.vault.tokens.get(token, ("", 0.0))
        if scheme.lower() == "bearer" and audience == self.vault.base_url and expiry > time.time():
            return
        challenge = (
            f'Bearer authorization="{self.vault.base_url}/{self.vault.tenant}", resource="{self.vault.base_url}"'
        )
        raise ApiError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                       {"WWW-Authenticate": challenge})  # fmt: skip

    def _key_operation(self, name: str, version: str | None, op: str | None) -> tuple[int, dict]:
        vault = self.vault
        if op == "create" and self.command == "POST" and version is None:
            request = json.loads(self._body() or b"{}")
            if request.get("kty") not in ("EC", "EC-HSM") or request.get("crv", "P-256") != "P-256":
                raise ApiError(400, "BadParameter", "this stand-in creates only EC P-256 keys")
            new_version = uuid.uuid4().hex
            vault.keys.setdefault(name, {})[new_version] = ec.generate_private_key(ec.SECP256R1())
            vault.latest[name] = new_version
            return 200, vault.bundle(name, new_version)
        if name not in vault.keys or (version is not None and version not in vault.keys[name]):
            raise ApiError(
                404, "KeyNotFound", f"A key with (name/id) {name}/{version or ''} was not found in this key vault."
            )
        version = version or vault.latest[name]
        if op is None and self.command == "GET":
            return 200, vault.bundle(name, version)
        if op == "sign" and self.command == "POST":
            return 200, self._sign(name, version, json.loads(self._body() or b"{}"))
        raise ApiError(405, "MethodNotAllowed", f"{self.command} is not allowed here")

    def _sign(self, name: str, version: str, request: dict) -> dict:
        if request.get("alg") != "ES256":
            raise ApiError(400, "BadParameter", f"Invalid algorithm {request.get('alg')!r} for an EC P-256 key.")
        digest = unb64url(str(request.get("value", "")))
        if len(digest) != 32:
            raise ApiError(400, "BadParameter", "The digest length does not match the algorithm ES256 (32 bytes).")
        der = self.vault.keys[name][version].sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        self.vault.signatures += 1
        return {
            "kid": f"{self.vault.base_url}/keys/{name}/{version}",
            "value": b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
        }


def make_server(
    port: int, vault: Vault, certificate: str, private_key: str, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, private_key)
    handler = type("VaultHandler", (Handler,), {"vault": vault, "tls": context})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    vault.base_url = f"https://{host}:{server.server_address[1]}"
    return server
