"""Status backends for tests: Redis (the redis-server fixture) and in-process, each test with fresh run ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from edge_deploy.status.backend import InProcessStatus, StatusBackend
from edge_deploy.status.redis_status import RedisStatus, redis_client, redis_where
from tests.fixtures.redis import RedisServer


@pytest.fixture
def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_status(redis_server: RedisServer) -> Iterator[RedisStatus]:
    client = redis_client(redis_server.url)
    yield RedisStatus(client, redis_where(redis_server.url), ttl_seconds=600)
    client.close()


@pytest.fixture(params=["redis", "in-process"])
def status_backend(request: pytest.FixtureRequest) -> StatusBackend:
    if request.param == "redis":
        return request.getfixturevalue("redis_status")
    return InProcessStatus()
