"""Request parsing shared by the REST API and the S3 gateway of the test lakeFS server."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

# Go's strconv.ParseBool, which lakeFS's generated server uses for boolean query parameters.
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class RangeNotSatisfiable(ValueError):
    pass


def parse_go_bool(value: str) -> bool:
    """strconv.ParseBool: ValueError (with Go's wording) for anything but its twelve spellings."""
    if value in GO_TRUE:
        return True
    if value in GO_FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def parse_range(header: str, size: int) -> tuple[int, int]:
    """First and last byte of a single `bytes=` range, clamped like lakeFS's httputil.ParseRange."""
    found = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not found or found.group(1) == found.group(2) == "" or size == 0:
        raise RangeNotSatisfiable(header)
    start, end = found.group(1), found.group(2)
    if start == "":  # a suffix: the last `end` bytes
        return max(size - int(end), 0), size - 1
    first = int(start)
    last = size - 1 if end == "" else min(int(end), size - 1)
    if first >= size or first > last:
        raise RangeNotSatisfiable(header)
    return first, last


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte strings (werkzeug's form parser and boto3 read from one)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def drain(self) -> None:
        for _ in self._chunks:
            pass
