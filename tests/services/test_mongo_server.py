"""The `mongo_server` fixture answers pymongo like MongoDB for what deployment records need:
unique indexes, upserts, find_one_and_update, aggregation, sorted queries with a limit, and an outage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, ServerSelectionTimeoutError

from tests.fixtures.mongo import MongoServer


@pytest.fixture(scope="module")
def client(mongo_server: MongoServer) -> Iterator[MongoClient]:
    with mongo_server.client() as client:
        yield client


@pytest.fixture
def records(client: MongoClient) -> Iterator[Collection]:
    """A collection in a database of its own, dropped after the test."""
    database = client[f"test_{uuid.uuid4().hex[:12]}"]
    yield database["deployments"]
    client.drop_database(database.name)


def test_url_points_at_the_fixture_port(mongo_server: MongoServer):
    assert mongo_server.url == f"mongodb://127.0.0.1:{mongo_server.port}"


def test_inserted_document_is_found_by_field(records: Collection):
    inserted = records.insert_one({"model": "resnet18", "commit_id": "c1", "platforms": ["linux/amd64"]})

    found = records.find_one({"model": "resnet18"})

    assert found == {"_id": inserted.inserted_id, "model": "resnet18", "commit_id": "c1", "platforms": ["linux/amd64"]}
    assert records.find_one({"model": "yolox"}) is None


def test_unique_index_rejects_a_second_document_with_the_same_key(records: Collection):
    records.create_index([("model", ASCENDING), ("commit_id", ASCENDING)], unique=True, name="model_commit")
    records.insert_one({"model": "resnet18", "commit_id": "c1"})
    records.insert_one({"model": "resnet18", "commit_id": "c2"})

    with pytest.raises(DuplicateKeyError):
        records.insert_one({"model": "resnet18", "commit_id": "c1"})
    assert records.count_documents({}) == 2


def test_upsert_by_key_is_idempotent(records: Collection):
    key = {"model": "resnet18", "commit_id": "c1"}
    results = [
        records.update_one(key, {"$setOnInsert": {"first_attempt": attempt}, "$set": {"status": "done"}}, upsert=True)
        for attempt in range(3)
    ]

    assert results[0].upserted_id is not None
    assert [r.upserted_id for r in results[1:]] == [None, None]
    assert [r.matched_count for r in results[1:]] == [1, 1]
    assert [r.modified_count for r in results[1:]] == [0, 0]
    assert records.count_documents(key) == 1
    assert records.find_one(key, {"_id": 0}) == {**key, "first_attempt": 0, "status": "done"}


def test_find_one_and_update_returns_the_document_after_the_change(records: Collection):
    records.insert_one({"model": "resnet18", "attempts": 1})

    after = records.find_one_and_update(
        {"model": "resnet18"}, {"$inc": {"attempts": 1}}, projection={"_id": 0}, return_document=ReturnDocument.AFTER
    )
    created = records.find_one_and_update(
        {"model": "yolox"},
        {"$inc": {"attempts": 1}},
        projection={"_id": 0},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )

    assert after == {"model": "resnet18", "attempts": 2}
    assert created == {"model": "yolox", "attempts": 1}


def test_aggregation_groups_and_sorts(records: Collection):
    records.insert_many(
        [{"model": m, "size_mb": s} for m, s in [("a", 10), ("b", 5), ("a", 30), ("c", 1), ("b", 5), ("a", 2)]]
    )

    groups = list(
        records.aggregate(
            [
                {"$group": {"_id": "$model", "builds": {"$sum": 1}, "total_mb": {"$sum": "$size_mb"}}},
                {"$sort": {"total_mb": -1}},
            ]
        )
    )

    assert groups == [
        {"_id": "a", "builds": 3, "total_mb": 42},
        {"_id": "b", "builds": 2, "total_mb": 10},
        {"_id": "c", "builds": 1, "total_mb": 1},
    ]


def test_sorted_query_with_limit_returns_the_latest_first(records: Collection):
    records.create_index([("model", ASCENDING), ("version", DESCENDING)])
    records.insert_many([{"model": m, "version": v} for v in (3, 1, 4, 5, 2) for m in ("a", "b")])

    latest = records.find({"model": "a"}, {"_id": 0, "version": 1}).sort("version", DESCENDING).limit(3)
    by_two_keys = records.find({}, {"_id": 0}).sort([("model", DESCENDING), ("version", ASCENDING)]).limit(2)

    assert [d["version"] for d in latest] == [5, 4, 3]
    assert list(by_two_keys) == [{"model": "b", "version": 1}, {"model": "b", "version": 2}]


def test_stopped_server_times_out_and_keeps_its_data_after_a_restart(mongo_server: MongoServer, records: Collection):
    records.insert_one({"model": "resnet18", "status": "recorded"})

    with (
        mongo_server.stopped(),
        mongo_server.client(serverSelectionTimeoutMS=300) as short_wait,
        pytest.raises(ServerSelectionTimeoutError),
    ):
        short_wait[records.database.name].deployments.find_one({})

    assert records.find_one({"model": "resnet18"}, {"_id": 0}) == {"model": "resnet18", "status": "recorded"}
