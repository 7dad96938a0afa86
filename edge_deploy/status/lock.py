"""Deployment locks: one run at a time per model + commit + target.

Redis: redis-py's `Lock` (the key holds a random token, set with NX and a TTL; release and extend
are Lua scripts that act only while the key still holds that token, so a run whose lock expired
can never delete the next holder's lock). The token starts with the run id, so a refused run is
told who holds the lock. While held, a daemon thread extends it every third of the TTL; if the
holder dies, the extensions stop and the lock expires after at most one TTL.

When Redis is configured but unreachable, the lock falls back to a local file lock (the
`filelock` package: flock on Linux) with
one warning, rather than to no lock: a deployment must not fail because Redis is down, but two
runs on the same machine (the laptop case, parallel local tasks) must still not build the same
target at once. The kernel drops a flock when its process dies, so a killed holder never leaves
a stale lock. A file lock does not keep runs on different machines apart; the warning says so.
Without REDIS_URL the file lock is the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import filelock
import redis
import redis.exceptions

from edge_deploy.errors import EdgeDeployError
from edge_deploy.status.best_effort import REDIS_FAILURES
from edge_deploy.status.redis_status import KEY_PREFIX

log = logging.getLogger(__name__)

DEFAULT_TTL_MS = 120_000  # extended while held, so this only bounds how long a dead holder blocks others


class LockHeldError(EdgeDeployError):
    """Another run holds the deployment lock; the message names that run and the lock key."""


@dataclass(frozen=True)
class LockTarget:
    """What a deployment lock protects: one model version going to one target."""

    model_repo: str
    commit_id: str
    target: str  # e.g. an OCI platform or a registry repository

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}:lock:{self.model_repo}:{self.commit_id}:{self.target}"

    def describe(self) -> str:
        return f"model {self.model_repo!r} at commit {self.commit_id} for target {self.target!r}"


class Lock(Protocol):
    target: LockTarget
    run_id: str

    def try_acquire(self) -> bool: ...

    def release(self) -> bool: ...

    def holder(self) -> str | None: ...


class RedisLock:
    def __init__(self, client: redis.Redis, target: LockTarget, run_id: str, ttl_ms: int = DEFAULT_TTL_MS) -> None:
        self.client, self.target, self.run_id, self.ttl_ms = client, target, run_id, ttl_ms
        self._token = f"{run_id}|{secrets.token_hex(16)}"
        self._lock = client.lock(target.key, timeout=ttl_ms / 1000, thread_local=False)

    def try_acquire(self) -> bool:
        return self._lock.acquire(blocking=False, token=self._token)

    def release(self) -> bool:
        try:
            self._lock.release()
        except redis.exceptions.LockError:  # expired, and maybe taken by the next run: not ours to delete
            return False
        return True

    def extend(self) -> bool:
        try:
            return self._lock.extend(self.ttl_ms / 1000, replace_ttl=True)
        except redis.exceptions.LockError:
            return False

    def holder(self) -> str | None:
        value = self.client.get(self.target.key)
        if value is None:
            return None
        return (value.decode() if isinstance(value, bytes) else value).rpartition("|")[0]


class FileLock:
    """An exclusive file lock on `{directory}/{sha256 of the key}.lock`; `.holder` beside it names the run."""

    def __init__(self, directory: Path, target: LockTarget, run_id: str) -> None:
        self.target, self.run_id = target, run_id
        self.path = Path(directory) / (hashlib.sha256(target.key.encode()).hexdigest()[:32] + ".lock")
        self.holder_path = self.path.with_suffix(".holder")
        self._lock = filelock.FileLock(self.path, thread_local=False)

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        temp = self.holder_path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temp.write_text(json.dumps({"run_id": self.run_id, "key": self.target.key}))
        temp.replace(self.holder_path)
        return True

    def release(self) -> bool:
        if not self._lock.is_locked:
            return False
        self.holder_path.unlink(missing_ok=True)
        self._lock.release()
        return True

    def holder(self) -> str | None:
        try:
            return json.loads(self.holder_path.read_text()).get("run_id")
        except (OSError, ValueError):
            return None


class DeploymentLocks:
    """Makes deployment locks: in Redis when configured and answering, else local file locks."""

    def __init__(self, lock_dir: Path, client: redis.Redis | None = None, where: str = "Redis") -> None:
        self.lock_dir, self.client, self.where = Path(lock_dir), client, where
        self._redis_usable = client is not None
        self._warned = threading.Lock()

    @contextmanager
    def hold(self, target: LockTarget, run_id: str, wait: float = 0.0, ttl_ms: int = DEFAULT_TTL_MS) -> Iterator[Lock]:
        """Hold the lock for the block. If another run holds it, wait up to `wait` seconds, then
        raise `LockHeldError` naming that run and the key."""
        lock = self.acquire(target, run_id, wait, ttl_ms)
        keepalive = _Keepalive(lock, ttl_ms, self) if isinstance(lock, RedisLock) else None
        try:
            yield lock
        finally:
            if keepalive:
                keepalive.stop()
            self.release(lock)

    def acquire(self, target: LockTarget, run_id: str, wait: float = 0.0, ttl_ms: int = DEFAULT_TTL_MS) -> Lock:
        deadline, pause = time.monotonic() + wait, 0.05
        while True:
            lock = self._make(target, run_id, ttl_ms)
            try:
                if lock.try_acquire():
                    return lock
                holder = lock.holder()
            except REDIS_FAILURES as exc:
                if not isinstance(lock, RedisLock):
                    raise EdgeDeployError(
                        f"cannot take the deployment lock {target.key} in {self.lock_dir}: {exc}"
                    ) from None
                self._degrade(exc)
                continue  # try again at once, with a file lock
            if time.monotonic() >= deadline:
                raise LockHeldError(_held_message(target, holder, wait))
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 1.0)

    def release(self, lock: Lock) -> None:
        try:
            if not lock.release():
                log.warning(
                    "deployment lock %s was no longer held by run %s (it expired)", lock.target.key, lock.run_id
                )
        except REDIS_FAILURES as exc:
            self._degrade(exc)  # it expires on its own after its TTL

    def _make(self, target: LockTarget, run_id: str, ttl_ms: int) -> Lock:
        if self._redis_usable and self.client is not None:
            return RedisLock(self.client, target, run_id, ttl_ms)
        return FileLock(self.lock_dir, target, run_id)

    def _degrade(self, exc: BaseException) -> None:
        with self._warned:
            if not self._redis_usable:
                return
            self._redis_usable = False
        log.warning(
            "deployment lock: %s failed (%s: %s); locking with local files in %s instead, which keeps runs on "
            "this machine apart but not runs on other machines",
            self.where,
            type(exc).__name__,
            exc,
            self.lock_dir,
        )


class _Keepalive:
    """Extends a Redis lock every third of its TTL until stopped (or until the process dies)."""

    def __init__(self, lock: RedisLock, ttl_ms: int, locks: DeploymentLocks) -> None:
        self.lock, self.locks = lock, locks
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ttl_ms / 3000,), daemon=True, name="lock-keepalive")
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                if not self.lock.extend():
                    log.error("deployment lock %s was lost (expired and taken over)", self.lock.target.key)
                    return
            except REDIS_FAILURES as exc:
                self.locks._degrade(exc)
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _held_message(target: LockTarget, holder: str | None, wait: float) -> str:
    who = f"run {holder!r}" if holder else "another run"
    waited = f"; gave up after waiting {wait:g}s" if wait > 0 else ""
    return f"{target.describe()} is being deployed by {who} (lock {target.key}){waited}"
