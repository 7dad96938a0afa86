"""The OIDC issuer's signing keys (its JWKS), kept off the request path.

One background thread fetches the key set at start, again every `refresh_seconds`, and when a
token names a key id the set does not hold (at most once per `min_interval_seconds`, as issuers
rotate keys rarely; a flood of made-up key ids costs the key server one request per interval).
A request never waits on the network: it reads the cached set, and for an unknown key id waits at
most `wait_seconds` (asynchronously, on the event loop, holding no thread) for a refresh.

    known key id                                   -> the key
    unknown, and the set was fetched just now      -> 401 at once (the issuer has no such key)
    unknown, a refresh lands within the wait       -> the key, or 401 when it is still unknown
    unknown, no refresh lands (key server down or  -> 503 with Retry-After: the token cannot be
    hanging)                                          checked now
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable

import jwt

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024  # Entra ID's key set is a few KB


class UnknownKey(Exception):
    """The issuer's current key set has no key with this id (401)."""


class KeysUnavailable(Exception):
    """The key set could not be fetched in time to check this token (503)."""


def fetch_jwks(url: str, timeout: float) -> dict[str, jwt.PyJWK]:
    """The key set at `url`: {kid: key}, signing keys only; raises OSError or ValueError."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # https or loopback (checked)
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        body = answer.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        key_set = jwt.PyJWKSet.from_dict(json.loads(body))
    except (ValueError, jwt.PyJWKSetError) as exc:
        raise ValueError(f"not a JWK set: {exc}") from None
    return {key.key_id: key for key in key_set.keys if key.key_id and key.public_key_use in (None, "sig")}


class SigningKeys:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        wait_seconds: float = 0.5,
        refresh_seconds: float = 300.0,
        min_interval_seconds: float = 10.0,
        fetch: Callable[[str, float], dict[str, jwt.PyJWK]] = fetch_jwks,
    ) -> None:
        self.url, self.timeout, self.wait = url, timeout_seconds, wait_seconds
        self.refresh_seconds, self.min_interval = refresh_seconds, min_interval_seconds
        self._fetch = fetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last successful fetch
        self._attempted_at = float("-inf")
        self._last_error = "not fetched yet"
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jwks-refresh", daemon=True)
        self._thread.start()

    async def key(self, kid: str) -> jwt.PyJWK:
        """The signing key `kid`; raises UnknownKey or KeysUnavailable within `wait_seconds`."""
        asked = time.monotonic()
        found = self._keys.get(kid)
        if found is not None:
            return found
        if self._fetched_at is not None and asked - self._fetched_at < self.min_interval:
            raise UnknownKey(kid)
        self._wanted.set()
        while time.monotonic() - asked < self.wait:
            await asyncio.sleep(0.02)
            if (found := self._keys.get(kid)) is not None:
                return found
            if self._fetched_at is not None and self._fetched_at >= asked:
                raise UnknownKey(kid)
        raise KeysUnavailable(f"cannot fetch the issuer's signing keys: {self._last_error}")

    def close(self) -> None:
        self._stopped.set()
        self._wanted.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            since = time.monotonic() - self._attempted_at
            if since < self.min_interval:  # never more often, whatever the requests ask
                self._stopped.wait(self.min_interval - since)
                continue
            self._refresh()
            self._wanted.wait(self.refresh_seconds if self._fetched_at is not None else self.min_interval)
            self._wanted.clear()

    def _refresh(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            keys = self._fetch(self.url, self.timeout)
        except (OSError, ValueError) as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning("OIDC: the signing keys at %s could not be fetched: %s", self.url, self._last_error)
            return
        self._keys, self._fetched_at = keys, time.monotonic()
        log.info("OIDC: %d signing keys fetched from %s", len(keys), self.url)
