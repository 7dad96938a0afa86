"""A small client of the OCI distribution (registry v2) HTTP API: manifests and image indexes.

Auth follows the registry's `WWW-Authenticate` challenge, as the Docker engine does: `Basic` (htpasswd
registries) sends the credentials; `Bearer realm=...,service=...,scope=...` (ACR, Docker Hub,
distribution's token auth) fetches a token from the realm with the credentials as basic auth and
retries with it. Connection failures, timeouts, 429 and 5xx are retried with backoff, a bounded
number of times; 401/403 are not (wrong credentials do not get better).

Why a client of our own: the Docker SDK speaks to the engine, and the engine cannot put an image
index into a registry (only the experimental `docker manifest` CLI can); oras-py can, but it brings
its own auth and retry layers for the four calls used here (HEAD, GET and PUT of a manifest, and the
token exchange), where this client shares the project's retry rule and error types.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests

from edge_deploy.config import RegistrySettings
from edge_deploy.errors import TransientError
from edge_deploy.images.errors import RegistryAuthError, RegistryError, RegistryUnavailableError
from edge_deploy.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
ALL_MANIFESTS = (*IMAGE_MANIFESTS, OCI_INDEX, DOCKER_MANIFEST_LIST)
REQUEST_TIMEOUT = (10, 120)  # connect, read (seconds)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def image_size(self) -> int:
        """Bytes the registry stores for this image: config + (compressed) layers."""
        document = self.document
        return int(document["config"]["size"]) + sum(int(layer["size"]) for layer in document.get("layers", []))


@dataclass(frozen=True)
class IndexEntry:
    media_type: str
    digest: str
    size: int
    platform: Mapping[str, str]  # {"architecture", "os", "variant"?}


class RegistryClient:
    def __init__(self, settings: RegistrySettings, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.settings, self.policy = settings, policy
        self.base_url = f"{'http' if settings.insecure else 'https'}://{settings.host}"
        # REQUESTS_CA_BUNDLE would override a Session's `verify`: pass it with every request instead
        self.verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
        self.session = requests.Session()
        self._authorization: dict[str, str] = {}  # scope -> Authorization header value

    @property
    def namespace(self) -> str:
        return self.settings.server.partition("/")[2].strip("/")

    def repository_name(self, repository: str) -> str:
        """The API name of a repository under EDGE_REGISTRY's namespace (host/ns + models/x -> ns/models/x)."""
        return f"{self.namespace}/{repository}" if self.namespace else repository

    def repository_reference(self, repository: str) -> str:
        """host[:port][/namespace]/repository: how an image reference names the repository."""
        return f"{self.settings.server.rstrip('/')}/{repository}"

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.repository_reference(repository)}:{tag}"

    def check_access(self, repository: str) -> None:
        """Fail early (before any build) when the registry is down or refuses the credentials for push."""
        self._request("GET", "/v2/", scope=_scope(self.repository_name(repository)), what="registry check")

    def manifest_digest(self, repository: str, reference: str, accept: tuple[str, ...] = ALL_MANIFESTS) -> str | None:
        """The digest a tag (or digest) resolves to, or None when it does not exist."""
        name = self.repository_name(repository)
        response = self._request(
            "HEAD", f"/v2/{name}/manifests/{reference}", scope=_scope(name), headers={"Accept": ", ".join(accept)},
            allowed=(404,), what=f"{name}:{reference}",
        )  # fmt: skip
        return None if response.status_code == 404 else response.headers.get("Docker-Content-Digest")

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        name = self.repository_name(repository)
        response = self._request(
            "GET", f"/v2/{name}/manifests/{reference}", scope=_scope(name),
            headers={"Accept": ", ".join(ALL_MANIFESTS)}, what=f"{name}:{reference}",
        )  # fmt: skip
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        media_type = response.headers.get("Content-Type", "").split(";")[0] or json.loads(response.content)["mediaType"]
        return Manifest(media_type, digest, response.content)

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        name = self.repository_name(repository)
        response = self._request(
            "PUT", f"/v2/{name}/manifests/{reference}", scope=_scope(name),
            headers={"Content-Type": media_type}, data=body, what=f"{name}:{reference}",
        )  # fmt: skip
        expected = "sha256:" + hashlib.sha256(body).hexdigest()
        returned = response.headers.get("Docker-Content-Digest", expected)
        if returned != expected:
            raise RegistryError(f"{name}:{reference}: the registry stored digest {returned}, expected {expected}")
        return expected

    def put_manifest_with_subject(self, repository: str, media_type: str, body: bytes) -> tuple[str, bool]:
        """PUT a manifest that names a `subject`, by its digest. Returns (digest, indexed): whether the
        registry says it indexed the subject (`OCI-Subject`, OCI distribution 1.1); if not, the client
        must keep the referrers tag itself."""
        name = self.repository_name(repository)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        response = self._request(
            "PUT", f"/v2/{name}/manifests/{digest}", scope=_scope(name),
            headers={"Content-Type": media_type}, data=body, what=f"{name}@{digest}",
        )  # fmt: skip
        return digest, bool(response.headers.get("OCI-Subject"))

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose subject is `digest` (the referrers API), or None when
        the registry has no referrers API (a 404, as OCI distribution 1.1 has clients expect)."""
        name = self.repository_name(repository)
        response = self._request(
            "GET", f"/v2/{name}/referrers/{digest}", scope=_scope(name),
            headers={"Accept": OCI_INDEX}, allowed=(404,), what=f"referrers of {name}@{digest}",
        )  # fmt: skip
        if response.status_code == 404:
            return None
        return list(json.loads(response.content).get("manifests") or [])

    def image_labels(self, repository: str, digest: str) -> dict[str, str]:
        """The labels in the config of the image manifest `digest`."""
        config_digest = self.get_manifest(repository, digest).document["config"]["digest"]
        return dict((json.loads(self.get_blob(repository, config_digest)).get("config") or {}).get("Labels") or {})

    def has_blob(self, repository: str, digest: str) -> bool:
        name = self.repository_name(repository)
        response = self._request(
            "HEAD", f"/v2/{name}/blobs/{digest}", scope=_scope(name), allowed=(404,), what=f"blob {digest}"
        )
        return response.status_code != 404

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` as one blob (a monolithic upload: POST, then PUT with the digest), unless the
        repository has it already. Returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(repository, digest):
            return digest
        name = self.repository_name(repository)
        started = self._request("POST", f"/v2/{name}/blobs/uploads/", scope=_scope(name), what=f"upload to {name}")
        location = _relative(started.headers.get("Location", ""), self.base_url)
        separator = "&" if "?" in location else "?"
        self._request(
            "PUT", f"{location}{separator}digest={digest}", scope=_scope(name),
            headers={"Content-Type": "application/octet-stream"}, data=data, what=f"blob {digest}",
        )  # fmt: skip
        return digest

    def get_blob(self, repository: str, digest: str) -> bytes:
        """The blob `digest`, checked against its digest."""
        name = self.repository_name(repository)
        response = self._request("GET", f"/v2/{name}/blobs/{digest}", scope=_scope(name), what=f"blob {digest}")
        if "sha256:" + hashlib.sha256(response.content).hexdigest() != digest:
            raise RegistryError(f"registry {self.settings.host}: blob {digest} of {name} does not match its digest")
        return response.content

    def download_blob(self, repository: str, digest: str, out: BinaryIO) -> None:
        """Stream the blob `digest` (a layer may be a gigabyte) into `out`, checked against its digest."""
        name = self.repository_name(repository)
        response = self._request(
            "GET", f"/v2/{name}/blobs/{digest}", scope=_scope(name), what=f"blob {digest}", stream=True
        )
        hasher = hashlib.sha256()
        with response:
            for chunk in response.iter_content(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            raise RegistryError(f"registry {self.settings.host}: blob {digest} of {name} does not match its digest")

    def put_index(self, repository: str, tag: str, entries: list[IndexEntry]) -> tuple[str, bool]:
        """PUT a multi-platform index over `entries` under `tag`, unless the tag already holds exactly
        it. Returns (digest, pushed). Docker manifests go into a Docker manifest list, OCI ones into an
        OCI image index (what the engine expects of each)."""
        media_type, body = index_body(entries)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if self.manifest_digest(repository, tag) == digest:
            return digest, False
        return self.put_manifest(repository, tag, media_type, body), True

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        allowed: tuple[int, ...] = (),
        stream: bool = False,
    ) -> requests.Response:
        def attempt() -> requests.Response:
            return self._send_authorized(method, path, scope, dict(headers or {}), data, allowed, what, stream)

        try:
            return call_with_retry(attempt, f"registry {self.settings.host} ({what})", self.policy)
        except RegistryUnavailableError:
            raise
        except TransientError as exc:
            raise RegistryUnavailableError(
                f"registry {self.settings.host} is unavailable ({what}): {exc}; check that EDGE_REGISTRY is right "
                "and the registry is up"
            ) from None

    def _send_authorized(
        self,
        method: str,
        path: str,
        scope: str,
        headers: dict[str, str],
        data: bytes | None,
        allowed: tuple[int, ...],
        what: str,
        stream: bool = False,
    ) -> requests.Response:
        if scope in self._authorization:
            headers["Authorization"] = self._authorization[scope]
        response = self._send(method, self.base_url + path, headers=headers, data=data, stream=stream)
        if response.status_code == 401:
            # no credentials sent yet, or a cached bearer token expired: answer the challenge once
            self._authorization[scope] = headers["Authorization"] = self._answer_challenge(response, scope)
            response = self._send(method, self.base_url + path, headers=headers, data=data, stream=stream)
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code, scope)
        if response.status_code >= 400 and response.status_code not in allowed:
            raise RegistryError(f"registry {self.settings.host}: {method} {what} -> {_describe(response)}")
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=REQUEST_TIMEOUT, verify=self.verify, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"TLS with registry {self.settings.host} failed ({type(exc).__name__}); for a private CA set "
                "EDGE_REGISTRY_CA_BUNDLE, for a plain-HTTP registry EDGE_REGISTRY_INSECURE=true"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{type(exc).__name__}: {_short(exc)}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"HTTP {response.status_code}")
        return response

    def _answer_challenge(self, response: requests.Response, scope: str) -> str:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        credentials = self._credentials()
        if scheme.lower() == "basic":
            if credentials is None:
                raise self._auth_error(401, scope)
            return requests.auth._basic_auth_str(*credentials)
        if scheme.lower() == "bearer" and params.get("realm"):
            return "Bearer " + self._fetch_token(params, scope, credentials)
        raise RegistryError(f"registry {self.settings.host}: unsupported auth challenge {scheme or '(none)'!r}")

    def _fetch_token(self, params: Mapping[str, str], scope: str, credentials: tuple[str, str] | None) -> str:
        query = {"service": params["service"]} if params.get("service") else {}
        if scope:
            query["scope"] = scope
        token_response = self._send("GET", params["realm"], params=query, auth=credentials)
        if token_response.status_code in (401, 403):
            raise self._auth_error(token_response.status_code, scope)
        if not token_response.ok:
            raise RegistryError(f"registry token service {params['realm']}: {_describe(token_response)}")
        document = token_response.json()
        token = document.get("token") or document.get("access_token")
        if not token:
            raise RegistryError(f"registry token service {params['realm']} returned no token")
        return token

    def _credentials(self) -> tuple[str, str] | None:
        if self.settings.username and self.settings.password:
            return self.settings.username, self.settings.password.reveal()
        return None

    def _auth_error(self, status: int, scope: str) -> RegistryAuthError:
        who = f"the credentials of user {self.settings.username!r}" if self.settings.username else "anonymous access"
        what = f" for {scope}" if scope else ""
        return RegistryAuthError(
            f"registry {self.settings.host} refused {who}{what} (HTTP {status}); "
            "check EDGE_REGISTRY_USERNAME and EDGE_REGISTRY_PASSWORD "
            "(ACR: a service principal or repository token with push rights)"
        )


def _relative(location: str, base_url: str) -> str:
    """An upload Location as a path on this registry (registries answer absolute or relative ones)."""
    if not location:
        raise RegistryError("the registry started an upload without saying where (no Location header)")
    if location.startswith(("http://", "https://")):
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return location if location.startswith("/") else f"/{location}"


def index_body(entries: list[IndexEntry]) -> tuple[str, bytes]:
    """The JSON of an index over `entries`, sorted by platform so the same images give the same digest."""
    if not entries:
        raise ValueError("an index needs at least one image")
    all_docker = all(entry.media_type == DOCKER_MANIFEST for entry in entries)
    media_type = DOCKER_MANIFEST_LIST if all_docker else OCI_INDEX
    ordered = sorted(entries, key=lambda e: (e.platform.get("os", ""), e.platform.get("architecture", ""), e.digest))
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {"mediaType": e.media_type, "digest": e.digest, "size": e.size, "platform": dict(e.platform)}
            for e in ordered
        ],
    }
    return media_type, json.dumps(document, indent=3).encode()


def _scope(name: str) -> str:
    # one scope for everything this client does (it exists to push), as the engine asks for when pushing
    return f"repository:{name}:pull,push"


def _describe(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except ValueError:
        detail = response.text[:200]
    return f"HTTP {response.status_code}" + (f" ({detail})" if detail else "")


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."
