"""A signing key that never leaves Azure Key Vault: the SHA-256 digest goes to the vault's `sign`
operation (ES256), the public key is read from the vault, and the vault's r || s answer becomes the
DER signature cosign writes.

    EDGE_SIGNING_KEY_URI   https://<vault>.vault.azure.net/keys/<name>[/<version>]

Tokens come from the Microsoft identity platform's client credentials flow, with what AKS workload
identity mounts (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE: the federated token
is the client assertion) or a client secret (AZURE_CLIENT_SECRET); AZURE_AUTHORITY_HOST for other
clouds. Managed identity through the instance metadata endpoint is not supported.

The resource a token is for comes from the vault's 401 challenge, as Microsoft's SDK does it, and a
token is asked for only when that resource's host is the vault's host or a parent domain of it: a
mistyped URI never receives a token for another vault. Connection failures, timeouts, 429 and 5xx
are retried (bounded); any other answer fails at once, naming the key and the vault's error code.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from edge_deploy.config import AzureIdentity
from edge_deploy.errors import ConfigError, EdgeDeployError, TransientError
from edge_deploy.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from edge_deploy.signing.keys import PublicKey

API_VERSION = "7.5"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TIMEOUT = (10, 60)
KEY_URI = re.compile(r"^https://[^/]+/keys/(?P<name>[0-9A-Za-z-]{1,127})(?:/(?P<version>[0-9A-Za-z]{1,64}))?/?$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class KeyVaultError(EdgeDeployError):
    """Key Vault or the identity platform refused a request; the message names the key and the reason."""


@dataclass
class _Token:
    value: str
    expires: float


class KeyVaultKey:
    """The Key Vault key at `uri`, used like `SigningKey` (sign, public)."""

    def __init__(self, uri: str, identity: AzureIdentity, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        if not KEY_URI.match(uri):
            raise ConfigError(f"EDGE_SIGNING_KEY_URI must be https://<vault>/keys/<name>[/<version>], got {uri!r}")
        self.uri, self.identity, self.policy = uri.rstrip("/"), identity, policy
        self.session = requests.Session()
        self._token: _Token | None = None
        self._scope: tuple[str, str] | None = None  # (tenant, scope) from the vault's challenge
        self._public: PublicKey | None = None
        self._kid = ""  # the key's full id, version included: every signature names the same version
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyVaultKey({self.uri!r})"

    @property
    def public(self) -> PublicKey:
        with self._lock:
            if self._public is None:
                self._public, self._kid = self._read_key()
            return self._public

    def sign(self, payload: bytes) -> bytes:
        """ES256 over `payload` by the vault, DER-encoded; checked with the public key before it is used."""
        return self.sign_digest(hashlib.sha256(payload).digest())

    def sign_digest(self, digest: bytes) -> bytes:
        """ES256 over a SHA-256 `digest` (the vault signs digests: the payload never leaves this host)."""
        public = self.public
        answer = self._call("POST", f"{self._kid}/sign", {"alg": "ES256", "value": _b64url(digest)})
        raw = _unb64url(str(answer.get("value", "")))
        if len(raw) != 64:
            raise KeyVaultError(f"Key Vault key {self.uri}: a P-256 signature is 64 bytes, the vault sent {len(raw)}")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise KeyVaultError(
                f"Key Vault key {self.uri}: the vault's signature does not verify with its public key"
            ) from None
        return der

    # -- the vault -----------------------------------------------------------------------------------------------

    def _read_key(self) -> tuple[PublicKey, str]:
        bundle = self._call("GET", self.uri, None)
        jwk = bundle.get("key") or {}
        if jwk.get("kty") not in ("EC", "EC-HSM") or jwk.get("crv") != "P-256":
            raise ConfigError(
                f"EDGE_SIGNING_KEY_URI {self.uri} is a {jwk.get('kty')} {jwk.get('crv') or ''} key; "
                "cosign signatures need an EC P-256 key (az keyvault key create --kty EC --curve P-256)"
            )
        if "sign" not in (jwk.get("key_ops") or ["sign"]):
            raise ConfigError(f"EDGE_SIGNING_KEY_URI {self.uri} does not allow the sign operation (key_ops)")
        x, y = (int.from_bytes(_unb64url(jwk[axis]), "big") for axis in ("x", "y"))
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        return PublicKey(key), str(jwk.get("kid") or self.uri)

    def _call(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            response = self._send(method, url, body, self._bearer())
            if response.status_code == 401:  # no token yet, or an expired one: answer the challenge once
                self._token, self._scope = None, self._challenge(response)
                response = self._send(method, url, body, self._bearer())
            if response.status_code >= 400:
                raise KeyVaultError(f"Key Vault key {self.uri}: {method} {_path(url)} -> {_describe(response)}")
            return response.json()

        return call_with_retry(attempt, f"Key Vault key {self.uri}", self.policy)

    def _send(self, method: str, url: str, body: dict[str, Any] | None, bearer: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            response = self.session.request(
                method, url, params={"api-version": API_VERSION}, json=body, headers=headers, timeout=TIMEOUT
            )
        except requests.exceptions.SSLError as exc:
            raise KeyVaultError(f"TLS with Key Vault {urlsplit(url).netloc} failed ({type(exc).__name__})") from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientError(type(exc).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"HTTP {response.status_code}")
        return response

    def _challenge(self, response: requests.Response) -> tuple[str, str]:
        """(tenant, scope) from `WWW-Authenticate: Bearer authorization="…/<tenant>", resource="…"`."""
        params = dict(_CHALLENGE_PARAM.findall(response.headers.get("WWW-Authenticate", "")))
        resource = params.get("resource") or params.get("scope", "").removesuffix("/.default")
        vault_host, resource_host = urlsplit(self.uri).netloc.lower(), urlsplit(resource).netloc.lower()
        if not resource_host or not (vault_host == resource_host or vault_host.endswith("." + resource_host)):
            raise KeyVaultError(
                f"Key Vault key {self.uri}: the server asks for a token for {resource or 'nothing'}, which is not "
                "this vault's: check EDGE_SIGNING_KEY_URI"
            )
        tenant = self.identity.tenant_id or urlsplit(params.get("authorization", "")).path.strip("/")
        return tenant, resource.rstrip("/") + "/.default"

    # -- the identity platform -----------------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        if self._scope is None:
            return None  # the first request goes without: the vault's challenge says which token it takes
        if self._token is None or self._token.expires < time.time() + 300:
            self._token = self._fetch_token(*self._scope)
        return self._token.value

    def _fetch_token(self, tenant: str, scope: str) -> _Token:
        identity = self.identity
        form = {"grant_type": "client_credentials", "client_id": identity.client_id, "scope": scope}
        if identity.federated_token_file is not None:  # re-read each time: the kubelet rotates it
            assertion = identity.federated_token_file.read_text().strip()
            form |= {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        elif identity.client_secret is not None:
            form["client_secret"] = identity.client_secret.reveal()
        url = f"{identity.authority_host.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        try:
            response = self.session.post(url, data=form, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"identity platform {urlsplit(url).netloc}: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"identity platform {urlsplit(url).netloc}: HTTP {response.status_code}")
        if not response.ok:
            raise KeyVaultError(
                f"the identity platform refused a token for application {identity.client_id} in tenant {tenant} "
                f"({_describe(response)}): check AZURE_CLIENT_ID, AZURE_TENANT_ID and the federated credential"
            )
        document = response.json()
        return _Token(document["access_token"], time.time() + float(document.get("expires_in", 300)))


def _describe(response: requests.Response) -> str:
    """HTTP status and the service's error code and message (Key Vault's and the identity platform's)."""
    try:
        document = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = document.get("error")
    if isinstance(error, dict):
        return f"HTTP {response.status_code} {error.get('code')}: {str(error.get('message'))[:300]}"
    if isinstance(error, str):  # the identity platform: {"error": "invalid_client", "error_description": ...}
        return f"HTTP {response.status_code} {error}: {str(document.get('error_description', ''))[:300]}"
    return f"HTTP {response.status_code}"


def _path(url: str) -> str:
    return urlsplit(url).path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
