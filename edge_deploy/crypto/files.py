"""The format on files: every output is written to a temp file beside its target and renamed into
place only when complete, so an error never leaves a partial (or unauthenticated) file behind."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from edge_deploy.crypto.errors import CryptoError
from edge_deploy.crypto.format import DEFAULT_CHUNK_SIZE, MAGIC, Header, parse_header
from edge_deploy.crypto.keyring import Keyring
from edge_deploy.crypto.stream import (
    StreamResult,
    decrypt_stream,
    decrypt_to_bytes,
    encrypt_stream,
    unwrap_data_key,
    wrap_data_key,
)

log = logging.getLogger(__name__)

PLAINTEXT_MODE = 0o600  # decrypted models are the secret this module exists to protect
_COPY_BLOCK = 1024 * 1024


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
) -> StreamResult:
    """Seal `src` into `dst` (which keeps `src`'s permission bits: ciphertext is safe to share)."""
    src, dst = Path(src), Path(dst)
    with open_source(src) as source, atomic_output(dst, mode=stat.S_IMODE(os.fstat(source.fileno()).st_mode)) as out:
        result = encrypt_stream(source, out, keyring, key_id, chunk_size=chunk_size, name=str(src))
    log.info("encrypted %s -> %s under key id %s", src, dst, key_id)
    return result


def decrypt_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], keyring: Keyring) -> StreamResult:
    """Open `src` into `dst` (mode 0600); on any error `dst` is left as it was."""
    src, dst = Path(src), Path(dst)
    with open_source(src) as source, atomic_output(dst, mode=PLAINTEXT_MODE) as out:
        result = decrypt_stream(source, out, keyring, name=str(src))
    log.info("decrypted %s -> %s (key id %s)", src, dst, result.key_id)
    return result


def decrypt_file_to_bytes(src: str | os.PathLike[str], keyring: Keyring) -> bytes:
    """The plaintext of `src` in memory only, for the edge runtime."""
    with open_source(Path(src)) as source:
        return decrypt_to_bytes(source, keyring, name=str(src))


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
            out.write(new_header.encode())
            while block := source.read(_COPY_BLOCK):
                out.write(block)
    log.info("rewrapped %s: key id %s -> %s", target, header.key_id, new_key_id)
    return RewrapResult(str(target), header.key_id, new_key_id)


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[BinaryIO]:
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise CryptoError(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        yield stream


@contextlib.contextmanager
def atomic_output(dst: Path, *, mode: int) -> Iterator[BinaryIO]:
    """A temp file beside `dst` that becomes `dst` (fsynced, then renamed) only if the block succeeds."""
    try:
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    except OSError as exc:
        raise CryptoError(f"cannot write {dst}: {exc.strerror}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            yield out
            out.flush()
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
