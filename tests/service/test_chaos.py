"""Redis restarted under running jobs, with and without persistence, for less and for longer than
the lease: real redis-server processes, real workers (threads of this process, as `edge-deploy
worker` runs them) and real job processes (`tests.service.job_programs work`, which report their
status to Redis, check their fence and then note one side effect, as a deployment pushes and
publishes). Whatever happens, every run ends exactly once: one side effect, one record, one end
event in its stream, its job ended succeeded, and a follower of its events (the API's SSE feed,
started before the outage) sees that end and stops."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from app.api.events import RUN_UNKNOWN, RUNNING, RedisEventFeed, run_event_stream
from edge_deploy.config import Secret
from edge_deploy.jobs.executor import ExecutorHealth
from edge_deploy.jobs.model import ENDED_STATES, SUCCEEDED
from edge_deploy.jobs.redis_queue import OUTCOMES, RedisJobQueue
from edge_deploy.jobs.worker import Worker, WorkerConfig
from edge_deploy.records.embedded import EmbeddedRecordStore
from edge_deploy.status.redis_status import RedisStatus, events_key
from tests.fixtures.processes import wait_until
from tests.fixtures.s3 import PROJECT_ROOT
from tests.service.conftest import make_job, submit

pytestmark = pytest.mark.slow

LEASE = 2.0  # renewed every 0.5 s
JOB_SECONDS = 8.0


class Follower:
    """The API's event stream of one run (app.api.events), read in a thread from before the outage."""

    def __init__(self, redis_url: str, run_id: str) -> None:
        self.events: list[dict[str, str]] = []
        self.thread = threading.Thread(target=asyncio.run, args=(self._follow(redis_url, run_id),), daemon=True)
        self.thread.start()

    async def _follow(self, redis_url: str, run_id: str) -> None:
        async def still_running() -> str:
            return RUNNING  # only its end event may end this stream

        feed = RedisEventFeed(Secret(redis_url))
        try:
            async for message in run_event_stream(feed, run_id, "0-0", still_running):
                self.events.append(message)
        finally:
            await feed.close()

    def ends(self) -> list[str]:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the follower's stream never ended"
        return [m["event"] for m in self.events if m["event"] in ("run-succeeded", "run-failed", RUN_UNKNOWN)]


class Cluster:
    """Workers on one Redis, each with its own queue client, as separate `edge-deploy worker` processes have."""

    def __init__(self, redis_url: str, tmp_path, monkeypatch) -> None:
        self.redis_url, self.effects = redis_url, tmp_path / "effects.txt"
        self.effects.touch()
        for name, value in {
            "EDGE_WORK_DIR": str(tmp_path),
            "REDIS_URL": redis_url,
            "PYTHONPATH": str(PROJECT_ROOT),
            "EDGE_TEST_EFFECTS": str(self.effects),
            "EDGE_TEST_JOB_SECONDS": str(JOB_SECONDS),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MONGODB_URI", raising=False)
        self.records = EmbeddedRecordStore(tmp_path / "deployments.sqlite3")
        self.workers: list[tuple[Worker, threading.Thread]] = []

    def start_worker(self, name: str) -> None:
        queue = RedisJobQueue.from_url(self.redis_url, lease_seconds=LEASE, max_attempts=3)
        config = WorkerConfig(
            child_command=[sys.executable, "-m", "tests.service.job_programs", "work"],
            name=name,
            lease_seconds=LEASE,
            poll_seconds=0.2,
            stop_grace_seconds=5.0,
        )
        status = RedisStatus.from_url(self.redis_url)
        worker = Worker(queue, self.records, status, config, lambda: ExecutorHealth(True, "test"))
        thread = threading.Thread(target=worker.run, daemon=True, name=name)
        thread.start()
        self.workers.append((worker, thread))

    def submit(self):
        queue = RedisJobQueue.from_url(self.redis_url, lease_seconds=LEASE)
        job = make_job()
        submit(queue, job)
        return job

    def job(self, run_id: str):
        try:
            return RedisJobQueue.from_url(self.redis_url, lease_seconds=LEASE).get(run_id)
        except Exception:  # Redis restarting
            return None

    def close(self) -> None:
        for worker, _ in self.workers:
            worker.stop()
        for _, thread in self.workers:
            thread.join(timeout=30)
        self.records.close()


@pytest.fixture
def cluster_on(tmp_path, monkeypatch):
    made = []

    def make(redis_server) -> Cluster:
        made.append(Cluster(redis_server.url, tmp_path, monkeypatch))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


def running(cluster: Cluster, run_id: str) -> bool:
    job = cluster.job(run_id)
    return job is not None and job.state == "running"


def check_ended_once(cluster: Cluster, redis_server, run_id: str, follower: Follower) -> None:
    wait_until(lambda: (cluster.job(run_id) or make_job()).state in ENDED_STATES, "the job to end", timeout=90)
    assert cluster.job(run_id).state == SUCCEEDED
    effects = [line for line in cluster.effects.read_text().splitlines() if line.startswith(run_id)]
    assert len(effects) == 1, f"side effects: {effects}"
    record = cluster.records.get(run_id)
    assert record is not None and record.status.state == "succeeded"
    with redis_server.client() as client:
        kinds = [fields["kind"] for _, fields in client.xrange(events_key(run_id))]
        assert client.hget(OUTCOMES, SUCCEEDED) == "1", "the job ended once"
    ends = [kind for kind in kinds if kind in ("run-succeeded", "run-failed")]
    assert ends == ["run-succeeded"], kinds
    assert follower.ends() == ["run-succeeded"], follower.events


@pytest.mark.parametrize("outage", [0.5, 2.5 * LEASE], ids=["shorter-than-the-lease", "longer-than-the-lease"])
def test_redis_restarted_without_its_data_under_a_running_job(volatile_redis, cluster_on, outage):
    cluster = cluster_on(volatile_redis)
    cluster.start_worker("worker-a")
    job = cluster.submit()
    follower = Follower(volatile_redis.url, job.run_id)
    wait_until(lambda: running(cluster, job.run_id), "the job to start", timeout=30)
    time.sleep(1.0)
    with volatile_redis.stopped():
        time.sleep(outage)
    # everything is gone: the job, its stream entry, the group, the status. The worker that runs
    # the job writes it back rather than taking the empty queue for a takeover.
    wait_until(lambda: cluster.job(job.run_id) is not None, "the job to be written back", timeout=15)
    cluster.start_worker("worker-b")  # a second worker must not start the job again
    check_ended_once(cluster, volatile_redis, job.run_id, follower)


def test_redis_with_persistence_down_longer_than_the_lease_with_two_workers(durable_redis, cluster_on):
    cluster = cluster_on(durable_redis)
    cluster.start_worker("worker-a")
    job = cluster.submit()
    follower = Follower(durable_redis.url, job.run_id)
    wait_until(lambda: running(cluster, job.run_id), "the job to start", timeout=30)
    cluster.start_worker("worker-b")
    time.sleep(1.0)
    with durable_redis.stopped():
        time.sleep(2.5 * LEASE)
    # the lease ran out while Redis was down: worker-b may take the job over, worker-a may renew
    # first; either way one attempt acts (the fence), and the run ends once
    check_ended_once(cluster, durable_redis, job.run_id, follower)
