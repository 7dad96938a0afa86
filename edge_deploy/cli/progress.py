"""How a run looks on a terminal: one line per stage, a sign of life while a stage runs, quiet libraries.

`StageLines` writes a line when a stage starts and one when it ends, with its time. While a stage
runs it shows a spinner with the elapsed seconds on a terminal, or a line every `heartbeat` seconds
elsewhere (a CI log), so a five-minute conversion never looks hung.

`output_to_log(path)` sends everything written to file descriptors 1 and 2 (torch, mmengine and
Flyte print and warn there, some of it from C) to a log file, and returns a stream on the real
terminal for the lines above.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from edge_deploy.status.events import STAGE_FAILED, STAGE_FINISHED, STAGE_STARTED, StageEvent

SPINNER = "|/-\\"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class StageLines:
    def __init__(self, out: TextIO, heartbeat: float = 30.0, tick: float = 0.2) -> None:
        self.out, self.heartbeat, self.tick = out, heartbeat, tick
        self.tty = out.isatty()
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}  # stage -> monotonic start
        self._last_line = time.monotonic()  # when a line last went out (the heartbeat counts from it)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="stage-lines", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()
        with self._lock:
            self._clear_spinner()

    def started(self, stage: str) -> None:
        with self._lock:
            self._running[stage] = time.monotonic()
            if not self.tty:  # on a terminal the spinner line says it
                self._write(f"  - {stage} ...\n")
                self._last_line = time.monotonic()

    def finished(self, stage: str, seconds: float | None = None) -> None:
        self._end(stage, "ok", seconds, "")

    def failed(self, stage: str, seconds: float | None, error: str) -> None:
        self._end(stage, "FAILED", seconds, f": {error}")

    def show(self, event: StageEvent) -> None:
        """Render one live status event (run-level events are left to the caller's summary)."""
        if event.kind == STAGE_STARTED:
            self.started(event.stage)
        elif event.kind == STAGE_FINISHED:
            self.finished(event.stage, event.seconds)
        elif event.kind == STAGE_FAILED:
            self.failed(event.stage, event.seconds, event.error or "")

    @contextlib.contextmanager
    def step(self, stage: str) -> Iterator[None]:
        """A stage of the caller's own (not from the live status), reported the same way."""
        self.started(stage)
        began = time.monotonic()
        try:
            yield
        except BaseException as exc:
            self.failed(stage, time.monotonic() - began, str(exc) or type(exc).__name__)
            raise
        self.finished(stage, time.monotonic() - began)

    def _end(self, stage: str, verdict: str, seconds: float | None, suffix: str) -> None:
        with self._lock:
            began = self._running.pop(stage, None)
            if seconds is None:
                seconds = time.monotonic() - began if began is not None else 0.0
            self._clear_spinner()
            self._write(f"  {verdict:<6} {stage:<12} {format_seconds(seconds):>7}{suffix}\n")
            self._last_line = time.monotonic()

    def _tick_loop(self) -> None:
        turns = 0
        while not self._stop.wait(self.tick):
            turns += 1
            with self._lock:
                if not self._running:
                    continue
                stage, began = next(reversed(self._running.items()))
                elapsed = time.monotonic() - began
                if self.tty:
                    spinner = SPINNER[turns % len(SPINNER)]
                    self._write(f"\r  {spinner:<6} {stage:<12} {format_seconds(elapsed):>7}\x1b[K")
                elif time.monotonic() - self._last_line >= self.heartbeat:
                    self._write(f"    ... {stage} still running ({format_seconds(elapsed)})\n")
                    self._last_line = time.monotonic()

    def _clear_spinner(self) -> None:
        if self.tty:
            self._write("\r\x1b[K")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


@contextlib.contextmanager
def output_to_log(path: Path) -> Iterator[TextIO]:
    """Point fds 1 and 2 at `path` for the block; yields a text stream on the original stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield terminal
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
    finally:
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()
