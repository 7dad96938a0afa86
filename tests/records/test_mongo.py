"""MongoDB specifics: indexes, bounded retries that fail clearly, credentials kept out of messages, the factory."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from edge_deploy.config import Secret, Settings
from edge_deploy.errors import ConfigError, TransientError
from edge_deploy.records import RecordStoreUnavailable, open_record_store
from edge_deploy.records.embedded import EmbeddedRecordStore
from edge_deploy.records.mongo import MongoRecordStore
from edge_deploy.records.sync import DirectorySource, sync_records
from tests.fixtures.mongo import MongoServer
from tests.fixtures.processes import free_port
from tests.records.builders import deployment
from tests.records.conftest import TEST_RETRY, mongo_store


def test_the_collection_has_the_indexes_the_queries_need(mongo_server: MongoServer) -> None:
    database = f"edge_deploy_test_{uuid.uuid4().hex[:12]}"
    store = mongo_store(mongo_server, database)
    store.upsert(deployment("run-1"))
    with mongo_server.client() as client:
        indexes = {index["name"]: index for index in client[database]["deployments"].list_indexes()}
    assert list(indexes["run_id_unique"]["key"].items()) == [("run_id", 1)] and indexes["run_id_unique"]["unique"]
    assert list(indexes["model_commit"]["key"].items()) == [("model.repo", 1), ("model.commit_id", 1)]
    assert list(indexes["status_updated"]["key"].items()) == [("status.state", 1), ("updated_at", -1)]
    assert list(indexes["model_created"]["key"].items()) == [("model.repo", 1), ("created_at", -1)]
    store.close()


def test_mongodb_down_fails_the_write_clearly_then_sync_restores_it(
    mongo_server: MongoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = f"edge_deploy_test_{uuid.uuid4().hex[:12]}"
    store = mongo_store(mongo_server, database)
    first, second = deployment("run-1", minute=0), deployment("run-2", commit="beef", minute=10)
    store.upsert(first)
    published = tmp_path / "published"  # what the publish stage put beside the artifacts
    for record in (first, second):
        (published / record.run_id).mkdir(parents=True)
        (published / record.run_id / "record.json").write_text(record.to_json())

    with mongo_server.stopped(), caplog.at_level(logging.WARNING), pytest.raises(RecordStoreUnavailable) as failure:
        store.upsert(second)
    message = str(failure.value)
    assert isinstance(failure.value, TransientError)  # the record task may retry it as a whole
    assert f"write deployment record run-2: gave up after {TEST_RETRY.attempts} attempts" in message
    assert f"MongoDB database '{database}' on 127.0.0.1:{mongo_server.port} unreachable" in message
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "retrying in" in r.getMessage()]
    assert len(retries) == TEST_RETRY.attempts - 1

    report = sync_records(DirectorySource(published), store)
    assert report.ok and report.imported == ["run-2"] and report.already_current == ["run-1"]
    assert store.get("run-1") == first and store.get("run-2") == second
    assert store.count() == 2
    store.close()


def test_no_password_from_the_uri_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    password = "pa55-w0rd-do-not-show"
    uri = Secret(f"mongodb://deployer:{password}@127.0.0.1:{free_port()}/?authSource=admin")
    store = MongoRecordStore(uri, "fleet", retry=TEST_RETRY, timeout=0.3)
    with caplog.at_level(logging.DEBUG), pytest.raises(RecordStoreUnavailable) as failure:
        store.upsert(deployment("run-1"))
    assert "MongoDB database 'fleet' on 127.0.0.1:" in str(failure.value)
    assert password not in str(failure.value) and password not in caplog.text
    assert password not in repr(store.__dict__)
    store.close()


def test_a_malformed_uri_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="MONGODB_URI is not a usable MongoDB URI") as failure:
        MongoRecordStore("mongodb://deployer:hunter2-secret@db.example:notaport/", "fleet")
    assert "hunter2-secret" not in str(failure.value)


def test_the_factory_picks_mongodb_when_configured_and_says_so(
    mongo_server: MongoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edge_deploy.records"):
        store = open_record_store(
            Settings(mongodb_uri=Secret(mongo_server.url), mongodb_database="fleet", work_dir=tmp_path)
        )
    assert isinstance(store, MongoRecordStore)
    assert f"deployment records: MongoDB database 'fleet' on 127.0.0.1:{mongo_server.port}" in caplog.text
    store.close()


def test_the_factory_falls_back_to_the_embedded_store_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edge_deploy.records"):
        store = open_record_store(Settings(work_dir=tmp_path / "work"))
    assert isinstance(store, EmbeddedRecordStore)
    assert store.path == tmp_path / "work" / "deployments.sqlite3"
    assert "embedded SQLite store" in caplog.text and "MONGODB_URI is not set" in caplog.text
    store.upsert(deployment("run-1"))
    store.close()
