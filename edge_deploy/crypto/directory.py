"""Model-directory level: what the pipeline's decrypt and seal stages call.

`decrypt_directory` turns a downloaded model directory (some files sealed, some plain) into a
plaintext directory: sealed files, recognised by their magic bytes, are decrypted and lose the
`.enc` suffix; plain files are copied. The new directory appears complete or not at all.
`seal_file` encrypts one file (the ONNX model for the edge) and reports both checksums.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from edge_deploy.crypto.errors import CryptoError
from edge_deploy.crypto.files import atomic_output, is_encrypted, open_source
from edge_deploy.crypto.format import DEFAULT_CHUNK_SIZE, ENCRYPTED_SUFFIX
from edge_deploy.crypto.keyring import Keyring
from edge_deploy.crypto.stream import decrypt_stream, encrypt_stream

log = logging.getLogger(__name__)

_COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class DirectoryFile:
    """One file of a decrypted directory. Names are relative POSIX paths."""

    name: str  # in the output directory
    source_name: str  # in the source directory
    encrypted: bool
    key_id: str | None  # the KEK that sealed it, None for a plain file
    source_size: int
    size: int  # plaintext bytes written
    sha256: str  # of the plaintext written


@dataclass(frozen=True)
class SealedFile:
    key_id: str
    chunk_size: int
    plaintext_size: int
    ciphertext_size: int
    plaintext_sha256: str
    ciphertext_sha256: str


def seal_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keyring: Keyring,
    key_id: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SealedFile:
    """Encrypt `src` into `dst` under KEK `key_id`, hashing both sides on the way."""
    src, dst = Path(src), Path(dst)
    with open_source(src) as source, atomic_output(dst, mode=stat.S_IMODE(os.fstat(source.fileno()).st_mode)) as out:
        reader, writer = _HashingReader(source), _HashingWriter(out)
        result = encrypt_stream(reader, writer, keyring, key_id, chunk_size=chunk_size, name=str(src))
    log.info("sealed %s -> %s under key id %s (%d bytes)", src, dst, key_id, result.plaintext_size)
    return SealedFile(
        key_id=key_id,
        chunk_size=chunk_size,
        plaintext_size=result.plaintext_size,
        ciphertext_size=writer.size,
        plaintext_sha256=reader.hash.hexdigest(),
        ciphertext_sha256=writer.hash.hexdigest(),
    )


def decrypt_directory(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], keyring: Keyring
) -> list[DirectoryFile]:
    """Decrypt every sealed file of `src` (dropping a `.enc` suffix) and copy the others into `dst`.

    `dst` must not exist or be an empty directory, and must lie outside `src`. Decrypted files
    get mode 0600 and `dst` 0700 (they hold plaintext); copies keep their mode.
    """
    src, dst = Path(src), Path(dst)
    plan = _plan(src, dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        results = [
            _materialize(src, temp, source_name, name, encrypted, keyring) for source_name, name, encrypted in plan
        ]
        os.rename(temp, dst)  # replaces an empty directory, never a filled one
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise CryptoError(f"decrypting {src} into {dst} failed: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log.info("decrypted %d of %d files of %s into %s", sum(r.encrypted for r in results), len(results), src, dst)
    return results


def output_name(name: str) -> str:
    """The plaintext name of a sealed file: without its `.enc` suffix, if it has one."""
    return name[: -len(ENCRYPTED_SUFFIX)] if name.endswith(ENCRYPTED_SUFFIX) and name != ENCRYPTED_SUFFIX else name


def _plan(src: Path, dst: Path) -> list[tuple[PurePosixPath, PurePosixPath, bool]]:
    """(source name, output name, encrypted?) for every file, checked before anything is written."""
    if not src.is_dir():
        raise CryptoError(f"{src} is not a directory")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CryptoError(f"{dst} already exists and is not an empty directory; choose a new output directory")
    source_root, target = src.resolve(), dst.resolve()
    if target == source_root or source_root in target.parents:
        raise CryptoError(f"the output directory {dst} must lie outside the source directory {src}")
    plan: list[tuple[PurePosixPath, PurePosixPath, bool]] = []
    claimed: dict[PurePosixPath, PurePosixPath] = {}
    for path in _files(src):
        source_name = PurePosixPath(path.relative_to(src).as_posix())
        encrypted = is_encrypted(path)
        name = source_name.with_name(output_name(source_name.name)) if encrypted else source_name
        if name in claimed:
            raise CryptoError(f"{src}: both {claimed[name]} and {source_name} would become {name}; remove one")
        claimed[name] = source_name
        plan.append((source_name, name, encrypted))
    return plan


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for entry in [*subdirectories, *files]:
            path = Path(directory, entry)
            if path.is_symlink():
                raise CryptoError(f"{path} is a symbolic link; a model directory must hold regular files only")
            if entry in files and not path.is_file():
                raise CryptoError(f"{path} is not a regular file")
        found.extend(Path(directory, name) for name in sorted(files))
    return found


def _materialize(
    src: Path, out_root: Path, source_name: PurePosixPath, name: PurePosixPath, encrypted: bool, keyring: Keyring
) -> DirectoryFile:
    source_path, out_path = src / source_name, out_root / name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open_source(source_path) as source, out_path.open("xb") as out:
        source_mode = stat.S_IMODE(os.fstat(source.fileno()).st_mode)
        writer = _HashingWriter(out)
        if encrypted:
            result = decrypt_stream(source, writer, keyring, name=str(source_path))
            key_id: str | None = result.key_id
            os.chmod(out_path, 0o600)
        else:
            shutil.copyfileobj(source, writer, _COPY_BLOCK)
            key_id = None
            os.chmod(out_path, source_mode)
        source_size = os.fstat(source.fileno()).st_size
    return DirectoryFile(
        str(name), str(source_name), encrypted, key_id, source_size, writer.size, writer.hash.hexdigest()
    )


class _HashingReader:
    """Passes reads through, hashing what goes by."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.hash, self.size = stream, hashlib.sha256(), 0

    def readinto(self, buffer: memoryview) -> int:
        count = self.stream.readinto(buffer)
        self.hash.update(buffer[:count])
        self.size += count
        return count

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data


class _HashingWriter:
    """Passes writes through, hashing what goes by."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.hash, self.size = stream, hashlib.sha256(), 0

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.stream.write(data)
