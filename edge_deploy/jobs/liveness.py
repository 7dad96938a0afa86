"""A worker's sign of life for its container's probes: a file whose time the worker's loop renews.

The worker touches the file at every turn of its loop (about every second while idle, every quarter
lease while it follows a job, every few seconds while Redis is away), before it talks to Redis: a
Redis outage is waited out, and restarting the pod would not cure it. A loop that hangs (a call
that never returns) stops renewing the file, and `edge-deploy worker-alive` (the probe) then fails.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

ALIVE_FILE_NAME = "worker-alive"


def alive_file(work_dir: Path) -> Path:
    return work_dir / ALIVE_FILE_NAME


class AliveMarker:
    """Renews `path`'s modification time; a failure is logged once and never stops the worker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = False

    def mark(self) -> None:
        try:
            try:
                os.utime(self.path)  # the common case: one call per turn of the loop
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.touch()
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot renew the liveness file %s (%s): the container's probe will fail", self.path, exc)


def staleness(path: Path, max_age_seconds: float, now: float | None = None) -> str | None:
    """None when `path` was renewed within `max_age_seconds`; else why the worker counts as not alive."""
    try:
        renewed = path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: the worker has not started its loop"
    except OSError as exc:
        return f"cannot read {path}: {exc}"
    age = (time.time() if now is None else now) - renewed
    if age > max_age_seconds:
        return f"the worker's loop last renewed {path} {age:.0f} s ago (more than {max_age_seconds:g} s): it is stuck"
    return None
