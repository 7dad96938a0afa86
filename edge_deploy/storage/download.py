"""Download a model directory from lakeFS at a pinned commit, verified, appearing atomically.

The ref is resolved to its commit id first and everything is read at that commit, so a concurrent
commit to the branch cannot mix two versions. Object data comes through lakeFS's S3 gateway
(bucket = repository, key = `{commit_id}/{path}`) with boto3's transfer manager: parallel ranged
parts for large files, streamed to disk, memory bounded by the transfer configuration. The sizes
come from lakeFS's listing, so no HEAD request is made per file, and the first gateway answer is
one with a body (a refused signature is then reported by name). Every file is checked against the
listing (size, and MD5 where the checksum is a plain MD5) and its sha256 is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from boto3.s3.transfer import create_transfer_manager
from s3transfer.subscribers import BaseSubscriber

from edge_deploy.errors import StorageError
from edge_deploy.files import atomic_directory
from edge_deploy.storage.failures import s3_error
from edge_deploy.storage.paths import LakeFSLocation, safe_relative_path
from edge_deploy.storage.progress import Progress
from edge_deploy.storage.results import FileEntry, Provenance, file_digests

if TYPE_CHECKING:
    from edge_deploy.storage.client import LakeFSClient, RemoteObject


def download(store: LakeFSClient, location: LakeFSLocation, dest: Path, show: Callable[[str], None]) -> Provenance:
    """Download `location` into `dest` (which must not exist or be empty) at a pinned commit."""
    if dest.exists() and any(dest.iterdir()):
        raise StorageError(f"download target {dest} is not empty; give a new directory")
    commit_id = store.resolve_commit(location.repo, location.ref)
    remote = list(store.list_objects(location.repo, commit_id, location.prefix))
    if not remote:
        raise StorageError(f"{location.uri} (commit {commit_id[:12]}) holds no objects: check repo, ref and prefix")
    targets = [(obj, safe_relative_path(obj.path, location.prefix)) for obj in remote]
    show(
        f"downloading {location.uri} at commit {commit_id[:12]}: {len(remote)} files, "
        f"{sum(o.size for o in remote) / 2**20:.1f} MiB"
    )
    with atomic_directory(dest) as staging:
        _fetch_all(store, location.repo, commit_id, targets, staging, show)
        files = [_verify(obj, staging / relative, relative, location) for obj, relative in targets]
    return Provenance(location.repo, location.ref, commit_id, location.prefix, files)


def _fetch_all(store: LakeFSClient, repo: str, commit_id: str, targets, staging: Path, show) -> None:
    progress = Progress(sum(obj.size for obj, _ in targets), f"download {repo}@{commit_id[:12]}", show)
    with create_transfer_manager(store.s3, store.transfer) as manager:
        futures = []
        for obj, relative in targets:
            local = staging / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            subscriber = _KnownSizeProgress(obj.size, progress)
            futures.append(
                (obj, manager.download(repo, f"{commit_id}/{obj.path}", str(local), subscribers=[subscriber]))
            )
        for obj, future in futures:
            try:
                future.result()
            except Exception as exc:
                for _, other in futures:
                    other.cancel()
                raise s3_error(f"download lakefs://{repo}/{commit_id}/{obj.path}", exc) from None


def _verify(obj: RemoteObject, local: Path, relative: PurePosixPath, location: LakeFSLocation) -> FileEntry:
    where = f"lakefs://{location.repo}/{location.ref}/{obj.path}"
    size = local.stat().st_size
    if size != obj.size:
        raise StorageError(f"{where}: downloaded {size} bytes but lakeFS lists {obj.size}: the transfer was cut")
    sha256, md5 = file_digests(local)
    if is_plain_md5(obj.checksum) and md5 != obj.checksum.lower():
        raise StorageError(f"{where}: MD5 {md5} does not match lakeFS's checksum {obj.checksum}: data corrupted")
    return FileEntry(str(relative), size, sha256)


def is_plain_md5(checksum: str) -> bool:
    # lakeFS reports a hex MD5 for what its API stored, the backing store's ETag for gateway
    # multipart uploads ("md5-N", not comparable without the part size).
    return len(checksum) == 32 and all(c in "0123456789abcdef" for c in checksum.lower())


class _KnownSizeProgress(BaseSubscriber):
    """Tells the transfer the size lakeFS listed (so it sends no HEAD) and forwards byte counts."""

    def __init__(self, size: int, progress: Progress) -> None:
        self.size, self.progress = size, progress

    def on_queued(self, future, **kwargs) -> None:
        future.meta.provide_transfer_size(self.size)

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        self.progress(bytes_transferred)
