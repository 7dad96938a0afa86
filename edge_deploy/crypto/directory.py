"""Model-directory level: what the pipeline's decrypt stage calls.

`decrypt_directory` turns a downloaded model directory (some files sealed, some plain) into a
plaintext directory: sealed files, recognised by their magic bytes, are decrypted and lose the
`.enc` suffix; plain files are copied. The new directory appears complete or not at all
(`edge_deploy.files.atomic_directory`). Sealing a single file is `files.encrypt_file`.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edge_deploy.crypto.errors import CryptoError
from edge_deploy.crypto.files import PLAINTEXT_MODE, is_encrypted, open_source
from edge_deploy.crypto.format import ENCRYPTED_SUFFIX
from edge_deploy.crypto.keyring import Keyring
from edge_deploy.crypto.stream import BATCH_BYTES, decrypt_stream
from edge_deploy.files import DirectoryExistsError, atomic_directory, sha256_file

log = logging.getLogger(__name__)

PLAINTEXT_DIRECTORY_MODE = 0o700


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


def decrypt_directory(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], keyring: Keyring
) -> list[DirectoryFile]:
    """Decrypt every sealed file of `src` (dropping a `.enc` suffix) and copy the others into `dst`.

    `dst` must not exist or be an empty directory, and must lie outside `src`. Decrypted files
    get mode 0600 and `dst` 0700 (they hold plaintext); copies keep their mode.
    """
    src, dst = Path(src), Path(dst)
    plan = _plan(src, dst)
    try:
        with atomic_directory(dst, mode=PLAINTEXT_DIRECTORY_MODE) as staging:
            results = [
                _materialize(src, staging, source_name, name, encrypted, keyring)
                for source_name, name, encrypted in plan
            ]
    except DirectoryExistsError:
        raise
    except OSError as exc:
        raise CryptoError(f"decrypting {src} into {dst} failed: {exc.strerror or exc}") from None
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
        if encrypted:
            key_id: str | None = decrypt_stream(source, out, keyring, name=str(source_path)).key_id
            mode = PLAINTEXT_MODE
        else:
            shutil.copyfileobj(source, out, BATCH_BYTES)
            key_id, mode = None, stat.S_IMODE(os.fstat(source.fileno()).st_mode)
        source_size = os.fstat(source.fileno()).st_size
    os.chmod(out_path, mode)
    return DirectoryFile(
        str(name), str(source_name), encrypted, key_id, source_size, out_path.stat().st_size, sha256_file(out_path)
    )
