"""Live status in Redis: a per-run hash with a TTL, and a per-run event stream.

    edge-deploy:run:{run_id}     hash   stage, state, progress, updated[, error]   (expires)
    edge-deploy:events:{run_id}  stream one entry per StageEvent (XADD; expires with the hash)

Both are written in one MULTI/EXEC, so a reader never sees an event without its progress.
`follow` reads the stream with XREAD BLOCK from the first entry, so a late follower replays the
run's stages in order before it waits for new ones.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from edge_deploy.config import Secret
from edge_deploy.status.events import RunProgress, StageEvent

KEY_PREFIX = "edge-deploy"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600  # long enough to look back at last week's runs
STREAM_MAX_LENGTH = 10_000  # approximate cap: a run emits a few dozen events
BLOCK_MILLISECONDS = 1000
POOL_CONNECTIONS = 16
POOL_WAIT_SECONDS = 5.0


def run_key(run_id: str) -> str:
    return f"{KEY_PREFIX}:run:{run_id}"


def events_key(run_id: str) -> str:
    return f"{KEY_PREFIX}:events:{run_id}"


def redis_client(url: Secret | str) -> redis.Redis:
    """A client that gives up quickly when Redis is down: status must never hold a deployment up.

    Every client of one URL in a process shares one bounded pool: however many threads ask at once,
    Redis sees at most POOL_CONNECTIONS connections from here (a thread waits up to POOL_WAIT_SECONDS
    for one, then fails as Redis being unreachable would)."""
    return redis.Redis(connection_pool=_shared_pool(url.reveal() if isinstance(url, Secret) else url))


@functools.lru_cache(maxsize=8)
def _shared_pool(url: str) -> redis.BlockingConnectionPool:
    return redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=BLOCK_MILLISECONDS / 1000 + 5.0,  # longer than an XREAD BLOCK
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
    )


def redis_where(url: Secret | str) -> str:
    """'Redis at host:port/db' (or the socket path): the URL without its credentials."""
    parts = urlsplit(url.reveal() if isinstance(url, Secret) else url)
    if parts.scheme == "unix":
        return f"Redis at {parts.path}"
    host = parts.hostname or "localhost"
    return f"Redis at {host}:{parts.port or 6379}{parts.path or '/0'}"


class RedisStatus:
    def __init__(self, client: redis.Redis, where: str = "Redis", ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.client, self.where, self.ttl_seconds = client, where, ttl_seconds

    @classmethod
    def from_url(cls, url: Secret | str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> RedisStatus:
        return cls(redis_client(url), redis_where(url), ttl_seconds)

    def publish(self, event: StageEvent, progress: RunProgress) -> StageEvent:
        hash_key, stream_key = run_key(progress.run_id), events_key(event.run_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(hash_key, mapping=progress.to_fields())
            if progress.error is None:
                pipe.hdel(hash_key, "error")
            pipe.expire(hash_key, self.ttl_seconds)
            pipe.xadd(stream_key, event.to_fields(), maxlen=STREAM_MAX_LENGTH, approximate=True)
            pipe.expire(stream_key, self.ttl_seconds)
            results = pipe.execute()
        return event.with_id(results[-2])

    def progress(self, run_id: str) -> RunProgress | None:
        fields = self.client.hgetall(run_key(run_id))
        return RunProgress.from_fields(run_id, fields) if fields else None

    def events(self, run_id: str) -> list[StageEvent]:
        return [StageEvent.from_fields(fields, entry_id) for entry_id, fields in self.client.xrange(events_key(run_id))]

    def follow(self, run_id: str, idle_timeout: float | None = None) -> Iterator[StageEvent]:
        key, last_id = events_key(run_id), "0-0"
        last_news = time.monotonic()
        while True:
            answer = self.client.xread({key: last_id}, count=100, block=BLOCK_MILLISECONDS)
            entries = answer[0][1] if answer else []
            if entries:
                last_news = time.monotonic()
            for entry_id, fields in entries:
                last_id = entry_id
                event = StageEvent.from_fields(fields, entry_id)
                yield event
                if event.ends_run:
                    return
            if idle_timeout is not None and time.monotonic() - last_news >= idle_timeout:
                return
