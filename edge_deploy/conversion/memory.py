"""Peak memory of a block, as the kernel counts it (VmHWM), reset at the start of the block.

`ru_maxrss` cannot be reset, so a second conversion in the same process would report the first
one's peak, and tracemalloc sees only Python allocations, not torch's tensors. Where the reset is
not possible, the ru_maxrss peak is reported and the result says so (`method`).
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PeakMemory:
    peak_mb: float = 0.0
    method: str = ""


def _read_vm_hwm_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@contextlib.contextmanager
def peak_rss() -> Iterator[PeakMemory]:
    memory = PeakMemory()
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS to the current RSS
        reset = _read_vm_hwm_kb() is not None
    except OSError:
        reset = False
    try:
        yield memory
    finally:
        hwm = _read_vm_hwm_kb() if reset else None
        if hwm is not None:
            memory.peak_mb, memory.method = hwm / 1024, "VmHWM after /proc/self/clear_refs reset"
        else:
            memory.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            memory.method = "ru_maxrss (process lifetime peak; could not reset)"
