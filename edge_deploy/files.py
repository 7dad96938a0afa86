"""File helpers and names shared across the library. Standard library only: the edge runtime imports it.

- `ONNX_FILE_NAME`: what MMDeploy's export writes and every later stage reads.
- `sha256_file`: the content identity of a file (caches, image tags, records).
- `atomic_directory`: fill a directory beside its final place and rename it there only when the
  whole block succeeded, so that a crash or an error never leaves a half-written directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from edge_deploy.errors import EdgeDeployError

ONNX_FILE_NAME = "end2end.onnx"
READ_CHUNK = 8 * 2**20


class DirectoryExistsError(EdgeDeployError, FileExistsError):
    """The final directory already holds files (and replacing it was not asked for)."""


def sha256_file(path: Path | str, chunk: int = READ_CHUNK) -> str:
    """The hex sha256 of a file's bytes, read in large chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_directory(final: Path | str, *, replace: bool = False, mode: int | None = None) -> Iterator[Path]:
    """Yield an empty staging directory beside `final` that becomes `final` if the block succeeds.

    `final` may be missing or an empty directory. One that holds files is refused with
    `DirectoryExistsError` (also when another process fills it while the block runs) unless
    `replace` is true. The directory gets `mode`, or what `mkdir` would give it when None. On any
    failure the staging directory is removed and `final` is left as it was.
    """
    # imported here: the edge runtime imports this module on its way to ready, and never this function
    import shutil
    import tempfile

    final = Path(final)
    if final.exists() and not replace and not _is_empty_dir(final):
        raise DirectoryExistsError(f"{final} exists and is not empty; choose a new directory (or replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
        staging.chmod(mode if mode is not None else 0o777 & ~_current_umask())  # mkdtemp makes it 0700
        if replace and final.exists() and not _is_empty_dir(final):
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        try:
            os.replace(staging, final)  # replaces a missing or empty directory, never a filled one
        except OSError as exc:
            if final.is_dir() and not _is_empty_dir(final):
                raise DirectoryExistsError(f"{final} was filled by someone else meanwhile") from exc
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
