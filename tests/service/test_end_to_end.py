"""End to end: a deployment asked for over HTTP runs through an `edge-deploy worker` (local executor,
the real `deploy_model` workflow on the fast-scnn sample) to a record that the API returns, with
its events seen over SSE in order, and again from the middle with Last-Event-ID."""

from __future__ import annotations

import uuid

import lakefs_sdk
import pytest

from edge_deploy.status import PIPELINE_STAGES
from tests.fixtures.processes import wait_until
from tests.service.conftest import deployment_body
from tests.service.processes import service_env, serving, start_worker, stop_worker
from tests.service.sse import read_events

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment_service(tmp_path, redis_url, mongo_server, lakefs_server, api_tokens):
    env = service_env(
        tmp_path / "work",
        REDIS_URL=redis_url,
        MONGODB_URI=mongo_server.url,
        MONGODB_DATABASE=f"edge_e2e_{uuid.uuid4().hex[:8]}",
        EDGE_API_TOKENS_FILE=str(api_tokens.file),
        **lakefs_server.env(),
    )
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with serving(env, tmp_path / "serve.log", api_tokens.deployer) as service:
            yield service, worker
    finally:
        stop_worker(worker)


def test_a_deployment_runs_from_http_to_record_with_its_events_in_order(
    deployment_service, seeded_model, lakefs_server
):
    service, worker = deployment_service
    with service.client() as client:
        accepted = client.post("/api/v1/deployments", json=deployment_body(seeded_model))
        assert accepted.status_code == 202, accepted.text
        run = accepted.json()
        events = read_events(client, run["links"]["events"])

        ids = [tuple(map(int, event.id.split("-"))) for event in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids grow with each event"
        assert events[-1].kind == "run-succeeded", [e.kind for e in events]
        stages = [event.data["stage"] for event in events if event.kind == "stage-started"]
        assert stages == sorted(stages, key=PIPELINE_STAGES.index), "stages start in pipeline order"
        assert stages[0] == "download" and stages[-1] == "record"
        for stage in stages:
            kinds = [e.kind for e in events if e.data["stage"] == stage and e.kind.startswith("stage-")]
            assert kinds == ["stage-started", "stage-finished"], (stage, kinds)
        assert all(event.data["run_id"] == run["run_id"] for event in events)

        resumed = read_events(client, run["links"]["events"], last_event_id=events[2].id)
        assert [e.id for e in resumed] == [e.id for e in events[3:]], "Last-Event-ID resumes right after it"

        record = client.get(run["links"]["deployment"])
        assert record.status_code == 200, record.text
        record = record.json()
        assert record["status"]["state"] == "succeeded" and record["run_id"] == run["run_id"]
        assert (record["model"]["repo"], record["model"]["commit_id"]) == (seeded_model.repo, seeded_model.commit)
        assert record["validation"]["passed"] and record["conversion"]["onnx_size"] > 0
        assert record["published"]["branch"] == "main", "published to the branch the request named"

        status = client.get(run["links"]["run"]).json()
        assert (status["state"], status["attempts"], status["progress"]) == ("succeeded", 1, 1.0)
        assert all(stage["state"] == "finished" for stage in status["stages"])
        assert status["principal"] == "release-pipeline"
        listed = client.get("/api/v1/deployments", params={"model": seeded_model.repo}).json()["items"]
        assert [item["run_id"] for item in listed] == [run["run_id"]]
        ended = 'edge_deploy_runs_total{outcome="succeeded"} 1.0'
        wait_until(lambda: ended in client.get("/metrics").text, "the job's end in the metrics", timeout=30)

    with lakefs_server.api() as api:
        published = lakefs_sdk.ObjectsApi(api).list_objects(seeded_model.repo, "main", prefix="edge/").results
    assert "edge/record.json" in {item.path for item in published}
    assert f"run {run['run_id']}: succeeded" in worker.log()
