"""Reading Server-Sent Events the way a browser's EventSource does (id / event / data fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict


def read_events(client: httpx.Client, path: str, last_event_id: str | None = None, timeout: float = 600) -> list[Event]:
    """Every event of the stream until the server closes it (after the run's end event)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events, fields = [], {}
    with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(timeout, connect=10)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in fields:
                    events.append(Event(fields.get("id", ""), fields["event"], json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):  # ":" lines are keep-alive comments
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return events
