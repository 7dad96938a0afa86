"""Transfer progress: a byte counter that reports every 10%, fed from any thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Progress:
    """Thread-safe byte counter that logs every 10% (boto3 calls it from its worker threads)."""

    def __init__(self, total: int, label: str, report: Callable[[str], None] = log.info) -> None:
        self.total, self.label, self.report = total, label, report
        self.done = 0
        self._lock = threading.Lock()
        self._next_step = 10
        self._started = time.monotonic()

    def __call__(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            percent = 100 if self.total == 0 else self.done * 100 // self.total
            if percent < self._next_step:
                return
            self._next_step = (percent // 10 + 1) * 10
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self.report(
            f"{self.label}: {self.done / 2**20:.1f}/{self.total / 2**20:.1f} MiB ({percent}%, "
            f"{self.done / 2**20 / elapsed:.1f} MiB/s)"
        )


class CountingReader:
    """A file wrapper that reports bytes read, so uploads show progress."""

    def __init__(self, handle, progress: Progress) -> None:
        self.handle, self.progress = handle, progress

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.progress(len(data))
        return data
