"""Sealing and opening the format between binary streams, a batch of whole chunks at a time.

Each read takes `BATCH_BYTES` worth of whole chunks (large sequential reads), and every chunk is
sealed or opened with pyca's `encrypt_into`/`decrypt_into` straight into its place in a
preallocated output batch, so no chunk is ever copied by Python. While one batch is being read and
processed, a writer thread writes the previous one: the cipher and the disk work at the same time.
Memory is two batches (a few MiB) whatever the file size. `open_into` fills a caller's buffer of
the plaintext's final size instead (the edge runtime's in-memory path), with a worker per CPU:
there is no disk to wait for, so the cipher and the page faults are what take the time.

Decrypting to a stream writes a batch once all its chunks are authenticated, but truncation and
trailing data show only at the end: a caller that writes to a stream it cannot take back must
discard the output on error (the file functions in `files` do this with temp + rename).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_deploy.crypto.errors import CorruptedDataError, CryptoError, WrongKeyError
from edge_deploy.crypto.format import (
    DEFAULT_CHUNK_SIZE,
    KEY_SIZE,
    MAX_CHUNKS,
    NONCE_PREFIX_SIZE,
    TAG_SIZE,
    VERSION,
    WRAP_NONCE_SIZE,
    Header,
    check_chunk_size,
    chunk_nonce,
    parse_header,
    read_into,
    truncation_error,
)
from edge_deploy.crypto.keyring import Keyring

log = logging.getLogger(__name__)

# Plaintext per read and write: large enough for sequential disk speed and to make Python's cost
# per batch negligible, small enough that two batches in and out stay a few MiB (see the benchmark).
BATCH_BYTES = 4 * 1024 * 1024

Observer = Callable[[memoryview], object]  # e.g. hashlib's `update`: sees every byte once, in order


@dataclass(frozen=True)
class StreamResult:
    """What one encryption or decryption moved."""

    key_id: str
    chunk_size: int
    chunks: int
    plaintext_size: int
    ciphertext_size: int


def new_header(keyring: Keyring, key_id: str, chunk_size: int, name: str) -> tuple[Header, AESGCM]:
    """A header for a new file with a fresh data key wrapped under `key_id`, and that data key."""
    kek = keyring.cipher(key_id, name)
    check_chunk_size(chunk_size)
    data_key = AESGCM.generate_key(KEY_SIZE * 8)
    unsealed = Header(VERSION, chunk_size, key_id, os.urandom(NONCE_PREFIX_SIZE), b"", b"")
    header = wrap_data_key(unsealed, kek, data_key)
    return header, AESGCM(data_key)


def wrap_data_key(header: Header, kek: AESGCM, data_key: bytes) -> Header:
    """`header` with `data_key` sealed under `kek`, bound to the body header and the key id."""
    wrap_nonce = os.urandom(WRAP_NONCE_SIZE)
    wrapped = kek.encrypt(wrap_nonce, data_key, header.wrap_aad)
    return Header(header.version, header.chunk_size, header.key_id, header.nonce_prefix, wrap_nonce, wrapped)


def unwrap_data_key(header: Header, keyring: Keyring, name: str) -> bytes:
    kek = keyring.cipher(header.key_id, name)
    try:
        return kek.decrypt(header.wrap_nonce, header.wrapped_key, header.wrap_aad)
    except InvalidTag:
        raise WrongKeyError(
            f"{name}: the key loaded as {header.key_id!r} does not open this file: it is not the key the file "
            "was sealed with, or the file's header was altered",
            header.key_id,
        ) from None


def open_data_key(header: Header, keyring: Keyring, name: str) -> AESGCM:
    return AESGCM(unwrap_data_key(header, keyring, name))


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    keyring: Keyring,
    key_id: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    name: str = "<stream>",
    on_plaintext: Observer | None = None,
    on_ciphertext: Observer | None = None,
) -> StreamResult:
    """Seal everything `src` yields into `dst` under a new data key wrapped by KEK `key_id`.

    The observers see the plaintext read and the ciphertext written (header included), in order.
    """
    header, data_cipher = new_header(keyring, key_id, chunk_size, name)
    encoded = memoryview(header.encode())
    write_all(dst.write, encoded)
    if on_ciphertext is not None:
        on_ciphertext(encoded)
    remaining = _remaining_bytes(src)
    per_batch = _chunks_per_batch(chunk_size, remaining, chunk_size)
    sizes = (per_batch * chunk_size, per_batch * (chunk_size + TAG_SIZE))
    index = plaintext_size = 0
    with _WriteBehind(dst.write, *sizes, remaining, on_source=on_plaintext, on_target=on_ciphertext) as writer:
        while True:
            batch = writer.take()
            count = read_into(src, batch.source)
            at_end = count < len(batch.source)  # only the final chunk is short, so a full batch never ends
            sealed, index = _seal_batch(data_cipher, header, batch.source[:count], batch.target, index, at_end, name)
            writer.submit(batch, count, sealed)
            plaintext_size += count
            if at_end:
                break
    return StreamResult(key_id, chunk_size, index, plaintext_size, header.ciphertext_size(plaintext_size))


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    keyring: Keyring,
    *,
    name: str = "<stream>",
    on_plaintext: Observer | None = None,
) -> StreamResult:
    """Open a sealed stream into `dst`; see the module docstring about output on error."""
    header = parse_header(src, name)
    return open_stream(src, dst, header, open_data_key(header, keyring, name), name, on_plaintext)


def open_stream(
    src: BinaryIO,
    dst: BinaryIO,
    header: Header,
    data_cipher: AESGCM,
    name: str,
    on_plaintext: Observer | None = None,
) -> StreamResult:
    """Open the chunks that follow `header` in `src` into `dst` (the header read and the data key
    unwrapped already, so that a missing key shows before anything is written)."""
    chunk_size = header.chunk_size
    remaining = _remaining_bytes(src)
    per_batch = _chunks_per_batch(chunk_size, remaining, chunk_size + TAG_SIZE)
    sizes = (per_batch * (chunk_size + TAG_SIZE), per_batch * chunk_size)
    index = plaintext_size = 0
    with _WriteBehind(dst.write, *sizes, remaining, on_target=on_plaintext) as writer:
        while True:
            batch = writer.take()
            count = read_into(src, batch.source)  # short only at the end: appended data makes it longer
            at_end = count < len(batch.source)
            opened, index = _open_batch(data_cipher, header, batch.source[:count], batch.target, index, at_end, name)
            writer.submit(batch, count, opened)
            plaintext_size += opened
            if at_end:
                break
    return StreamResult(header.key_id, chunk_size, index, plaintext_size, header.ciphertext_size(plaintext_size))


MAX_WORKERS = 4  # AES-GCM runs at several GB/s per core: beyond a few, memory bandwidth is the limit


def open_into(
    source: BinaryIO,
    header: Header,
    data_cipher: AESGCM,
    plaintext: memoryview,
    name: str,
    *,
    workers: int | None = None,
) -> int:
    """Open the chunks that follow `header` in the regular file `source` straight into their
    places in `plaintext`, a buffer of the plaintext's final size (from `Header.layout`). Returns
    the chunk count.

    The batches are shared out among `workers` threads (default: one per CPU this process may run
    on, at most MAX_WORKERS), each reading its own batches at their offsets and opening them into
    place: pyca releases the GIL while it decrypts, so the reads, the cipher and the first touch
    of each fresh output page (the kernel zeroing it) run on every core at once. Each worker holds
    one batch of ciphertext. When chunks fail, the error raised is the one of the first failing
    chunk, as a single reader would have found it.
    """
    chunk_size, sealed_size = header.chunk_size, header.chunk_size + TAG_SIZE
    per_batch = _chunks_per_batch(chunk_size, len(plaintext), chunk_size)
    chunks = len(plaintext) // chunk_size + 1  # the final chunk is short, possibly empty
    batches = -(-chunks // per_batch)
    end = header.ciphertext_size(len(plaintext))  # never read past the length the layout came from
    read_at = _positional_reader(source)
    failures = _FirstFailure()

    def work(first_batch: int, stride: int) -> None:
        sealed = memoryview(bytearray(per_batch * sealed_size))
        for batch in range(first_batch, batches, stride):
            if failures.found_before(batch):
                return
            first, at_end = batch * per_batch, batch == batches - 1
            offset = header.size + first * sealed_size
            try:
                wanted = min(len(sealed), end - offset)
                if read_at(sealed[:wanted], offset) < wanted:  # the file shrank since its length was taken
                    raise CorruptedDataError(f"{name}: truncated while it was read", chunk=first)
                _open_batch(data_cipher, header, sealed[:wanted], plaintext[first * chunk_size :], first, at_end, name)
            except BaseException as exc:  # the caller's thread raises the first one
                failures.record(batch, exc)
                return

    stride = max(1, min(batches, workers or _usable_cpus(), MAX_WORKERS))
    helpers = [
        threading.Thread(target=work, args=(first, stride), name="edge-deploy-crypto-worker", daemon=True)
        for first in range(1, stride)
    ]
    for helper in helpers:
        helper.start()
    try:
        work(0, stride)  # the caller's thread is a worker too
    finally:
        for helper in helpers:
            helper.join()
    failures.raise_first()
    return chunks


def decrypt_to_bytes(src: BinaryIO, keyring: Keyring, *, name: str = "<stream>") -> bytes:
    """The whole plaintext of a stream of unknown length in memory (files: `files.decrypt_file_to_memory`)."""
    opened = io.BytesIO()
    decrypt_stream(src, opened, keyring, name=name)
    log.debug("decrypted %s in memory", name)
    return opened.getvalue()


def write_all(write: Callable[[memoryview], int | None], view: memoryview) -> None:
    """Write all of `view`: a raw file's write may take only part of it."""
    while view:
        written = write(view)
        if written is None:  # a sink that does not count takes everything
            return
        view = view[written:]


def _seal_batch(
    data_cipher: AESGCM,
    header: Header,
    plain: memoryview,
    sealed: memoryview,
    index: int,
    at_end: bool,
    name: str,
) -> tuple[int, int]:
    """Seal the whole chunks of `plain` (and, at the end, the short final one) into `sealed`.
    Returns (ciphertext bytes, next chunk index)."""
    chunk_size, sealed_size, aad = header.chunk_size, header.chunk_size + TAG_SIZE, header.body_header
    full, rest = divmod(len(plain), chunk_size)
    lengths = [chunk_size] * full + ([rest] if at_end else [])
    for position, length in enumerate(lengths):
        if index >= MAX_CHUNKS:
            raise CryptoError(f"{name}: too large for {chunk_size}-byte chunks (more than 2^32 chunks)")
        final = at_end and position == len(lengths) - 1
        source = plain[position * chunk_size : position * chunk_size + length]
        target = sealed[position * sealed_size : position * sealed_size + length + TAG_SIZE]
        data_cipher.encrypt_into(chunk_nonce(header.nonce_prefix, index, final), source, aad, target)
        index += 1
    return len(plain) + len(lengths) * TAG_SIZE, index


def _open_batch(
    data_cipher: AESGCM,
    header: Header,
    sealed: memoryview,
    plain: memoryview,
    index: int,
    at_end: bool,
    name: str,
) -> tuple[int, int]:
    """Open the chunks of `sealed` into `plain`: whole chunks are never final; at the end of the
    stream the rest must be the final chunk. Returns (plaintext bytes, next chunk index)."""
    chunk_size, sealed_size = header.chunk_size, header.chunk_size + TAG_SIZE
    full, rest = divmod(len(sealed), sealed_size)
    for position in range(full):
        start = position * sealed_size
        _open_chunk(
            data_cipher, header, sealed[start : start + sealed_size], plain[position * chunk_size :], index, False, name
        )
        index += 1
    if not at_end:
        return full * chunk_size, index
    if rest < TAG_SIZE:
        raise truncation_error(name, index, rest)
    _open_chunk(data_cipher, header, sealed[full * sealed_size :], plain[full * chunk_size :], index, True, name)
    return full * chunk_size + rest - TAG_SIZE, index + 1


def _open_chunk(
    data_cipher: AESGCM, header: Header, sealed: memoryview, plain: memoryview, index: int, final: bool, name: str
) -> None:
    if index >= MAX_CHUNKS:
        raise CorruptedDataError(f"{name}: more than 2^32 chunks (corrupted)", chunk=index)
    try:
        data_cipher.decrypt_into(
            chunk_nonce(header.nonce_prefix, index, final),
            sealed,
            header.body_header,
            plain[: len(sealed) - TAG_SIZE],
        )
    except InvalidTag:
        raise _chunk_failed(name, index, final) from None


def _chunk_failed(name: str, index: int, final: bool) -> CorruptedDataError:
    where = "the last chunk present" if final else "a full chunk"
    return CorruptedDataError(
        f"{name}: chunk {index} ({where}) failed authentication: "
        "the file is corrupted, truncated, extended or was tampered with",
        chunk=index,
    )


def _remaining_bytes(stream: BinaryIO) -> int | None:
    """How much a regular file has left to read, or None for a pipe, a socket or an in-memory stream."""
    try:
        status = os.fstat(stream.fileno())
        return max(0, status.st_size - stream.tell()) if stat.S_ISREG(status.st_mode) else None
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _chunks_per_batch(chunk_size: int, remaining: int | None, unit: int) -> int:
    """Whole chunks per batch: BATCH_BYTES worth, fewer when the input is known to be smaller
    (`unit` is the size of one chunk as it is read)."""
    per_batch = max(1, BATCH_BYTES // chunk_size)
    return per_batch if remaining is None else max(1, min(per_batch, remaining // unit + 1))


@dataclass
class _Batch:
    source: memoryview  # what is read
    target: memoryview  # what is written


class _InOrder:
    """Runs `work` on each submitted item in a helper thread, in order, while the caller goes on.

    An error of `work` is raised to the caller at its next `submit`, `check` or when the block
    ends; after an error, or when the caller's block fails, the items still queued are skipped
    (`release` still runs for each, so buffers go back where they came from).
    """

    _END = object()

    def __init__(self, work: Callable[[Any], object], release: Callable[[Any], object] | None = None) -> None:
        self._work, self._release = work, release
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="edge-deploy-crypto-worker", daemon=True)
        self._thread.start()

    def __enter__(self) -> _InOrder:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._stopped = exc_type is not None
        self._queue.put(self._END)
        self._thread.join()
        if exc_type is None:
            self.check()

    def submit(self, item: Any) -> None:
        self.check()
        self._queue.put(item)

    def check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stopped = True
            raise error

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._END:
            if self._error is None and not self._stopped:
                try:
                    self._work(item)
                except BaseException as exc:  # handed to the caller's thread, which raises it
                    self._error = exc
            if self._release is not None:
                self._release(item)


class _WriteBehind:
    """Writes each submitted batch in a thread while the caller reads and processes the next one.

    Two batches cycle between the caller and the writer, so memory stays at two batches. An error
    of the writer is raised to the caller at its next `take` or when the block ends; when the
    caller fails, the writer stops without writing what is still queued. An input known to fit in
    one batch has nothing to overlap: its batch is written in the caller's thread.
    """

    def __init__(
        self,
        write: Callable[[memoryview], int | None],
        source_size: int,
        target_size: int,
        remaining: int | None,
        *,
        on_source: Observer | None = None,
        on_target: Observer | None = None,
    ) -> None:
        self._write, self._on_source, self._on_target = write, on_source, on_target
        overlap = remaining is None or remaining >= source_size
        self._free: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        for _ in range(2 if overlap else 1):
            self._free.put(_Batch(memoryview(bytearray(source_size)), memoryview(bytearray(target_size))))
        self._writer = (
            _InOrder(lambda item: self._emit(*item), lambda item: self._free.put(item[0])) if overlap else None
        )

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        writer, self._writer = self._writer, None  # its callbacks refer to self: no cycle left for the GC
        if writer is not None:
            writer.__exit__(exc_type, exc, traceback)

    def take(self) -> _Batch:
        batch = self._free.get()
        if self._writer is not None:
            self._writer.check()
        return batch

    def submit(self, batch: _Batch, source_length: int, target_length: int) -> None:
        if self._writer is not None:
            self._writer.submit((batch, source_length, target_length))
        else:
            self._emit(batch, source_length, target_length)
            self._free.put(batch)

    def _emit(self, batch: _Batch, source_length: int, target_length: int) -> None:
        if self._on_source is not None:
            self._on_source(batch.source[:source_length])
        target = batch.target[:target_length]
        if self._on_target is not None:
            self._on_target(target)
        write_all(self._write, target)


class _FirstFailure:
    """The error of the lowest-numbered batch that failed, shared by the workers: a worker stops at
    a batch past a failure, but batches before it still run, so the error raised is the first one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch: int | None = None
        self._error: BaseException | None = None

    def record(self, batch: int, error: BaseException) -> None:
        import traceback  # imported where used: only a failed batch needs it, and the runtime starts faster

        # the failed frames held views of the caller's buffer: an mmap with views left cannot close
        traceback.clear_frames(error.__traceback__)
        with self._lock:
            if self._batch is None or batch < self._batch:
                self._batch, self._error = batch, error

    def found_before(self, batch: int) -> bool:
        return self._batch is not None and self._batch < batch

    def raise_first(self) -> None:
        if self._error is not None:
            raise self._error


def _positional_reader(source: BinaryIO) -> Callable[[memoryview, int], int]:
    """`read_at(view, offset)`: fill `view` from `offset` of the file; less than full only at its end.
    Threads may read at once: `os.preadv` has no shared file position (elsewhere, a lock does)."""
    descriptor = source.fileno()
    if hasattr(os, "preadv"):
        read_once = lambda view, offset: os.preadv(descriptor, [view], offset)  # noqa: E731
    else:
        lock = threading.Lock()

        def read_once(view: memoryview, offset: int) -> int:
            with lock:
                source.seek(offset)
                return source.readinto(view) or 0

    def read_at(view: memoryview, offset: int) -> int:
        filled = 0
        while filled < len(view) and (count := read_once(view[filled:], offset + filled)):
            filled += count
        return filled

    return read_at


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's cpuset counts, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
