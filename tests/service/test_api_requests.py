"""The API over HTTP (uvicorn on loopback) with Redis, the MongoDB-wire server and lakeFS; no worker runs,
so queued jobs stay queued: what is checked here is what the API answers."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import lakefs_sdk
import pytest

from edge_deploy.records.mongo import MongoRecordStore
from tests.service.processes import service_env, serving
from tests.service.records import released


@pytest.fixture(scope="module")
def api(tmp_path_factory, redis_server, mongo_server, lakefs_server, api_tokens):
    work = tmp_path_factory.mktemp("api")
    database = f"edge_api_{uuid.uuid4().hex[:8]}"
    env = service_env(
        work / "work",
        REDIS_URL=redis_server.url,
        MONGODB_URI=mongo_server.url,
        MONGODB_DATABASE=database,
        EDGE_API_TOKENS_FILE=str(api_tokens.file),
        EDGE_API_MAX_BODY_BYTES="4096",
        EDGE_ALLOWED_BASE_IMAGES="allowed.example.com/base",
        EDGE_API_MAX_ACTIVE_RUNS="1000",  # runs queued here stay queued (no worker): the quota has its own test
        **lakefs_server.env(),
    )
    with serving(env, work / "serve.log", api_tokens.deployer) as service:
        service.database = database
        yield service


@pytest.fixture
def client(api):
    with api.client() as client:
        yield client


@pytest.fixture
def head(lakefs_server, lakefs_repo) -> str:
    """The commit `main` of a fresh repository points at."""
    with lakefs_server.api() as lakefs:
        return lakefs_sdk.BranchesApi(lakefs).get_branch(lakefs_repo, "main").commit_id


def deploy(client: httpx.Client, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/v1/deployments", json=body, headers=headers)


def test_a_deployment_is_queued_at_the_commit_its_ref_names(client, lakefs_repo, head):
    answer = deploy(
        client, {"repo": lakefs_repo, "targets": ["linux/amd64", "arm64-cpu"], "options": {"build_images": False}}
    )
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert answer.headers["location"] == f"/api/v1/runs/{accepted['run_id']}" == accepted["links"]["run"]
    assert (accepted["state"], accepted["source_commit"], accepted["replayed"], accepted["deduplicated"]) == (
        "queued",
        head,
        False,
        False,
    )
    run = client.get(accepted["links"]["run"]).json()
    assert run["state"] == "queued" and run["principal"] == "release-pipeline"
    assert run["request"]["targets"] == ["x86_64-cpu", "arm64-cpu"], "targets resolved to device classes"
    assert run["request"]["ref"] == "main" and run["source_commit"] == head


def test_a_retry_with_the_same_idempotency_key_gets_the_same_run(client, lakefs_repo):
    body = {"repo": lakefs_repo, "targets": ["x86_64-cpu"]}
    first, retry = deploy(client, body, key="deploy-42"), deploy(client, body, key="deploy-42")
    assert first.status_code == retry.status_code == 202
    assert retry.json()["run_id"] == first.json()["run_id"] and retry.json()["replayed"]
    reused = deploy(client, {**body, "targets": ["arm64-cpu"]}, key="deploy-42")
    assert reused.status_code == 422 and reused.json()["field"] == "header Idempotency-Key"
    assert first.json()["run_id"] in reused.json()["message"]


def test_a_retry_whose_run_redis_evicted_is_a_409_naming_the_run(client, lakefs_repo, redis_server):
    from edge_deploy.jobs.redis_queue import job_key

    key = uuid.uuid4().hex
    first = deploy(client, {"repo": lakefs_repo, "targets": ["arm64-cpu"]}, key)
    run_id = first.json()["run_id"]
    with redis_server.client() as redis:
        assert redis.delete(job_key(run_id)) == 1  # evicted (allkeys-lru), its idempotency key kept
    retry = deploy(client, {"repo": lakefs_repo, "targets": ["arm64-cpu"]}, key)
    assert retry.status_code == 409 and run_id in retry.json()["message"], retry.text
    assert retry.json()["field"] == "header Idempotency-Key"
    assert retry.headers["location"] == f"/api/v1/deployments/{run_id}"
    assert client.get(f"/api/v1/runs/{run_id}").status_code in (200, 404)  # what is left of it, or gone: no 500


def test_the_same_commit_and_targets_is_not_started_twice(client, lakefs_repo, head):
    body = {"repo": lakefs_repo, "targets": ["x86_64-cpu"]}
    first = deploy(client, body).json()
    again = deploy(client, {**body, "ref": head}).json()  # the same commit, named by its id
    assert again["run_id"] == first["run_id"] and again["deduplicated"]
    other_inputs = deploy(client, {**body, "options": {"build_images": False}})
    assert other_inputs.status_code == 409 and first["run_id"] in other_inputs.json()["message"]
    assert other_inputs.headers["location"] == first["links"]["run"]
    other_targets = deploy(client, {**body, "targets": ["arm64-cpu"]}).json()
    assert other_targets["run_id"] != first["run_id"]


def test_concurrent_duplicates_make_one_run(api, lakefs_repo):
    body = {"repo": lakefs_repo, "targets": ["x86_64-cpu"]}

    def post(key: str | None) -> str:
        with api.client() as client:
            answer = deploy(client, body, key)
            assert answer.status_code == 202, answer.text
            return answer.json()["run_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        same_key = set(pool.map(post, ["retry-7"] * 8))
        no_key = set(pool.map(post, [None] * 8))
    assert len(same_key) == 1 and no_key == same_key, "one run, however the duplicates raced"


BAD_BODIES = [
    (
        {"repo": "{repo}", "targets": ["x86_64-cpu", "sparc-cpu"]},
        "body.targets[1]",
        "unknown deploy target 'sparc-cpu'",
    ),
    ({"uri": "s3://bucket/model"}, "body.uri", "not a lakeFS URI"),
    ({"uri": "lakefs://x/main/model/"}, "body.uri", "not a lakeFS repository name"),
    ({"repo": "no-such-repo-here"}, "body.repo", "no repository"),
    ({"repo": "{repo}", "ref": "no-such-branch"}, "body.ref", "no branch, tag or commit"),
    ({"targets": ["x86_64-cpu"]}, "body", "give the model's source once"),
    ({"repo": "{repo}", "uri": "lakefs://{repo}/main/model/"}, "body", "got uri and repo"),
    ({"repo": "{repo}", "optionz": {}}, "body.optionz", "Extra inputs"),
    ({"repo": "{repo}", "targets": "x86_64-cpu"}, "body.targets", "valid list"),
    ({"repo": "{repo}", "targets": []}, "body.targets", "at least 1"),
    (
        {"repo": "{repo}", "options": {"validation": {"samples": "3"}}},
        "body.options.validation.samples",
        "valid integer",
    ),
    # the gate's knobs within documented bounds: none can switch the gate off or hold a worker for ever
    (
        {"repo": "{repo}", "options": {"validation": {"samples": 0}}},
        "body.options.validation.samples",
        "greater than or equal to 1",
    ),
    ({"repo": "{repo}", "options": {"validation": {"atol": 1e308}}}, "body.options.validation.atol", "less than"),
    ({"repo": "{repo}", "options": {"validation": {"samples": 10**9}}}, "body.options.validation.samples", "32"),
    (
        {"repo": "{repo}", "options": {"validation": {"batch_sizes": [10**6]}}},
        "body.options.validation.batch_sizes[0]",
        "64",
    ),
    (
        {"repo": "{repo}", "options": {"validation": {"timed_runs": 10**12}}},
        "body.options.validation.timed_runs",
        "1000",
    ),
    (
        {"repo": "{repo}", "options": {"validation": {"time_budget_s": 1e300}}},
        "body.options.validation.time_budget_s",
        "300",
    ),
    (
        {"repo": "{repo}", "options": {"validation": {"intra_op_threads": 10**5}}},
        "body.options.validation.intra_op_threads",
        "64",
    ),
    (
        {"repo": "{repo}", "options": {"base_images": {"sparc-cpu": "x"}}},
        "body.options.base_images.sparc-cpu",
        "unknown device class",
    ),
    ({"repo": "{repo}", "options": {"release_tag": "no spaces"}}, "body.options.release_tag", "pattern"),
    ({"repo": "Bad_Repo"}, "body.repo", "pattern"),
    ({"local_dir": "models/x"}, "body.local_dir", "not enabled"),
    # control characters never reach a path, a Redis key or a log line: NUL, newline, DEL
    ({"local_dir": "tiny\u0000/../x"}, "body.local_dir", "control characters"),
    ({"repo": "{repo}", "prefix": "model/\n"}, "body.prefix", "control characters"),
    ({"uri": "lakefs://{repo}/main/mo\u007fdel/"}, "body.uri", "control characters"),
    ({"repo": "{repo}", "targets": ["x86_64-cpu\u0000"]}, "body.targets[0]", "control characters"),
    (
        {"repo": "{repo}", "options": {"base_images": {"x86_64-cpu": "debian\r\n"}}},
        "body.options.base_images.x86_64-cpu",
        "control characters",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "says"), BAD_BODIES, ids=[case[1] + ":" + case[2][:20] for case in BAD_BODIES]
)
def test_bad_input_is_a_4xx_that_names_the_field(client, lakefs_repo, body, field, says):
    answer = deploy(client, json.loads(json.dumps(body).replace("{repo}", lakefs_repo)))
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["field"] == field and says in error["message"], error
    assert error["problems"][0]["field"] == field


def test_a_body_that_is_not_json_or_too_large_is_refused(client, api):
    broken = client.post("/api/v1/deployments", content=b'{"repo": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["message"]
    declared = client.post("/api/v1/deployments", json={"repo": "x" * 5000})
    assert declared.status_code == 413 and "EDGE_API_MAX_BODY_BYTES" in declared.json()["message"]

    def chunks():  # no Content-Length: the limit is enforced on what arrives
        for _ in range(10):
            yield b" " * 1000

    streamed = client.post("/api/v1/deployments", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_an_unknown_run_id_is_a_404_everywhere(client):
    missing = "enosuchrunxxxxxxxxxx"
    for method, path in [
        ("GET", f"/api/v1/runs/{missing}"),
        ("GET", f"/api/v1/runs/{missing}/events"),
        ("POST", f"/api/v1/runs/{missing}/cancel"),
        ("GET", f"/api/v1/deployments/{missing}"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 404 and missing in answer.json()["message"], (path, answer.text)
    malformed = client.get("/api/v1/runs/not a run id!")
    assert malformed.status_code == 422 and malformed.json()["field"] == "path.run_id"
    resumed = client.get(f"/api/v1/runs/{missing}/events", headers={"Last-Event-ID": "yesterday"})
    assert resumed.status_code == 422 and resumed.json()["field"] == "header Last-Event-ID"


def test_a_queued_run_is_cancelled_at_once_and_its_followers_told(client, lakefs_repo):
    body = {"repo": lakefs_repo, "targets": ["x86_64-cpu"]}
    run = deploy(client, body).json()
    cancelled = client.post(run["links"]["cancel"])
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["cancelled_by"] == "release-pipeline"  # the caller's token name
    again = client.post(run["links"]["cancel"])
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["message"]
    with client.stream("GET", run["links"]["events"]) as events:
        lines = [line for line in events.iter_lines() if line.startswith(("event:", "data:"))]
    assert lines[-2] == "event: run-failed" and "cancelled before it started, by release-pipeline" in lines[-1]
    assert deploy(client, body).json()["run_id"] != run["run_id"], "a cancelled run no longer holds its deployment"


def test_records_are_listed_a_page_at_a_time_and_a_device_asks_for_its_image(api, client, mongo_server):
    store = MongoRecordStore(mongo_server.url, api.database)
    try:
        for index in range(7):
            store.upsert(released(f"rec-{index}", repo="camera", minute=index, classes=("x86_64-cpu", "arm64-cpu")))
        store.upsert(released("rec-newest-failed", repo="camera", minute=20, state="failed"))
    finally:
        store.close()
    seen, cursor = [], None
    while True:
        page = client.get(
            "/api/v1/deployments", params={"model": "camera", "limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [item["run_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["rec-newest-failed", *[f"rec-{i}" for i in range(6, -1, -1)]]
    failed = client.get("/api/v1/deployments", params={"model": "camera", "status": "failed"}).json()["items"]
    assert [item["status"]["failed_stage"] for item in failed] == ["build"]

    release = client.get("/api/v1/models/camera/releases/latest", params={"device_class": "arm64-cpu"}).json()
    assert release["run_id"] == "rec-6" and release["platform"] == "linux/arm64/v8"
    assert release["pinned_reference"] == release["reference"].rsplit(":", 1)[0] + "@" + release["digest"]
    assert release["acceptance"]["status"] == "accepted" and release["acceptance"]["photos"] == 2
    shown = client.get("/api/v1/deployments/rec-6").json()["images"]["platforms"]
    assert all(image["acceptance"]["status"] == "accepted" for image in shown)  # each image's verdict
    none = client.get("/api/v1/models/camera/releases/latest", params={"device_class": "jetson-orin"})
    assert none.status_code == 404 and "jetson-orin" in none.json()["message"]
    unknown = client.get("/api/v1/models/camera/releases/latest", params={"device_class": "toaster"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "query.device_class"
    bad_cursor = client.get("/api/v1/deployments", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["field"] == "query.cursor"
    assert client.get("/api/v1/deployments/rec-3").json()["model"]["repo"] == "camera"


def test_readiness_names_what_is_missing_and_metrics_count_requests(api, client, api_tokens):
    ready = httpx.get(api.url + "/readyz", trust_env=False)  # no token needed
    # no worker runs in this module: reported, but the API still serves (queueing, devices' questions)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"queue", "records"} and checks["queue"]["ok"] and checks["records"]["ok"]
    workers = ready.json()["workers"]
    assert not workers["ok"] and "no worker" in workers["detail"]

    assert httpx.get(api.url + "/metrics", trust_env=False).status_code == 401
    with api.client(api_tokens.reader) as reader:
        reader.get("/api/v1/platforms")
        text = reader.get("/metrics").text
    assert 'edge_deploy_http_requests_total{method="GET",route="/api/v1/platforms",status="200"}' in text
    assert 'edge_deploy_queue_jobs{state="queued"}' in text and "edge_deploy_queue_up 1.0" in text
    assert 'edge_deploy_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/api/v1/platforms"}' in text


def test_a_redis_failure_while_reading_a_run_is_a_503(client, lakefs_repo, redis_server):
    from edge_deploy.status.redis_status import run_key

    run_id = deploy(client, {"repo": lakefs_repo, "targets": ["x86_64-cpu", "arm64-cpu"]}).json()["run_id"]
    with redis_server.client() as redis:
        redis.set(run_key(run_id), "not a hash")  # every read of the run's status now fails in Redis
    try:
        answer = client.get(f"/api/v1/runs/{run_id}")
        assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
        assert "Redis" in answer.json()["message"] and "not a hash" not in answer.text
    finally:
        with redis_server.client() as redis:
            redis.delete(run_key(run_id))
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 200


DIGEST = "@sha256:" + "b" * 64
LOOSENING = [
    ({"validation": {"atol": 1e-3}}, "body.options.validation.atol"),
    ({"validation": {"rtol": 0.5}}, "body.options.validation.rtol"),
    ({"validation": {"min_speedup": 1.0}}, "body.options.validation.min_speedup"),
    ({"base_images": {"x86_64-cpu": "docker.io/library/python:3.11-slim"}}, "body.options.base_images.x86_64-cpu"),
    (
        {"base_images": {"x86_64-cpu": "allowed.example.com/base-evil/python" + DIGEST}},
        "body.options.base_images.x86_64-cpu",
    ),
]


@pytest.mark.parametrize(("options", "field"), LOOSENING, ids=[case[1] for case in LOOSENING])
def test_loosening_a_safety_check_needs_the_policy_scope(api, client, lakefs_repo, api_tokens, options, field):
    body = {"repo": lakefs_repo, "targets": ["x86_64-cpu"], "options": options}
    refused = deploy(client, body)  # release-pipeline: read and deploy
    assert refused.status_code == 403 and refused.json()["field"] == field, refused.text
    assert "`policy` scope" in refused.json()["message"] and "release-pipeline" in refused.json()["message"]
    with api.client(api_tokens.approver) as approver:  # release-manager: read, deploy and policy
        allowed = deploy(approver, body)
        assert allowed.status_code == 202, allowed.text
        assert approver.post(allowed.json()["links"]["cancel"]).status_code == 202


def test_a_stricter_setting_or_an_allowed_pinned_base_needs_no_policy(client, lakefs_repo):
    for options in (
        {"validation": {"atol": 1e-6, "rtol": 1e-5, "min_speedup": 1.2}},
        {"base_images": {"x86_64-cpu": "allowed.example.com/base/python" + DIGEST}},
    ):
        answer = deploy(client, {"repo": lakefs_repo, "targets": ["arm64-cpu"], "options": options})
        assert answer.status_code == 202, answer.text
        assert client.post(answer.json()["links"]["cancel"]).status_code == 202
