"""The worker's liveness probe (`edge-deploy worker-alive`), as Kubernetes runs it beside a real
`edge-deploy worker` process: alive while the loop turns, also while Redis is away (a restart would
not bring Redis back), and not alive once the loop stops turning."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from edge_deploy.jobs.liveness import AliveMarker, alive_file, staleness
from tests.fixtures.processes import wait_until
from tests.fixtures.s3 import PROJECT_ROOT
from tests.service.processes import CLI, service_env, start_worker, stop_worker


def probe(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "worker-alive", *options], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_staleness_names_a_missing_and_an_old_file(tmp_path):
    path = alive_file(tmp_path)
    assert "has not started its loop" in staleness(path, 10)
    AliveMarker(path).mark()
    assert staleness(path, 10) is None
    renewed = path.stat().st_mtime
    assert "stuck" in staleness(path, 10, now=renewed + 11)
    assert staleness(path, 10, now=renewed + 9) is None


def test_a_marker_that_cannot_write_never_stops_the_worker(tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    marker = AliveMarker(blocked / "worker-alive")  # its parent is a file: every mark fails
    marker.mark()
    marker.mark()
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "the container's probe will fail" in warnings[0]


@pytest.mark.slow
def test_the_probe_follows_a_real_worker_through_a_redis_outage_and_a_hang(volatile_redis, tmp_path):
    env = service_env(tmp_path / "work", REDIS_URL=volatile_redis.url, EDGE_JOB_LEASE_SECONDS="4")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        done = probe(env)
        assert done.returncode == 0, done.stderr
        volatile_redis.process.stop()  # Redis away: the worker waits it out and stays alive
        time.sleep(10)  # more than twice the lease, the probe's default limit
        done = probe(env)
        assert done.returncode == 0, done.stderr + worker.log()[-2000:]
        volatile_redis.process.start()
        os.kill(worker.process.pid, signal.SIGSTOP)  # the loop stops turning, as a hung call would
        try:
            wait_until(lambda: probe(env, "--max-age", "2").returncode == 1, "the probe to fail", timeout=30)
            done = probe(env, "--max-age", "2")
            assert "it is stuck" in done.stderr and str(alive_file(tmp_path / "work")) in done.stderr
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        wait_until(lambda: probe(env, "--max-age", "2").returncode == 0, "the probe to pass again", timeout=30)
    finally:
        stop_worker(worker)
