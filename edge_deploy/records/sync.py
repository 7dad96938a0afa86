"""`sync`: re-import `record.json` files into the record store.

The publish stage writes each run's record as `record.json` beside the artifacts in lakeFS, so a
record that could not reach MongoDB is not lost: once MongoDB is back, `sync` reads the files and
upserts them. Upserts never replace a newer stored version, so syncing is safe to repeat.

A source is anything that can list record.json files and read them: a local directory, or lakeFS
at one commit (a branch is resolved to its commit first, so a concurrent publish cannot mix two
states of the branch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edge_deploy.errors import EdgeDeployError
from edge_deploy.records.model import DeploymentRecord, RecordFormatError
from edge_deploy.records.store import RecordStore

if TYPE_CHECKING:
    from edge_deploy.storage import LakeFSStore

RECORD_FILE_NAME = "record.json"


class SyncSourceError(EdgeDeployError):
    """The place to sync from does not exist or cannot be listed."""


@dataclass(frozen=True)
class RecordFile:
    location: str  # where the file is, for messages: a path or a lakefs:// URI
    read: Callable[[], bytes]


class RecordSource(Protocol):
    where: str

    def record_files(self) -> Iterator[RecordFile]: ...


@dataclass
class SyncReport:
    source: str
    imported: list[str] = field(default_factory=list)  # run ids written to the store
    already_current: list[str] = field(default_factory=list)  # the store held exactly this record
    newer_in_store: list[str] = field(default_factory=list)  # the store held a later state of the run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)

    @property
    def ok(self) -> bool:
        return not self.failed


class DirectorySource:
    """Every `record.json` under a local directory (for example a mirror of the published artifacts)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.where = str(self.root)

    def record_files(self) -> Iterator[RecordFile]:
        if not self.root.is_dir():
            raise SyncSourceError(f"cannot sync from {self.root}: not a directory")
        for path in sorted(self.root.rglob(RECORD_FILE_NAME)):
            if path.is_file():
                yield RecordFile(str(path), path.read_bytes)


class ListingSource:
    """Records in an object store, given a function that lists paths and one that reads a path."""

    def __init__(self, where: str, list_paths: Callable[[], Iterable[str]], read: Callable[[str], bytes]) -> None:
        self.where, self._list_paths, self._read = where, list_paths, read

    def record_files(self) -> Iterator[RecordFile]:
        for path in sorted(self._list_paths()):
            if path == RECORD_FILE_NAME or path.endswith("/" + RECORD_FILE_NAME):
                yield RecordFile(f"{self.where}{path}", lambda path=path: self._read(path))


def lakefs_source(
    store: LakeFSStore,
    repo: str,
    ref: str,
    prefix: str = "edge/",
    read_object: Callable[[str, str, str], bytes] | None = None,
) -> ListingSource:
    """Records under `lakefs://repo/ref/prefix`, read at the commit `ref` points to now.

    `read_object(repo, commit, path) -> bytes` reads one object; by default the lakeFS store's own
    `read_object` when it has one, else a GET through its S3 gateway (bucket = repo, key = commit/path).
    """
    commit = store.resolve_commit(repo, ref)
    reader = read_object or getattr(store, "read_object", None) or _s3_gateway_reader(store)
    return ListingSource(
        f"lakefs://{repo}/{commit}/",
        lambda: (item.path for item in store.list_objects(repo, commit, prefix)),
        lambda path: reader(repo, commit, path),
    )


def _s3_gateway_reader(store: LakeFSStore) -> Callable[[str, str, str], bytes]:
    from edge_deploy.errors import StorageError

    def read(repo: str, commit: str, path: str) -> bytes:
        try:
            return store.s3.get_object(Bucket=repo, Key=f"{commit}/{path}")["Body"].read()
        except Exception as exc:  # boto3 raises many types; the message names the object either way
            raise StorageError(f"cannot read lakefs://{repo}/{commit}/{path}: {exc}") from None

    return read


def sync_records(source: RecordSource, store: RecordStore) -> SyncReport:
    """Upsert every readable record in `source`; unreadable files are reported, not fatal.

    A store that is unreachable stops the sync with its own error: nothing can be imported then.
    """
    report = SyncReport(source.where)
    for file in source.record_files():
        try:
            record = DeploymentRecord.from_json(file.read(), file.location)
        except (RecordFormatError, OSError, EdgeDeployError) as exc:
            report.failed.append((file.location, str(exc)))
            continue
        if store.get(record.run_id) == record:
            report.already_current.append(record.run_id)
        elif store.upsert(record):
            report.imported.append(record.run_id)
        else:
            report.newer_in_store.append(record.run_id)
    return report
