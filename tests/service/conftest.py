"""Fixtures of the deployment service's tests: a clean Redis per test, queues, jobs and a service process.

`redis_url`: the session's redis-server (tests/fixtures/redis.py), emptied before each test.
`durable_redis`: a redis-server of this module with append-only persistence, as production runs a
queue's Redis, for the tests that restart Redis under a running job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from app.core.auth import new_token, token_digest
from edge_deploy.jobs.model import DeploymentRequest, Job, deployment_fingerprint, deployment_key, new_run_id
from edge_deploy.jobs.queue import Submission
from edge_deploy.records.embedded import EmbeddedRecordStore
from tests.fixtures.processes import free_port, require_binary
from tests.fixtures.redis import RedisServer, _answers_ping
from tests.fixtures.restartable import RestartableProcess
from tests.records.conftest import TEST_RETRY, mongo_store


@pytest.fixture
def redis_url(redis_server) -> str:
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = require_binary("redis-server", "install Debian's redis-server (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    argv += ["--appendonly", "yes", "--appendfsync", "always"]
    what, log_path = f"durable redis-server on {port}", tmp_path / "redis.log"
    process = RestartableProcess(argv, what, lambda: _answers_ping(port), log_path)
    process.start()
    try:
        yield RedisServer(f"redis://127.0.0.1:{port}/0", port, log_path, process)
    finally:
        process.stop()


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, without persistence: a restart loses everything (a cache-style
    deployment, or an operator's mistake), which the queue must survive too."""
    binary = require_binary("redis-server", "install Debian's redis-server (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(tmp_path)]
    process = RestartableProcess(
        argv, f"volatile redis-server on {port}", lambda: _answers_ping(port), tmp_path / "redis.log"
    )
    process.start()
    try:
        yield RedisServer(f"redis://127.0.0.1:{port}/0", port, tmp_path / "redis.log", process)
    finally:
        process.stop()


@dataclass(frozen=True)
class ApiTokens:
    """Static API tokens of the test service: the file holds only their sha256."""

    reader: str
    deployer: str
    file: Path
    approver: str = ""  # read, deploy and policy: may loosen a safety check (edge_deploy.policy)


@pytest.fixture(scope="session")
def api_tokens(tmp_path_factory: pytest.TempPathFactory) -> ApiTokens:
    reader, deployer, approver = new_token(), new_token(), new_token()
    path = tmp_path_factory.mktemp("api") / "tokens.yaml"
    entries = [
        {"name": "dashboard", "sha256": token_digest(reader), "scopes": ["read"]},
        {"name": "release-pipeline", "sha256": token_digest(deployer), "scopes": ["read", "deploy"]},
        {"name": "release-manager", "sha256": token_digest(approver), "scopes": ["read", "deploy", "policy"]},
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return ApiTokens(reader, deployer, path, approver)


@pytest.fixture(params=["mongodb", "embedded"])
def record_store(request: pytest.FixtureRequest, tmp_path: Path):
    """Each test once on MongoDB (the SecantusDB server) and once on the embedded SQLite file."""
    if request.param == "mongodb":
        store = mongo_store(request.getfixturevalue("mongo_server"))
    else:
        store = EmbeddedRecordStore(tmp_path / "deployments.sqlite3", retry=TEST_RETRY)
    yield store
    store.close()


def make_job(repo: str = "models", commit: str = "c" * 64, targets: tuple[str, ...] = ("x86_64-cpu",), **request):
    return Job(new_run_id(), DeploymentRequest(repo=repo, targets=targets, **request), commit, principal="tester")


def submit(queue, job: Job, idempotency_key: str | None = None) -> Submission:
    return queue.submit(
        job,
        deployment_key(job.request, job.source_commit),
        deployment_fingerprint(job.request, job.source_commit),
        idempotency_key,
    )


SAMPLE = "fast-scnn"  # the quickest sample to convert and validate (edge_deploy/samples.py)
# The gate at its lightest that still checks parity: the run is about the service, not the model.
QUICK_VALIDATION = {"samples": 1, "batch_sizes": [1], "warmup_runs": 1, "timed_runs": 3, "optimize": False}


@dataclass(frozen=True)
class SeededModel:
    repo: str
    commit: str


@pytest.fixture
def seeded_model(lakefs_server, lakefs_repo, sample_model_dir) -> SeededModel:
    """The fast-scnn sample (plaintext) under model/ on `main` of a fresh lakeFS repository, committed."""
    import lakefs_sdk

    with lakefs_server.api() as api:
        objects = lakefs_sdk.ObjectsApi(api)
        for path in sorted(sample_model_dir(SAMPLE).iterdir()):
            objects.upload_object(lakefs_repo, "main", f"model/{path.name}", content=str(path))
        commit = lakefs_sdk.CommitsApi(api).commit(
            lakefs_repo, "main", lakefs_sdk.CommitCreation(message=f"{SAMPLE} sample")
        )
    return SeededModel(lakefs_repo, commit.id)


def deployment_body(model: SeededModel) -> dict:
    return {
        "repo": model.repo,
        "targets": ["x86_64-cpu"],
        "options": {"build_images": False, "validation": QUICK_VALIDATION},
    }
