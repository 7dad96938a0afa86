"""Who may call the API: static API tokens (stored hashed) and OIDC JWTs (e.g. Microsoft Entra ID).

Every endpoint but the health checks needs `Authorization: Bearer <token>` with a scope:
`read` (records, runs, events, platforms, metrics) or `deploy` (queue and cancel deployments).
A deployment that loosens a safety check (edge_deploy.policy: gate tolerances, a base image off the
allow-list) needs `policy` as well.

Static tokens: a YAML document, from EDGE_API_TOKENS_FILE (a mounted Kubernetes Secret; re-read when
it changes) or EDGE_API_TOKENS, that holds only each token's sha256:

    tokens:
      - name: release-pipeline          # shown in logs and in a job's `principal`
        sha256: 5e884898da28...          # `edge-deploy api-token` makes a token and this line
        scopes: [read, deploy]

OIDC: a JWT signed by a key of the issuer's JWKS, with the configured `iss`, one of the configured
audiences, and a valid `exp`/`nbf`. Its `roles` claim (Entra ID app roles, in tokens issued to
services by the client-credentials flow) and `scp`/`scope` claims (delegated scopes) are mapped to
`read` and `deploy` by EDGE_API_OIDC_READ_ROLES / EDGE_API_OIDC_DEPLOY_ROLES.

With neither configured the caller is anonymous with both scopes, and `edge-deploy serve` refuses
to listen anywhere but loopback. A token never appears in a log line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import yaml

from app.core.config import OIDCSettings, ServiceSettings, is_loopback
from app.core.signing_keys import KeysUnavailable, SigningKeys, UnknownKey
from edge_deploy.errors import ConfigError

log = logging.getLogger(__name__)

READ, DEPLOY, POLICY = "read", "deploy", "policy"
SCOPES = (READ, DEPLOY, POLICY)
TOKEN_PREFIX = "edt_"
RELOAD_CHECK_SECONDS = 5.0
JWT_ALGORITHMS = ["RS256"]  # what Entra ID signs access tokens with
CLOCK_SKEW_SECONDS = 60


class AuthError(Exception):
    """A request's credentials were refused: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str, bearer_error: str = "invalid_token") -> None:
        super().__init__(message)
        self.status, self.message, self.bearer_error = status, message, bearer_error


class AuthUnavailable(Exception):
    """The issuer's signing keys could not be fetched: the token cannot be checked now (503)."""


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    kind: str  # token | oidc | anonymous


ANONYMOUS = Principal("anonymous", frozenset(SCOPES), "anonymous")


def token_digest(token: str) -> str:
    # A plain sha256 suffices: tokens are 256-bit random strings, not passwords that could be guessed.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# -- static tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenEntry:
    name: str
    sha256: str
    scopes: frozenset[str]


def parse_token_document(text: str, source: str) -> dict[str, TokenEntry]:
    """{sha256: entry}; a malformed document fails naming the entry and field (never a token)."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: expected a mapping with a `tokens` list")
    table: dict[str, TokenEntry] = {}
    names: set[str] = set()
    for index, item in enumerate(entries):
        where = f"{source}: tokens[{index}]"
        if not isinstance(item, dict) or set(item) - {"name", "sha256", "scopes"}:
            raise ConfigError(f"{where}: expected name, sha256 and scopes")
        name, digest, scopes = item.get("name"), str(item.get("sha256", "")).lower(), item.get("scopes")
        if not isinstance(name, str) or not name.strip() or name in names:
            raise ConfigError(f"{where}.name: a non-empty name used once, got {name!r}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}.sha256: the token's sha256 in hex (64 characters)")
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(SCOPES):
            raise ConfigError(f"{where}.scopes: a non-empty list of {', '.join(SCOPES)}, got {scopes!r}")
        names.add(name)
        table[digest] = TokenEntry(name, digest, frozenset(scopes))
    return table


class StaticTokens:
    """The token table, from a file (re-read when it changes, as a mounted Secret does) or a text."""

    def __init__(self, path: Path | None = None, text: str | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._table = parse_token_document(text, "EDGE_API_TOKENS") if text is not None else {}
        if path is not None:
            self._reload()

    def lookup(self, token: str) -> Principal | None:
        self._maybe_reload()
        digest = token_digest(token)
        entry = self._table.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            return None
        return Principal(entry.name, entry.scopes, "token")

    def _maybe_reload(self) -> None:
        if self.path is None or time.monotonic() - self._checked < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked = time.monotonic()
            try:
                self._reload()
            except (ConfigError, OSError) as exc:  # keep serving the last good table
                log.error("API tokens: %s stays as it was: %s", self.path, exc)

    def _reload(self) -> None:
        assert self.path is not None
        stat = os.stat(self.path)
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        self._table = parse_token_document(self.path.read_text(), str(self.path))
        self._stamp = stamp
        log.info("API tokens: %d loaded from %s", len(self._table), self.path)


# -- OIDC ----------------------------------------------------------------------------------------


class OIDCVerifier:
    def __init__(self, settings: OIDCSettings) -> None:
        parts = urlsplit(settings.jwks_url)
        if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
            raise ConfigError("EDGE_API_OIDC_JWKS_URL must be https (plain http only on loopback, for tests)")
        self.settings = settings
        self.keys = SigningKeys(settings.jwks_url)  # fetched in the background, never on a request's time

    async def verify(self, token: str) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.DecodeError as exc:
            raise AuthError(401, f"the JWT cannot be checked: {exc}") from None
        if not isinstance(kid, str) or not kid:
            raise AuthError(401, "the JWT names no signing key (kid)")
        try:
            key = await self.keys.key(kid)
        except UnknownKey:
            raise AuthError(401, "the JWT's signing key (kid) is not one of the issuer's keys") from None
        except KeysUnavailable as exc:
            raise AuthUnavailable(str(exc)) from None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=JWT_ALGORITHMS,
                audience=list(self.settings.audiences),
                issuer=self.settings.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"the JWT was refused: {exc}") from None
        return Principal(f"oidc:{_caller(claims)}", self._scopes(claims), "oidc")

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        # claims are the issuer's, but typed by nobody: only strings count (a `roles` object is no role)
        roles = claims.get("roles")
        granted = {role for role in roles if isinstance(role, str)} if isinstance(roles, list) else set()
        for claim in ("scp", "scope"):
            if isinstance(claims.get(claim), str):
                granted |= set(claims[claim].split())
        scopes = set()
        if granted & set(self.settings.read_roles):
            scopes.add(READ)
        if granted & set(self.settings.deploy_roles):
            scopes.add(DEPLOY)
        if granted & set(self.settings.policy_roles):
            scopes.add(POLICY)
        return frozenset(scopes)


def _caller(claims: dict[str, Any]) -> str:
    # Entra ID: azp (v2) / appid (v1) name the calling application; sub is per application and user.
    for claim in ("azp", "appid", "sub"):
        if isinstance(claims.get(claim), str) and claims[claim]:
            return claims[claim]
    return "unknown"


# -- both ----------------------------------------------------------------------------------------


class Authenticator:
    def __init__(self, tokens: StaticTokens | None, oidc: OIDCVerifier | None) -> None:
        self.tokens, self.oidc = tokens, oidc

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Authenticator:
        tokens = None
        if settings.tokens_file is not None or settings.tokens_document is not None:
            text = settings.tokens_document.reveal() if settings.tokens_document else None
            tokens = StaticTokens(settings.tokens_file, text)
        return cls(tokens, OIDCVerifier(settings.oidc) if settings.oidc else None)

    @property
    def configured(self) -> bool:
        return self.tokens is not None or self.oidc is not None

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.configured:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "this endpoint needs `Authorization: Bearer <token>`", bearer_error="")
        if token.count(".") == 2 and self.oidc is not None:
            return await self.oidc.verify(token)
        principal = self.tokens.lookup(token) if self.tokens is not None else None
        if principal is None:
            jwt_refused = token.count(".") == 2 and self.oidc is None
            hint = " (JWTs are not accepted: no OIDC issuer is configured)" if jwt_refused else ""
            raise AuthError(401, "the bearer token is not a known API token" + hint)
        return principal

    @staticmethod
    def require(principal: Principal, scope: str) -> None:
        if scope not in principal.scopes:
            raise AuthError(403, f"{principal.name} lacks the {scope!r} scope", bearer_error="insufficient_scope")
