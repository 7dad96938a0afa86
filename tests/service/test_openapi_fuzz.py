"""The OpenAPI document, fuzzed with schemathesis against the running service (Redis, MongoDB-wire,
lakeFS and an idle worker, so that /readyz is ready): valid and invalid requests to every
operation, and every answer must be no 5xx, a documented status, the documented content type,
headers and schema. Bounded: a fixed, small number of examples per operation, derandomized, no
deadline (the machine is shared)."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.service.processes import service_env, serving, start_worker, stop_worker

EXAMPLES_PER_OPERATION = 30
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory, redis_server, mongo_server, lakefs_server, api_tokens):
    work = tmp_path_factory.mktemp("fuzz")
    env = service_env(
        work / "work",
        REDIS_URL=redis_server.url,
        MONGODB_URI=mongo_server.url,
        MONGODB_DATABASE=f"edge_fuzz_{uuid.uuid4().hex[:8]}",
        EDGE_API_TOKENS_FILE=str(api_tokens.file),
        **lakefs_server.env(),
    )
    worker = start_worker(env, work / "worker.log")  # no fuzzed request names a model that exists: it stays idle
    try:
        with serving(env, work / "serve.log", api_tokens.deployer) as service:
            yield service
    finally:
        stop_worker(worker)


@pytest.fixture(scope="module")
def api_schema(fuzzed_service):
    headers = {"Authorization": f"Bearer {fuzzed_service.token}"}  # the document, too, needs a token
    return schemathesis.openapi.from_url(fuzzed_service.url + "/openapi.json", headers=headers)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure is reproducible, the time bounded
)
def test_the_api_keeps_its_openapi_promises(case, fuzzed_service):
    headers = {"Authorization": f"Bearer {fuzzed_service.token}"}
    case.call_and_validate(base_url=fuzzed_service.url, headers=headers, checks=CHECKS, timeout=30)
