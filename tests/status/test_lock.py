"""Deployment locks: one run per model + commit + target, in Redis, or in local files when Redis cannot help."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge_deploy.config import Secret, Settings
from edge_deploy.status import DeploymentLocks, LockHeldError, LockTarget, open_locks
from edge_deploy.status.lock import FileLock, RedisLock
from edge_deploy.status.redis_status import redis_client
from tests.fixtures.processes import free_port, wait_until
from tests.fixtures.redis import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edge_deploy.status.lock import DeploymentLocks, LockTarget
    from edge_deploy.status.redis_status import redis_client

    url, lock_dir, commit = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    locks = DeploymentLocks(lock_dir, redis_client(url) if url != "-" else None)
    with locks.hold(LockTarget("detector", commit, "linux/arm64"), "run-doomed", ttl_ms=900):
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def target(run_id: str) -> LockTarget:
    return LockTarget("detector", f"commit-{run_id}", "linux/arm64")


@pytest.fixture
def redis_locks(redis_server: RedisServer, tmp_path: Path) -> DeploymentLocks:
    return DeploymentLocks(tmp_path / "locks", redis_client(redis_server.url), "Redis")


def _holder_process(url: str, lock_dir: Path, commit: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(lock_dir), commit],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    assert line.strip() == "held", process.stderr.read()
    return process


def test_a_second_holder_is_refused_naming_the_holder_and_key(redis_locks: DeploymentLocks, target: LockTarget) -> None:
    with redis_locks.hold(target, "run-first") as lock:
        assert isinstance(lock, RedisLock)
        with pytest.raises(LockHeldError) as refused:
            redis_locks.acquire(target, "run-second")
        message = str(refused.value)
        assert "is being deployed by run 'run-first'" in message
        assert f"(lock edge-deploy:lock:detector:{target.commit_id}:linux/arm64)" in message
        assert f"model 'detector' at commit {target.commit_id} for target 'linux/arm64'" in message
    # released: the next run takes it
    with redis_locks.hold(target, "run-second") as lock:
        assert lock.holder() == "run-second"


def test_other_targets_and_commits_are_not_blocked(redis_locks: DeploymentLocks, target: LockTarget) -> None:
    with redis_locks.hold(target, "run-first") as first:
        with redis_locks.hold(LockTarget(target.model_repo, target.commit_id, "linux/amd64"), "run-2") as other_target:
            assert other_target.holder() == "run-2"
        with redis_locks.hold(LockTarget(target.model_repo, "other-commit", target.target), "run-3") as other_commit:
            assert other_commit.holder() == "run-3"
        assert first.holder() == "run-first"  # untouched by the others coming and going


def test_a_waiting_run_gets_the_lock_when_the_holder_releases(redis_locks: DeploymentLocks, target: LockTarget) -> None:
    first = redis_locks.acquire(target, "run-first")
    releaser = threading.Timer(0.3, redis_locks.release, args=(first,))
    releaser.start()
    with redis_locks.hold(target, "run-second", wait=30) as lock:
        assert lock.holder() == "run-second"
    releaser.join()


def test_waiting_gives_up_after_the_timeout_naming_the_holder(redis_locks: DeploymentLocks, target: LockTarget) -> None:
    with redis_locks.hold(target, "run-first"), pytest.raises(LockHeldError, match=r"run 'run-first'.*waiting 0\.3s"):
        redis_locks.acquire(target, "run-second", wait=0.3)


def test_an_expired_holder_cannot_release_the_next_holders_lock(
    redis_locks: DeploymentLocks, redis_server: RedisServer, target: LockTarget
) -> None:
    stale = redis_locks.acquire(target, "run-slow", ttl_ms=100)
    with redis_server.client() as client:
        wait_until(lambda: client.exists(target.key) == 0, "the short lock to expire", timeout=10)
    current = redis_locks.acquire(target, "run-next")
    assert stale.release() is False
    assert current.holder() == "run-next"
    assert current.release() is True


def test_a_live_holder_keeps_its_lock_beyond_the_ttl_and_a_killed_ones_expires(
    redis_server: RedisServer, redis_locks: DeploymentLocks, tmp_path: Path, target: LockTarget
) -> None:
    holder = _holder_process(redis_server.url, tmp_path / "locks", target.commit_id)
    try:
        time.sleep(2.5)  # well past the 900 ms TTL: the keepalive must have extended it
        with pytest.raises(LockHeldError, match="run 'run-doomed'"):
            redis_locks.acquire(target, "run-next")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with redis_locks.hold(target, "run-next", wait=20) as lock:
        assert lock.holder() == "run-next"


def test_redis_down_falls_back_to_file_locks_with_one_warning(
    tmp_path: Path, target: LockTarget, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.WARNING)
    first_process = DeploymentLocks(tmp_path / "locks", redis_client(dead), "Redis at dead")
    second_process = DeploymentLocks(tmp_path / "locks", redis_client(dead), "Redis at dead")
    with first_process.hold(target, "run-first") as lock:
        assert isinstance(lock, FileLock)
        with pytest.raises(LockHeldError, match=r"by run 'run-first' \(lock edge-deploy:lock:detector:"):
            second_process.acquire(target, "run-second")
        with pytest.raises(LockHeldError):
            first_process.acquire(target, "run-third")
    with second_process.hold(target, "run-second") as lock:
        assert lock.holder() == "run-second"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # one per DeploymentLocks, i.e. one per process
    assert "locking with local files" in warnings[0] and "not runs on other machines" in warnings[0]


def test_a_killed_file_lock_holder_frees_the_lock_at_once(tmp_path: Path, target: LockTarget) -> None:
    locks = DeploymentLocks(tmp_path / "locks")
    holder = _holder_process("-", tmp_path / "locks", target.commit_id)
    with pytest.raises(LockHeldError, match="run 'run-doomed'"):
        locks.acquire(target, "run-next")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with locks.hold(target, "run-next") as lock:
        assert lock.holder() == "run-next"


def test_open_locks_uses_redis_when_configured_else_files(redis_server: RedisServer, tmp_path: Path) -> None:
    target = LockTarget("detector", "c1", "linux/amd64")
    with open_locks(Settings(redis_url=Secret(redis_server.url), work_dir=tmp_path)).hold(target, "r1") as lock:
        assert isinstance(lock, RedisLock)
    with open_locks(Settings(work_dir=tmp_path)).hold(target, "r2") as lock:
        assert isinstance(lock, FileLock) and lock.path.parent == tmp_path / "locks"
