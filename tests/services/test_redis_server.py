"""The `redis_server` fixture is a real Redis: the commands the status/lock code relies on behave as Redis's do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.fixtures.processes import wait_until
from tests.fixtures.redis import RedisServer


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as client:
        yield client


@pytest.fixture
def key() -> str:
    """A key no other test (or other session on the same server) uses."""
    return f"test:{uuid.uuid4().hex}"


def test_url_points_at_the_fixture_port(redis_server: RedisServer):
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_set_then_get_returns_the_value(client: redis.Redis, key: str):
    assert client.set(key, "onnx-ready") is True
    assert client.get(key) == "onnx-ready"
    assert client.get(f"{key}:never-set") is None


def test_hash_with_ttl_keeps_fields_until_the_key_expires(client: redis.Redis, key: str):
    client.hset(key, mapping={"stage": "convert", "progress": "0.5"})
    assert client.expire(key, 3600) is True
    assert client.hgetall(key) == {"stage": "convert", "progress": "0.5"}
    assert 0 < client.ttl(key) <= 3600

    client.pexpire(key, 50)
    wait_until(lambda: client.exists(key) == 0, "the hash to expire", timeout=5)
    assert client.hgetall(key) == {}


def test_stream_xadd_then_xrange_returns_events_in_order(client: redis.Redis, key: str):
    ids = [client.xadd(key, {"stage": stage, "status": "done"}) for stage in ("download", "convert", "validate")]

    events = client.xrange(key)

    assert [event_id for event_id, _ in events] == ids
    assert [fields["stage"] for _, fields in events] == ["download", "convert", "validate"]
    assert client.xrange(key, min=ids[1], max=ids[1]) == [(ids[1], {"stage": "convert", "status": "done"})]


def test_set_nx_px_takes_a_lock_once_until_it_expires(client: redis.Redis, key: str):
    assert client.set(key, "owner-a", nx=True, px=100) is True
    assert client.set(key, "owner-b", nx=True, px=100) is None
    assert client.get(key) == "owner-a"
    assert 0 < client.pttl(key) <= 100

    wait_until(lambda: client.exists(key) == 0, "the lock to expire", timeout=5)
    assert client.set(key, "owner-b", nx=True, px=60_000) is True
    assert client.get(key) == "owner-b"


def test_stopped_redis_refuses_connections_and_comes_back_empty_on_the_same_port(
    redis_server: RedisServer, client: redis.Redis, key: str
):
    client.set(key, "before the outage")

    with redis_server.stopped(), pytest.raises(redis.ConnectionError):
        client.ping()

    # The same client (same URL) reconnects; nothing is persisted, so the data is gone.
    assert client.ping() is True
    assert client.get(key) is None
