"""Faults under a real run (the fast-scnn sample through `deploy_model`, local executor):

- the worker running a job is killed with SIGKILL mid-run: its job process dies with it, another
  worker takes the job up again when the lease runs out, and the run ends once, with one record;
- Redis (with append-only persistence, as a queue's Redis must run) restarts during a run: the API
  answers 503 meanwhile, the worker waits it out, and the run ends succeeded with its record.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil
import pytest
import redis

from edge_deploy.jobs.redis_queue import OUTCOMES
from edge_deploy.status.redis_status import events_key
from tests.fixtures.processes import wait_until
from tests.service.conftest import deployment_body
from tests.service.processes import service_env, serving, start_worker, stop_worker
from tests.service.sse import read_events

pytestmark = pytest.mark.slow

LEASE_SECONDS = "4"


def environment(tmp_path, redis_url, mongo_server, lakefs_server, api_tokens, **more) -> dict[str, str]:
    return service_env(
        tmp_path / "work",
        REDIS_URL=redis_url,
        MONGODB_URI=mongo_server.url,
        MONGODB_DATABASE=f"edge_faults_{uuid.uuid4().hex[:8]}",
        EDGE_API_TOKENS_FILE=str(api_tokens.file),
        **lakefs_server.env(),
        **more,
    )


def stage_started(redis_url: str, run_id: str, stage: str) -> bool:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        entries = client.xrange(events_key(run_id))
    return any(fields["kind"] == "stage-started" and fields["stage"] == stage for _, fields in entries)


def run_state(client, run_id: str) -> dict:
    return client.get(f"/api/v1/runs/{run_id}").json()


def test_a_job_whose_worker_is_killed_mid_run_is_taken_up_again_and_ends_once(
    tmp_path, redis_url, mongo_server, lakefs_server, api_tokens, seeded_model
):
    env = environment(
        tmp_path, redis_url, mongo_server, lakefs_server, api_tokens, EDGE_JOB_LEASE_SECONDS=LEASE_SECONDS
    )
    first = start_worker(env, tmp_path / "worker-1.log")
    second = None
    try:
        with serving(env, tmp_path / "serve.log", api_tokens.deployer) as service, service.client() as client:
            run_id = client.post("/api/v1/deployments", json=deployment_body(seeded_model)).json()["run_id"]
            wait_until(lambda: stage_started(redis_url, run_id, "convert"), "the run to reach convert", timeout=300)
            assert run_state(client, run_id)["attempts"] == 1
            job_processes = psutil.Process(first.process.pid).children(recursive=True)
            assert job_processes, "the job runs in a child process of the worker"
            second = start_worker(env, tmp_path / "worker-2.log")

            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait()
            gone = lambda: all(  # noqa: E731
                not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in job_processes
            )
            wait_until(gone, "the killed worker's job process to die with it", timeout=15)

            wait_until(lambda: run_state(client, run_id)["state"] == "succeeded", "the run to end", timeout=600)
            wait_until(lambda: client.get(f"/api/v1/runs/{run_id}").json()["ended_at"], "the job to end", timeout=60)
            state = run_state(client, run_id)
            assert state["attempts"] == 2 and not state["error"]
            assert client.get(f"/api/v1/deployments/{run_id}").json()["status"]["state"] == "succeeded"

        with mongo_server.client() as mongo:
            assert mongo[env["MONGODB_DATABASE"]]["deployments"].count_documents({"run_id": run_id}) == 1
        with redis.Redis.from_url(redis_url, decode_responses=True) as plain:
            kinds = [(fields["kind"], fields["stage"]) for _, fields in plain.xrange(events_key(run_id))]
            assert plain.hget(OUTCOMES, "succeeded") == "1", "the job ended once"
        assert kinds.count(("stage-started", "download")) == 2, "the second worker ran it from the start"
        assert [kind for kind, _ in kinds].count("run-succeeded") == 1
        assert "taking over job entry" in second.log() and f"run {run_id}: succeeded" in second.log()
    finally:
        for worker in (first, second):
            if worker is not None and worker.process.poll() is None:
                stop_worker(worker)


def test_redis_restarted_during_a_run(tmp_path, durable_redis, mongo_server, lakefs_server, api_tokens, seeded_model):
    # A lease of 8 s: the worker renews it every 2 s, so it meets the outage (5 s), which stays shorter than the lease.
    env = environment(tmp_path, durable_redis.url, mongo_server, lakefs_server, api_tokens, EDGE_JOB_LEASE_SECONDS="8")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with serving(env, tmp_path / "serve.log", api_tokens.deployer) as service, service.client() as client:
            run = client.post("/api/v1/deployments", json=deployment_body(seeded_model)).json()
            run_id = run["run_id"]
            wait_until(lambda: stage_started(durable_redis.url, run_id, "convert"), "the run to reach convert", 300)

            with durable_redis.stopped():
                outage = client.get(f"/api/v1/runs/{run_id}")
                assert outage.status_code == 503 and outage.headers["retry-after"]
                ready = client.get("/readyz")
                assert ready.status_code == 503 and not ready.json()["checks"]["queue"]["ok"]
                time.sleep(5)
                assert worker.process.poll() is None, "the worker waits Redis out"

            wait_until(lambda: client.get("/readyz").status_code == 200, "readiness after the restart", timeout=60)
            wait_until(lambda: run_state(client, run_id)["state"] == "succeeded", "the run to end", timeout=600)
            wait_until(lambda: run_state(client, run_id)["ended_at"], "the job to end", timeout=60)
            assert run_state(client, run_id)["attempts"] == 1, "the same worker finished it: the queue kept its job"
            record = client.get(run["links"]["deployment"]).json()
            assert record["status"]["state"] == "succeeded"
            events = read_events(client, run["links"]["events"], timeout=60)
            assert events[0].data["stage"] == "download" and events[-1].kind == "run-succeeded"
        assert "the queue does not answer" in worker.log() and "the queue answers again" in worker.log()
        assert f"run {run_id}: succeeded" in worker.log()
    finally:
        stop_worker(worker)
