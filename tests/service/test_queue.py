"""The job queue's promises, held by both implementations: Redis Streams (against a real redis-server)
and the in-process queue of the embedded default."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from edge_deploy.jobs import memory_queue
from edge_deploy.jobs.memory_queue import InProcessJobQueue
from edge_deploy.jobs.model import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from edge_deploy.jobs.queue import (
    CANCEL,
    CREATED,
    DUPLICATE,
    LOST,
    OWNED,
    REPLAYED,
    DeploymentInProgress,
    IdempotencyKeyReused,
    JobAlreadyEnded,
    JobNotFound,
    QuotaExceeded,
    ReplayedRunGone,
)
from edge_deploy.jobs.redis_queue import RedisJobQueue, job_key
from tests.service.conftest import make_job, submit


@pytest.fixture(params=["redis", "in-process"])
def queue(request, redis_server):
    if request.param == "in-process":
        yield InProcessJobQueue(max_attempts=2)
        return
    with redis_server.client() as client:
        client.flushall()
    queue = RedisJobQueue.from_url(redis_server.url, lease_seconds=1.0, max_attempts=2)
    yield queue
    queue.close()


def test_a_job_goes_from_queued_to_one_worker_and_ends_once(queue):
    job = make_job()
    assert submit(queue, job).outcome == CREATED
    assert queue.get(job.run_id).state == QUEUED
    assert queue.depth().queued == 1

    claim = queue.claim("worker-a", 1.0)
    assert claim.job.run_id == job.run_id and claim.attempt == 1
    assert queue.claim("worker-b", 0.1) is None, "a job is handed to one worker at a time"
    assert queue.get(job.run_id).state == RUNNING and queue.get(job.run_id).worker == "worker-a"
    assert (queue.depth().queued, queue.depth().running) == (0, 1)

    assert queue.finish(claim, SUCCEEDED)
    assert not queue.finish(claim, FAILED), "a job ends once"
    ended = queue.get(job.run_id)
    assert (ended.state, ended.ended_at != "") == (SUCCEEDED, True)
    assert (queue.depth().queued, queue.depth().running) == (0, 0)
    assert queue.outcomes() == {SUCCEEDED: 1}


def test_the_same_idempotency_key_returns_the_same_run(queue):
    job = make_job()
    first = submit(queue, job, idempotency_key="key-1")
    again = submit(queue, make_job(), idempotency_key="key-1")  # a retry: new run id drawn, same request
    assert (first.outcome, again.outcome) == (CREATED, REPLAYED)
    assert again.job.run_id == job.run_id
    assert queue.replayed("key-1", job.request.request_fingerprint()).run_id == job.run_id
    assert queue.depth().queued == 1, "the retry queued nothing"


def test_an_idempotency_key_reused_for_another_request_is_refused(queue):
    job = make_job()
    submit(queue, job, idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused, match=job.run_id):
        submit(queue, make_job(targets=("arm64-cpu",)), idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused):
        queue.replayed("key-2", make_job(targets=("arm64-cpu",)).request.request_fingerprint())


def test_the_same_commit_and_targets_is_not_queued_twice_while_active(queue):
    first = make_job()
    submit(queue, first)
    duplicate = submit(queue, make_job(ref="main"))  # same commit, targets and inputs
    assert (duplicate.outcome, duplicate.job.run_id) == (DUPLICATE, first.run_id)
    claim = queue.claim("worker-a", 1.0)
    assert submit(queue, make_job()).job.run_id == first.run_id, "still a duplicate while it runs"
    with pytest.raises(DeploymentInProgress, match=first.run_id):
        submit(queue, make_job(options={"build_images": False}))
    other_targets = submit(queue, make_job(targets=("arm64-cpu",)))
    assert other_targets.outcome == CREATED, "other targets are another deployment"

    queue.finish(claim, SUCCEEDED)
    after = submit(queue, make_job())
    assert after.outcome == CREATED and after.job.run_id != first.run_id, "a new run once the first ended"


def test_cancel_ends_a_queued_job_at_once_and_marks_a_running_one(queue):
    queued, running = make_job(), make_job(targets=("arm64-cpu",))
    submit(queue, running)
    claim = queue.claim("worker-a", 1.0)
    submit(queue, queued)

    assert queue.request_cancel(queued.run_id).state == CANCELLED
    assert queue.claim("worker-b", 0.2) is None, "a cancelled job is never started"
    assert queue.request_cancel(running.run_id).cancel_requested
    assert queue.renew(claim) == CANCEL
    queue.finish(claim, CANCELLED, "cancelled by request")
    with pytest.raises(JobAlreadyEnded):
        queue.request_cancel(running.run_id)
    with pytest.raises(JobNotFound):
        queue.request_cancel("enoruntherexxxxxxxxx")
    assert queue.outcomes() == {CANCELLED: 2}
    assert submit(queue, make_job()).outcome == CREATED, "a cancelled job no longer blocks its deployment"


def test_a_released_job_is_taken_by_the_next_worker_without_using_up_an_attempt(queue):
    submit(queue, make_job())
    first = queue.claim("worker-a", 1.0)
    queue.release(first)
    second = queue.claim("worker-b", 1.0)
    assert second is not None and second.job.run_id == first.job.run_id
    assert second.attempt == 1
    assert queue.renew(second) == OWNED


def test_a_lease_that_is_not_renewed_passes_to_another_worker(redis_url):
    queue = RedisJobQueue.from_url(redis_url, lease_seconds=0.5, max_attempts=3)
    job = make_job()
    submit(queue, job)
    dead = queue.claim("worker-dead", 1.0)
    assert queue.renew(dead) == OWNED
    assert queue.claim("worker-b", 0.1) is None, "a renewed lease is not taken over"
    time.sleep(0.7)
    taken = queue.claim("worker-b", 0.1)
    assert taken is not None and taken.job.run_id == job.run_id and taken.attempt == 2
    assert queue.renew(dead) == LOST, "the old holder learns it lost the job"
    assert not queue.finish(dead, FAILED), "and cannot end it"
    assert queue.finish(taken, SUCCEEDED)
    assert queue.get(job.run_id).state == SUCCEEDED and queue.outcomes() == {SUCCEEDED: 1}


def test_a_job_taken_up_more_often_than_allowed_is_marked_exhausted(redis_url):
    queue = RedisJobQueue.from_url(redis_url, lease_seconds=0.2, max_attempts=1)
    submit(queue, make_job())
    first = queue.claim("worker-a", 1.0)
    assert not first.exhausted
    time.sleep(0.3)
    second = queue.claim("worker-b", 0.1)
    assert second.exhausted and second.attempt == 2


def test_a_job_evicted_by_redis_is_no_500_and_no_stale_guard(redis_server):
    """Redis under memory pressure (allkeys-lru) may evict a job's hash while its idempotency key and
    deployment marker stay: a replay names the lost run, a new submission of the same deployment runs."""
    with redis_server.client() as client:
        client.flushall()
    queue = RedisJobQueue.from_url(redis_server.url, lease_seconds=1.0, max_attempts=2)
    try:
        job = make_job()
        submit(queue, job, idempotency_key="evicted-key")
        with redis_server.client() as client:
            assert client.delete(job_key(job.run_id)) == 1  # what an eviction does
        with pytest.raises(ReplayedRunGone, match=job.run_id):
            queue.replayed("evicted-key", job.request.request_fingerprint())
        with pytest.raises(ReplayedRunGone, match=job.run_id):
            submit(queue, make_job(), idempotency_key="evicted-key")
        fresh = submit(queue, make_job())  # no key: the marker names a job that is gone, so it guards nothing
        assert fresh.outcome == CREATED and fresh.job.run_id != job.run_id
        assert queue.get(fresh.job.run_id).state == QUEUED
    finally:
        queue.close()


def test_the_in_process_queue_forgets_ended_jobs_beyond_its_bound(monkeypatch):
    monkeypatch.setattr(memory_queue, "MAX_ENDED_JOBS", 3)
    queue = InProcessJobQueue(max_attempts=2)
    runs = []
    for index in range(6):
        job = make_job(commit=f"{index:064x}")
        submit(queue, job, idempotency_key=f"key-{index}")
        queue.finish(queue.claim("worker-a", 1.0), SUCCEEDED)
        runs.append(job)
    assert [queue.get(job.run_id) is not None for job in runs] == [False] * 3 + [True] * 3
    assert len(queue._idempotency) == 3  # the forgotten runs' keys went with them
    replay = submit(queue, make_job(commit=f"{0:064x}"), idempotency_key="key-0")
    assert replay.outcome == CREATED, "a forgotten key is free again"
    assert queue.replayed("key-5", runs[5].request.request_fingerprint()).run_id == runs[5].run_id
    assert queue.outcomes() == {SUCCEEDED: 6}


def test_a_caller_s_queued_and_running_runs_are_bounded(queue):
    def mine(targets, principal="ci"):
        return replace(make_job(targets=targets), principal=principal)

    first = mine(("x86_64-cpu",))
    assert queue.submit(first, "d1", "f1", None, max_active=2).outcome == CREATED
    assert queue.submit(mine(("arm64-cpu",)), "d2", "f2", None, max_active=2).outcome == CREATED
    with pytest.raises(QuotaExceeded, match="ci already has 2 queued or running runs"):
        queue.submit(mine(("x86_64-nvidia",)), "d3", "f3", None, max_active=2)
    assert queue.submit(mine(("x86_64-cpu",)), "d1", "f1", None, max_active=2).outcome == DUPLICATE
    assert queue.submit(mine(("x86_64-nvidia",), "other"), "d3", "f3", None, max_active=2).outcome == CREATED
    claim = queue.claim("worker-a", 1.0)  # running still counts
    with pytest.raises(QuotaExceeded):
        queue.submit(mine(("jetson",)), "d4", "f4", None, max_active=2)
    queue.finish(claim, SUCCEEDED)  # an ended run frees its place
    assert claim.job.run_id == first.run_id
    assert queue.submit(mine(("jetson",)), "d4", "f4", None, max_active=2).outcome == CREATED
    assert queue.submit(mine(("x86_64-cpu",), "ci"), "d5", "f5", None).outcome == CREATED  # 0: no limit


def test_dead_consumers_holding_nothing_are_forgotten(redis_server):
    from edge_deploy.jobs.queue import WorkerInfo
    from edge_deploy.jobs.redis_queue import GROUP, STREAM

    with redis_server.client() as client:
        client.flushall()
    queue = RedisJobQueue.from_url(redis_server.url, lease_seconds=60.0)
    try:
        for index in range(3):
            submit(queue, make_job(commit=f"{index:064x}"))
        assert queue.claim("worker-holding", 1.0) is not None  # dies holding its job: the entry stays pending
        queue.finish(queue.claim("worker-gone", 1.0), SUCCEEDED)  # then dies holding nothing
        queue.finish(queue.claim("worker-alive", 1.0), SUCCEEDED)  # idle since, but it keeps its heartbeat
        time.sleep(0.4)
        queue.heartbeat(WorkerInfo("worker-alive", "local", True, "ok", ""))
        forgotten = queue.forget_dead_consumers(after_seconds=0.3)
        with redis_server.client() as client:
            left = {consumer["name"] for consumer in client.xinfo_consumers(STREAM, GROUP)}
        assert forgotten == ["worker-gone"] and left == {"worker-holding", "worker-alive"}
    finally:
        queue.close()
