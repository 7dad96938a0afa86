"""The format on files: every output is written to a temp file beside its target, fsynced and
renamed into place only when complete, so an error never leaves a partial (or unauthenticated)
file behind. Files are read and written unbuffered: `stream` moves whole batches of chunks, and a
buffer in between would only copy them once more."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import mmap
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from edge_deploy.crypto.errors import CryptoError
from edge_deploy.crypto.format import DEFAULT_CHUNK_SIZE, MAGIC, Header, parse_header
from edge_deploy.crypto.keyring import Keyring
from edge_deploy.crypto.stream import (
    BATCH_BYTES,
    Observer,
    StreamResult,
    encrypt_stream,
    new_header,
    open_data_key,
    open_into,
    open_stream,
    seal_into,
    unwrap_data_key,
    wrap_data_key,
    write_all,
)

log = logging.getLogger(__name__)

PLAINTEXT_MODE = 0o600  # decrypted models are the secret this module exists to protect
WRITEBACK_BYTES = 64 * 1024 * 1024  # how much written data is handed to the disk at a time
# Mapped output windows start on this boundary: the kernel then maps the file's large page-cache
# folios whole, where a window starting anywhere else took a fault per 4 KiB page (5x the system
# time when sealing, whose batches do not start on page boundaries). A multiple of every mmap
# granularity.
WINDOW_ALIGNMENT = 2 * 1024 * 1024

Buffer = TypeVar("Buffer")  # a writable bytes-like object: bytearray, mmap, ...


@dataclass(frozen=True)
class SealedFile:
    """What `encrypt_file` wrote. The checksums are there when asked for (`checksums=True`)."""

    key_id: str
    chunk_size: int
    chunks: int
    plaintext_size: int
    ciphertext_size: int
    plaintext_sha256: str | None = None
    ciphertext_sha256: str | None = None


@dataclass(frozen=True)
class FileInfo:
    """What a header says, and the sizes the file's length implies (authenticated only on decryption)."""

    path: str
    version: int
    key_id: str
    chunk_size: int
    header_size: int
    chunks: int
    plaintext_size: int
    ciphertext_size: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RewrapResult:
    path: str
    old_key_id: str
    new_key_id: str


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the format's magic bytes (says nothing about its integrity)."""
    with open_source(Path(path)) as stream:
        return stream.read(len(MAGIC)) == MAGIC


def read_header(path: str | os.PathLike[str]) -> Header:
    with open_source(Path(path)) as stream:
        return parse_header(stream, str(path))


def inspect_file(path: str | os.PathLike[str]) -> FileInfo:
    path = Path(path)
    with open_source(path) as stream:
        header = parse_header(stream, str(path))
        size = os.fstat(stream.fileno()).st_size
    chunks, plaintext_size = header.layout(size, str(path))
    return FileInfo(
        str(path), header.version, header.key_id, header.chunk_size, header.size, chunks, plaintext_size, size
    )


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keyring: Keyring,
    key_id: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    checksums: bool = False,
) -> SealedFile:
    """Seal `src` into `dst` under KEK `key_id`; `dst` keeps `src`'s permission bits (ciphertext is
    safe to share). Chunks are sealed straight into the output file's pages. With `checksums`,
    the sha256 of both sides is taken on the way instead (a writer thread writes and hashes while
    the next batch is sealed), for records and image labels."""
    src, dst, name = Path(src), Path(dst), str(src)
    plain_hash, sealed_hash = (hashlib.sha256(), hashlib.sha256()) if checksums else (None, None)
    with open_source(src) as source, atomic_output(dst, mode=stat.S_IMODE(os.fstat(source.fileno()).st_mode)) as out:
        status = os.fstat(source.fileno())
        output = None
        if not checksums and stat.S_ISREG(status.st_mode):  # a pipe has no size to map the output by
            header, data_cipher = new_header(keyring, key_id, chunk_size, name)
            output = _MappedOutput.open(out.fileno(), header.ciphertext_size(status.st_size))
        if output is None:
            result = encrypt_stream(
                source,
                out,
                keyring,
                key_id,
                chunk_size=chunk_size,
                name=name,
                on_plaintext=plain_hash.update if plain_hash else None,
                on_ciphertext=sealed_hash.update if sealed_hash else None,
            )
            chunks, plaintext_size, ciphertext_size = result.chunks, result.plaintext_size, result.ciphertext_size
        else:
            with output:
                output(0, header.size)[:] = header.encode()
                chunks, plaintext_size = seal_into(source, header, data_cipher, status.st_size, output, name)
                ciphertext_size = header.ciphertext_size(plaintext_size)
                output.truncate(ciphertext_size)  # smaller than allocated if the source shrank meanwhile
    log.info("encrypted %s -> %s under key id %s (%d bytes)", src, dst, key_id, plaintext_size)
    return SealedFile(
        key_id=key_id,
        chunk_size=chunk_size,
        chunks=chunks,
        plaintext_size=plaintext_size,
        ciphertext_size=ciphertext_size,
        plaintext_sha256=plain_hash.hexdigest() if plain_hash else None,
        ciphertext_sha256=sealed_hash.hexdigest() if sealed_hash else None,
    )


def decrypt_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], keyring: Keyring) -> StreamResult:
    """Open `src` into `dst` (mode 0600), chunks straight into the output file's pages; on any
    error `dst` is left as it was."""
    src, dst, name = Path(src), Path(dst), str(src)
    with open_source(src) as source, atomic_output(dst, mode=PLAINTEXT_MODE) as out:
        header = parse_header(source, name)
        data_cipher = open_data_key(header, keyring, name)
        status = os.fstat(source.fileno())
        output = None
        if stat.S_ISREG(status.st_mode):  # a pipe has no length to size the output by
            _, plaintext_size = header.layout(status.st_size, name)
            output = _MappedOutput.open(out.fileno(), plaintext_size)
        if output is None:
            result = open_stream(source, out, header, data_cipher, name)
        else:
            with output:
                chunks = open_into(source, header, data_cipher, plaintext_size, output, name)
            result = StreamResult(
                header.key_id, header.chunk_size, chunks, plaintext_size, header.ciphertext_size(plaintext_size)
            )
    log.info("decrypted %s -> %s (key id %s)", src, dst, result.key_id)
    return result


def anonymous_memory(size: int) -> memoryview:
    """`size` bytes of fresh memory, mapped and faulted in by one call (MAP_POPULATE where there is
    one). A bytearray costs more: the kernel zeroes its pages, then Python zeroes them once more.
    The mapping is released when the last view of it goes."""
    if size == 0:
        return memoryview(bytearray())
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return memoryview(mmap.mmap(-1, size, flags=flags))


def decrypt_file_to_memory(
    src: str | os.PathLike[str],
    keyring: Keyring,
    *,
    allocate: Callable[[int], Buffer] = anonymous_memory,
    on_plaintext: Observer | None = None,
) -> Buffer:
    """The plaintext of `src` in memory only, in one buffer: `allocate(size)` makes it once at the
    plaintext's final size (known from the file's length) and every chunk is opened straight into
    its place. Peak memory is the plaintext plus one batch of ciphertext. The default buffer is a
    memoryview of anonymous memory (compares equal to the same bytes, hashes, slices); the edge
    runtime allocates one that ONNX Runtime can load without a copy. `on_plaintext` (a hash's
    `update`, say) sees the plaintext in order, in a helper thread, while decryption goes on."""
    path = Path(src)
    with open_source(path) as source:
        header = parse_header(source, str(path))
        _, plaintext_size = header.layout(os.fstat(source.fileno()).st_size, str(path))
        data_cipher = open_data_key(header, keyring, str(path))
        buffer = allocate(plaintext_size)
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        try:
            place = lambda offset, length: view[offset : offset + length]  # noqa: E731
            open_into(source, header, data_cipher, plaintext_size, place, str(path), on_plaintext)
        finally:
            view.release()  # so that an mmap buffer can be closed by its owner
    log.debug("decrypted %s in memory under key id %s", path, header.key_id)
    return buffer


def decrypt_file_to_bytes(src: str | os.PathLike[str], keyring: Keyring) -> bytes:
    """The plaintext of `src` as `bytes` (for callers that need exactly that type): needs twice the
    plaintext for a moment; `decrypt_file_to_memory` needs it once."""
    return bytes(decrypt_file_to_memory(src, keyring))


def rewrap_file(
    path: str | os.PathLike[str],
    keyring: Keyring,
    new_key_id: str,
    *,
    dst: str | os.PathLike[str] | None = None,
) -> RewrapResult:
    """Re-seal the file's data key under KEK `new_key_id`; the chunks are copied byte for byte.

    Both the file's current KEK and the new one must be loaded. The body is not decrypted, so a
    corrupted body stays corrupted (and is reported as such when the file is decrypted).
    """
    path = Path(path)
    target = Path(dst) if dst is not None else path
    new_kek = keyring.cipher(new_key_id, str(path))
    with open_source(path) as source:
        header = parse_header(source, str(path))
        data_key = unwrap_data_key(header, keyring, str(path))
        rekeyed = Header(header.version, header.chunk_size, new_key_id, header.nonce_prefix, b"", b"")
        new_header = wrap_data_key(rekeyed, new_kek, data_key)
        del data_key
        with atomic_output(target, mode=stat.S_IMODE(os.fstat(source.fileno()).st_mode)) as out:
            write_all(out.write, memoryview(new_header.encode()))
            block = memoryview(bytearray(BATCH_BYTES))
            while count := source.readinto(block):
                write_all(out.write, block[:count])
    log.info("rewrapped %s: key id %s -> %s", target, header.key_id, new_key_id)
    return RewrapResult(str(target), header.key_id, new_key_id)


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for unbuffered reading, with the kernel told it will be read sequentially."""
    try:
        stream = path.open("rb", buffering=0)
    except OSError as exc:
        raise CryptoError(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        if hasattr(os, "posix_fadvise"):  # a larger read-ahead window; a hint, so errors do not matter
            with contextlib.suppress(OSError):
                os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        yield stream


class _EarlyWriteback:
    """An unbuffered file that hands its written data to the disk every WRITEBACK_BYTES instead of
    all of it at the fsync: the disk writes while the next batches are sealed, the fsync finds
    little left, and dirty memory stays small. Linux starts the write-back of a range when told
    POSIX_FADV_DONTNEED (`sync_file_range` is not in the os module); elsewhere it is only a hint."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.written, self.handed_over = raw, 0, 0

    def write(self, data: memoryview) -> int:
        count = self.raw.write(data) or 0
        self.written += count
        if self.written - self.handed_over >= WRITEBACK_BYTES and hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(
                    self.fileno(), self.handed_over, self.written - self.handed_over, os.POSIX_FADV_DONTNEED
                )
            self.handed_over = self.written
        return count

    def fileno(self) -> int:
        return self.raw.fileno()


class _MappedOutput:
    """The output file, mapped one window at a time, so that chunks are sealed or opened straight
    into its pages (no buffer in between, no write copy). Calling it with (offset, length) unmaps
    the previous window and maps that one. The file's blocks are allocated first: a full disk is
    an error before any work, never a fault inside a mapping.

    Two things measured slower and are left out: mapping the next window in a helper thread (each
    unmap of a process with two running threads interrupts the other CPU to flush its TLB, three
    times the CPU on a VM), and handing windows to the disk early as `_EarlyWriteback` does for
    streams (each hand-over converts part of the allocated, unwritten extent).
    """

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None

    @classmethod
    def open(cls, descriptor: int, size: int) -> _MappedOutput | None:
        """The file allocated at `size` and ready to map, or None where its filesystem cannot map
        files (the caller then writes a stream)."""
        if size == 0:
            return cls(descriptor)  # nothing will be mapped
        os.posix_fallocate(descriptor, 0, size)
        try:
            mmap.mmap(descriptor, min(size, mmap.PAGESIZE), mmap.MAP_SHARED).close()
        except OSError as exc:
            if exc.errno not in (errno.ENODEV, errno.EINVAL, errno.EOPNOTSUPP, errno.EACCES):
                raise
            os.ftruncate(descriptor, 0)
            return None
        return cls(descriptor)

    def __enter__(self) -> _MappedOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._unmap()

    def __call__(self, offset: int, length: int) -> memoryview:
        self._unmap()
        if length == 0:
            return memoryview(bytearray())
        start = offset - offset % WINDOW_ALIGNMENT
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # all pages in one call: all are written
        self._map = mmap.mmap(self.descriptor, offset + length - start, flags, offset=start)
        self._view = memoryview(self._map)[offset - start :]
        return self._view

    def truncate(self, size: int) -> None:
        self._unmap()
        os.ftruncate(self.descriptor, size)

    def _unmap(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            # after a failure the traceback's frames still hold slices of the window; the mapping
            # then goes away with them
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None


@contextlib.contextmanager
def atomic_output(dst: Path, *, mode: int) -> Iterator[BinaryIO]:
    """An unbuffered temp file beside `dst` that becomes `dst` (fsynced, then renamed) only if the
    block succeeds."""
    try:
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    except OSError as exc:
        raise CryptoError(f"cannot write {dst}: {exc.strerror}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb", buffering=0) as out:
            yield _EarlyWriteback(out)  # type: ignore[misc]
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, dst)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise CryptoError(f"writing {dst} failed: {exc.strerror or exc}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(dst.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some filesystems cannot open a directory, which is fine."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
