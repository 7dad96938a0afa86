"""Record stores for tests: MongoDB (the SecantusDB fixture) and the embedded SQLite file.

`record_store` runs a test once on each store; every test gets its own database / file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_deploy.records.embedded import EmbeddedRecordStore
from edge_deploy.records.mongo import MongoRecordStore
from edge_deploy.records.store import RecordStore
from edge_deploy.retry import RetryPolicy
from tests.fixtures.mongo import MongoServer

# Short waits so that an outage test gives up in seconds; the attempt count is what is under test.
TEST_RETRY = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)


def mongo_store(mongo_server: MongoServer, database: str | None = None) -> MongoRecordStore:
    name = database or f"edge_deploy_test_{uuid.uuid4().hex[:12]}"
    return MongoRecordStore(mongo_server.url, name, retry=TEST_RETRY, timeout=1.0)


@pytest.fixture
def mongo_record_store(mongo_server: MongoServer) -> Iterator[MongoRecordStore]:
    store = mongo_store(mongo_server)
    yield store
    store.close()


@pytest.fixture
def embedded_record_store(tmp_path: Path) -> Iterator[EmbeddedRecordStore]:
    store = EmbeddedRecordStore(tmp_path / "deployments.sqlite3", retry=TEST_RETRY)
    yield store
    store.close()


@pytest.fixture(params=["mongodb", "embedded"])
def record_store(request: pytest.FixtureRequest) -> RecordStore:
    return request.getfixturevalue(f"{'mongo' if request.param == 'mongodb' else 'embedded'}_record_store")
