"""The two ends of a job's child process: what the worker and the child say to each other.

The worker starts one child process per job (its own session, so a cancel can stop the whole
process group) and writes the job as JSON to its stdin. The child answers on a pipe, one JSON line
per message: `{"outcome": {...}}` when the run ended, and, in the embedded mode where status lives
in process memory, `{"event": {...}, "progress": {...}}` for each stage event so that the worker's
process (which serves the API) can show them. The child's stdout and stderr stay the worker's, so
the workflow's logs end up where the worker's do.

A child must not outlive its worker, nor must anything it started: a job whose worker died is
taken up by another worker, and two runs of one job must not overlap. `die_with_parent` has the
kernel signal the child when its parent goes (Linux), keeps a watchdog thread too, and then kills
the child's whole process group.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

from edge_deploy.jobs.executor import ExecutionOutcome
from edge_deploy.status.backend import StatusBackend
from edge_deploy.status.events import RunProgress, StageEvent

log = logging.getLogger(__name__)

PIPE_FD_VARIABLE = "EDGE_JOB_PIPE_FD"
PARENT_PID_VARIABLE = "EDGE_JOB_PARENT_PID"
FORWARD_STATUS_VARIABLE = "EDGE_JOB_FORWARD_STATUS"
_PR_SET_PDEATHSIG = 1
PARENT_DIED_SIGNAL = signal.SIGUSR1
PARENT_POLL_SECONDS = 1.0
FORWARD_INTERVAL_SECONDS = 0.2


def die_with_parent(expected_parent: int) -> None:
    """When the worker dies, this job and every process it started die too; exit now if it already has.

    The job process leads its own process group (the worker starts it in a new session), and the
    processes it starts (a converter, a Docker client) are in that group. The kernel tells it of the
    worker's death with PARENT_DIED_SIGNAL (a SIGKILL would spare its children), and a watchdog
    thread looks too, for when the main thread is inside a long C call: either kills the group."""
    if os.getppid() != expected_parent:
        os._exit(70)  # the worker died before we were set up; another worker will take the job
    signal.signal(PARENT_DIED_SIGNAL, lambda *_: _kill_own_group())
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, PARENT_DIED_SIGNAL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d); the watchdog alone stands in", ctypes.get_errno())
    threading.Thread(target=_watch_parent, args=(expected_parent,), name="parent-watchdog", daemon=True).start()
    if os.getppid() != expected_parent:  # it died in between
        _kill_own_group()


def _watch_parent(expected_parent: int) -> None:
    while os.getppid() == expected_parent:
        time.sleep(PARENT_POLL_SECONDS)
    _kill_own_group()


def _kill_own_group() -> None:
    if os.getpgrp() == os.getpid():  # the group is the job's own: never the caller's of a stray call
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(70)


def outcome_message(outcome: ExecutionOutcome) -> str:
    return json.dumps({"outcome": asdict(outcome)}) + "\n"


def event_message(event: StageEvent, progress: RunProgress | None) -> str:
    return json.dumps({"event": asdict(event), "progress": asdict(progress) if progress else None}) + "\n"


def read_messages(
    stream: IO[str], on_event: Callable[[StageEvent, RunProgress | None], None]
) -> ExecutionOutcome | None:
    """Read the child's pipe to its end; events go to `on_event`, the outcome is returned (None if the
    child died before it said how the run ended). A line that does not parse is logged and skipped."""
    outcome = None
    for line in stream:
        try:
            message: dict[str, Any] = json.loads(line)
            if "outcome" in message:
                outcome = ExecutionOutcome(**message["outcome"])
            elif "event" in message:
                event = StageEvent(**message["event"])
                progress = RunProgress(**message["progress"]) if message.get("progress") else None
                on_event(event, progress)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("unreadable message from a job process (%s): %.200s", exc, line)
    return outcome


class StatusForwarder:
    """In the child: sends every event this process's status records for the run over the pipe."""

    def __init__(self, status: StatusBackend, run_id: str, pipe: IO[str]) -> None:
        self.status, self.run_id, self.pipe = status, run_id, pipe
        self._sent = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="status-forwarder")

    def start(self) -> StatusForwarder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopped.wait(FORWARD_INTERVAL_SECONDS):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events = self.status.events(self.run_id)
            for event in events[self._sent :]:
                self.pipe.write(event_message(event, self.status.progress(self.run_id)))
            self._sent = len(events)
            self.pipe.flush()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self.flush()
