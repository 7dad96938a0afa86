"""A run's events as Server-Sent Events, read from the live status feed and resumable with Last-Event-ID.

With Redis the feed is the run's stream `edge-deploy:events:{run_id}` (edge_deploy.status.redis_status),
read here with the asyncio client (XREAD BLOCK), so a waiting client holds no thread. Without Redis it
is this process's in-process status, which the embedded worker fills from its job processes. Event
ids are the feed's entry ids (`<ms>-<seq>`); a client that reconnects with `Last-Event-ID` gets only
what came after; an id beyond the feed's last entry (a made-up one, or one from before Redis lost
its data) resumes from the feed's end. The stream ends after the run's end event (run-succeeded /
run-failed), or at once when the run has ended and nothing is left to send.

Streams share a bounded pool of Redis connections (EVENT_CONNECTIONS): each read blocks for at most
BLOCK_SECONDS, so with more streams than connections a stream waits its turn (its events arrive a
little later) and Redis never sees more connections than the pool holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Protocol

import redis
import redis.asyncio

from edge_deploy.config import Secret
from edge_deploy.status.backend import StatusBackend
from edge_deploy.status.events import StageEvent
from edge_deploy.status.redis_status import events_key

log = logging.getLogger(__name__)

EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
MAX_ID_PART = 2**64 - 1  # Redis stream ids are two unsigned 64-bit numbers
EVENT_CONNECTIONS = 32
BLOCK_SECONDS = 1.0
IDLE_CHECKS_EVERY = 5  # empty reads between two looks at whether the run has ended
OUTAGE_SECONDS = 30.0  # a feed that stays unreachable this long ends the stream; the client resumes later


def parse_event_id(text: str) -> tuple[int, int]:
    milliseconds, sequence = text.split("-")
    return int(milliseconds), int(sequence)


def is_event_id(text: str) -> bool:
    return bool(EVENT_ID.match(text)) and max(parse_event_id(text)) <= MAX_ID_PART


class EventFeed(Protocol):
    async def read_after(self, run_id: str, after: str, block_seconds: float) -> list[StageEvent]: ...

    async def last_event_id(self, run_id: str) -> str | None: ...

    async def close(self) -> None: ...


class RedisEventFeed:
    def __init__(self, url: Secret, connections: int = EVENT_CONNECTIONS) -> None:
        self.client = redis.asyncio.Redis.from_url(
            url.reveal(),
            max_connections=connections,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=BLOCK_SECONDS + 5.0,
        )
        # Streams wait here, in turn, for one of the pool's connections (each is held for one read);
        # the pool itself would refuse the extra ones with an error.
        self._turns = asyncio.Semaphore(connections)

    async def read_after(self, run_id: str, after: str, block_seconds: float) -> list[StageEvent]:
        async with self._turns:
            answer = await self.client.xread({events_key(run_id): after}, count=100, block=int(block_seconds * 1000))
        entries = answer[0][1] if answer else []
        return [StageEvent.from_fields(fields, entry_id) for entry_id, fields in entries]

    async def last_event_id(self, run_id: str) -> str | None:
        async with self._turns:
            last = await self.client.xrevrange(events_key(run_id), count=1)
        return last[0][0] if last else None

    async def close(self) -> None:
        await self.client.aclose()


class InProcessEventFeed:
    """Polls this process's status: the embedded worker republishes its job processes' events into it."""

    def __init__(self, status: StatusBackend, poll_seconds: float = 0.1) -> None:
        self.status, self.poll_seconds = status, poll_seconds

    async def read_after(self, run_id: str, after: str, block_seconds: float) -> list[StageEvent]:
        start = parse_event_id(after)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_seconds
        while True:
            fresh = [event for event in self.status.events(run_id) if parse_event_id(event.event_id) > start]
            if fresh or loop.time() >= deadline:
                return fresh
            await asyncio.sleep(self.poll_seconds)

    async def last_event_id(self, run_id: str) -> str | None:
        events = self.status.events(run_id)
        return events[-1].event_id if events else None

    async def close(self) -> None:
        return None


def event_data(event: StageEvent) -> str:
    data = {key: value for key, value in asdict(event).items() if key != "event_id"}
    return json.dumps(data)


RUNNING, ENDED, UNKNOWN = "running", "ended", "unknown"
RUN_UNKNOWN = "run-unknown"  # the terminal event of a stream whose run the service no longer knows


async def run_event_stream(
    feed: EventFeed, run_id: str, after: str, run_state: Callable[[], Awaitable[str]]
) -> AsyncIterator[dict[str, str]]:
    """The SSE messages of a run after event `after`, until its end event (or its end, if already past)."""
    idle, outage_started, resumable = 0, None, after != "0-0"
    while True:
        try:
            if resumable:  # once, with the feed reachable: an id beyond its end resumes from the end
                after, resumable = _within_feed(after, await feed.last_event_id(run_id)), False
            events = await feed.read_after(run_id, after, BLOCK_SECONDS)
            outage_started = None
        except (redis.RedisError, OSError) as exc:
            loop = asyncio.get_running_loop()
            outage_started = outage_started or loop.time()
            if loop.time() - outage_started > OUTAGE_SECONDS:
                log.warning("events of run %s: the feed stays unreachable (%s); closing the stream", run_id, exc)
                return
            await asyncio.sleep(1.0)
            continue
        for event in events:
            after = event.event_id
            yield {"id": event.event_id, "event": event.kind, "data": event_data(event)}
            if event.ends_run:
                return
        idle = 0 if events else idle + 1
        look = idle == 1 or (idle > 0 and idle % IDLE_CHECKS_EVERY == 0)  # at once, then now and then
        if not look:
            continue
        state = await run_state()
        if state == UNKNOWN:  # neither a job nor a record (Redis lost them): say so, rather than wait forever
            message = "the service has no job and no record of this run any more (its queue lost it); it will not end"
            yield {"event": RUN_UNKNOWN, "data": json.dumps({"run_id": run_id, "kind": RUN_UNKNOWN, "error": message})}
            return
        if state == ENDED:
            return


def _within_feed(after: str, last: str | None) -> str:
    if last is None:
        return "0-0"  # nothing in the feed (yet, or any more): everything that comes is new
    return last if parse_event_id(after) > parse_event_id(last) else after
