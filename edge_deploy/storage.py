"""The lakeFS storage stage: download a model directory at a pinned commit, publish artifacts.

Reads: the ref is resolved to its commit id first and everything is read at that commit, so a
concurrent commit to the branch cannot mix two versions. Object data comes through lakeFS's S3
gateway (bucket = repository, key = `{commit_id}/{path}`) with boto3's transfer manager: parallel
ranged parts for large files, streamed to disk, memory bounded by the transfer configuration.
Every file is checked against lakeFS's stat (size, and MD5 where the checksum is a plain MD5) and
its sha256 is returned. The directory appears atomically: it is assembled in a temporary sibling
and renamed at the end.

Writes: files go through the lakeFS API as streamed octet-stream bodies, then one commit with
metadata. Content already on the branch (same paths, sizes and MD5 checksums) is not uploaded
again, and when nothing differs no commit is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import quote

import boto3
import botocore.config
import botocore.exceptions
import lakefs_sdk
import urllib3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from lakefs_sdk.exceptions import ApiException
from s3transfer.exceptions import RetriesExceededError
from s3transfer.subscribers import BaseSubscriber

from edge_deploy.config import LakeFSSettings
from edge_deploy.errors import NotFoundError, StorageError, TransientError
from edge_deploy.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)
T = TypeVar("T")

HASH_BLOCK = 1 << 20
LIST_PAGE = 1000
# boto3's defaults (8 MiB parts) with fewer threads: two cores here, and memory stays near
# max_concurrency * part size however big the file is.
DEFAULT_TRANSFER = TransferConfig(
    multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4, max_io_queue=64
)


@dataclass(frozen=True)
class LakeFSLocation:
    """`lakefs://{repo}/{ref}/{prefix}`: a directory in a lakeFS repository at a ref."""

    repo: str
    ref: str
    prefix: str = "model/"

    def __post_init__(self) -> None:
        if not self.repo or not self.ref:
            raise StorageError(f"a lakeFS location needs a repository and a ref, got {self.uri}")
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))

    @property
    def uri(self) -> str:
        return f"lakefs://{self.repo}/{self.ref}/{self.prefix}"

    @classmethod
    def parse(cls, uri: str, default_prefix: str = "model/") -> LakeFSLocation:
        if not uri.startswith("lakefs://"):
            raise StorageError(f"not a lakefs:// URI: {uri!r}")
        repo, _, rest = uri.removeprefix("lakefs://").partition("/")
        ref, _, prefix = rest.partition("/")
        return cls(repo=repo, ref=ref, prefix=prefix or default_prefix)


@dataclass(frozen=True)
class FileEntry:
    """One file of a model or artifact directory; `path` is relative to the directory."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Provenance:
    """Exactly what was downloaded: the commit the ref pointed at, and every file's digest."""

    repo: str
    ref: str
    commit_id: str
    prefix: str
    files: list[FileEntry] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def uri(self) -> str:
        return f"lakefs://{self.repo}/{self.commit_id}/{self.prefix}"


@dataclass(frozen=True)
class UploadResult:
    repo: str
    branch: str
    prefix: str
    commit_id: str
    committed: bool  # False when the branch already held exactly these files
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)


@dataclass(frozen=True)
class _RemoteObject:
    path: str  # full path in the repository
    size: int
    checksum: str


def normalize_prefix(prefix: str) -> str:
    """'model' -> 'model/', '' -> '' (the repository root); rejects '..' and absolute prefixes."""
    prefix = prefix.strip()
    if prefix in ("", "/"):
        return ""
    if prefix.startswith("/") or any(part in ("", ".", "..") for part in prefix.rstrip("/").split("/")):
        raise StorageError(f"invalid lakeFS prefix {prefix!r}: use a relative path like 'model/'")
    return prefix.rstrip("/") + "/"


def safe_relative_path(key: str, prefix: str) -> PurePosixPath:
    """The part of `key` below `prefix`, refused if it could land outside the target directory."""
    relative = key[len(prefix) :]
    parts = relative.split("/")
    if (
        not key.startswith(prefix)
        or not relative
        or relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise StorageError(f"refusing object key {key!r}: it would escape the target directory")
    return PurePosixPath(*parts)


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, read in blocks."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _is_plain_md5(checksum: str) -> bool:
    # lakeFS reports the backing store's ETag: a plain MD5 for single-part objects, "md5-N" for
    # multipart ones (not comparable without the part size), other hashes on other stores.
    return len(checksum) == 32 and all(c in "0123456789abcdef" for c in checksum.lower())


class Progress:
    """Thread-safe byte counter that logs every 10% (boto3 calls it from its worker threads)."""

    def __init__(self, total: int, label: str, report: Callable[[str], None] = log.info) -> None:
        self.total, self.label, self.report = total, label, report
        self.done = 0
        self._lock = threading.Lock()
        self._next_step = 10
        self._started = time.monotonic()

    def __call__(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            percent = 100 if self.total == 0 else self.done * 100 // self.total
            if percent < self._next_step:
                return
            self._next_step = (percent // 10 + 1) * 10
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self.report(
            f"{self.label}: {self.done / 2**20:.1f}/{self.total / 2**20:.1f} MiB ({percent}%, "
            f"{self.done / 2**20 / elapsed:.1f} MiB/s)"
        )


def describe_local_directory(root: Path) -> Provenance:
    """A local model directory described like a lakeFS download (the embedded default's source).

    Its "commit id" is the sha256 of its listing (paths and file digests), so the same content
    always gets the same id, as a lakeFS commit would.
    """
    root = Path(root)
    if not root.is_dir():
        raise StorageError(f"local model directory {root} does not exist or is not a directory")
    files = [
        FileEntry(path.relative_to(root).as_posix(), path.stat().st_size, file_digests(path)[0])
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]
    if not files:
        raise StorageError(f"local model directory {root} holds no files")
    listing = "\n".join(f"{f.path}\t{f.size}\t{f.sha256}" for f in files)
    return Provenance("local", str(root), hashlib.sha256(listing.encode()).hexdigest(), "", files)


class LakeFSStore:
    """lakeFS through its REST API (lakefs-sdk) and its S3 gateway (boto3)."""

    def __init__(
        self,
        settings: LakeFSSettings,
        retry: RetryPolicy = DEFAULT_POLICY,
        transfer: TransferConfig = DEFAULT_TRANSFER,
        timeout: float = 60.0,
    ) -> None:
        self.settings, self.retry, self.transfer, self.timeout = settings, retry, transfer, timeout
        configuration = lakefs_sdk.Configuration(
            host=settings.api_url,
            username=settings.access_key_id,
            password=settings.secret_access_key.reveal(),
        )
        configuration.retries = False  # retries are ours: bounded, and only for what they can cure
        self.api = lakefs_sdk.ApiClient(configuration)
        self._s3 = None

    # -- REST calls -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call: 5xx and connection failures are retried, 4xx fail at once."""

        def attempt() -> T:
            try:
                return fn()
            except ApiException as exc:
                raise _api_error(what, exc) from None
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
                raise TransientError(f"{what}: lakeFS at {self.settings.endpoint} unreachable: {exc}") from None

        return call_with_retry(attempt, what, self.retry)

    def resolve_commit(self, repo: str, ref: str) -> str:
        """The immutable commit id a branch, tag or commit id points at right now."""
        commit = self._call(
            f"resolve ref {ref!r} in lakeFS repository {repo!r}",
            lambda: lakefs_sdk.CommitsApi(self.api).get_commit(repo, ref, _request_timeout=self.timeout),
        )
        return commit.id

    def list_objects(self, repo: str, ref: str, prefix: str) -> Iterator[_RemoteObject]:
        """Every object under `prefix` at `ref`, page by page."""
        after = ""
        objects = lakefs_sdk.ObjectsApi(self.api)
        while True:
            page = self._call(
                f"list lakefs://{repo}/{ref}/{prefix}",
                lambda after=after: objects.list_objects(
                    repo, ref, prefix=prefix, after=after, amount=LIST_PAGE, _request_timeout=self.timeout
                ),
            )
            for item in page.results:
                if item.path_type == "object":
                    yield _RemoteObject(item.path, int(item.size_bytes or 0), item.checksum or "")
            if not page.pagination.has_more:
                return
            after = page.pagination.next_offset

    def branch_head(self, repo: str, branch: str) -> str | None:
        """The branch's head commit id, or None when the branch does not exist."""
        try:
            ref = self._call(
                f"read branch {branch!r} of lakeFS repository {repo!r}",
                lambda: lakefs_sdk.BranchesApi(self.api).get_branch(repo, branch, _request_timeout=self.timeout),
            )
        except NotFoundError:
            # lakeFS answers 404 for a missing repository too; that one must not read as "no branch"
            self._call(
                f"read lakeFS repository {repo!r}",
                lambda: lakefs_sdk.RepositoriesApi(self.api).get_repository(repo, _request_timeout=self.timeout),
            )
            return None
        return ref.commit_id

    # -- S3 gateway -----------------------------------------------------------------------------

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = boto3.session.Session().client(
                "s3",
                endpoint_url=self.settings.s3_endpoint,
                aws_access_key_id=self.settings.access_key_id,
                aws_secret_access_key=self.settings.secret_access_key.reveal(),
                region_name="us-east-1",
                config=botocore.config.Config(
                    # lakeFS's gateway does not take the newer default CRC checksums (lakeFS docs)
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    retries={"mode": "standard", "max_attempts": self.retry.attempts},
                    s3={"addressing_style": "path"},
                    max_pool_connections=max(10, self.transfer.max_request_concurrency),
                    connect_timeout=10,
                    read_timeout=self.timeout,
                ),
            )
        return self._s3

    # -- download -------------------------------------------------------------------------------

    def download(self, location: LakeFSLocation, dest: Path, show: Callable[[str], None] = log.info) -> Provenance:
        """Download `location` into `dest` (which must not exist or be empty) at a pinned commit."""
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise StorageError(f"download target {dest} is not empty; give a new directory")
        commit_id = self.resolve_commit(location.repo, location.ref)
        remote = list(self.list_objects(location.repo, commit_id, location.prefix))
        if not remote:
            raise StorageError(f"{location.uri} (commit {commit_id[:12]}) holds no objects: check repo, ref and prefix")
        targets = [(obj, safe_relative_path(obj.path, location.prefix)) for obj in remote]
        show(
            f"downloading {location.uri} at commit {commit_id[:12]}: {len(remote)} files, "
            f"{sum(o.size for o in remote) / 2**20:.1f} MiB"
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            self._fetch_all(location.repo, commit_id, targets, staging, show)
            files = [self._verify(obj, staging / relative, relative, location) for obj, relative in targets]
            if dest.exists():
                dest.rmdir()
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Provenance(location.repo, location.ref, commit_id, location.prefix, files)

    def _fetch_all(self, repo, commit_id, targets, staging: Path, show) -> None:
        progress = Progress(sum(obj.size for obj, _ in targets), f"download {repo}@{commit_id[:12]}", show)
        with create_transfer_manager(self.s3, self.transfer) as manager:
            futures = []
            for obj, relative in targets:
                local = staging / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                subscriber = _ProgressSubscriber(progress)
                futures.append(
                    (obj, manager.download(repo, f"{commit_id}/{obj.path}", str(local), subscribers=[subscriber]))
                )
            for obj, future in futures:
                try:
                    future.result()
                except Exception as exc:
                    for _, other in futures:
                        other.cancel()
                    raise _s3_error(f"download lakefs://{repo}/{commit_id}/{obj.path}", exc) from None

    def _verify(self, obj: _RemoteObject, local: Path, relative: PurePosixPath, location) -> FileEntry:
        where = f"lakefs://{location.repo}/{location.ref}/{obj.path}"
        size = local.stat().st_size
        if size != obj.size:
            raise StorageError(f"{where}: downloaded {size} bytes but lakeFS lists {obj.size}: the transfer was cut")
        sha256, md5 = file_digests(local)
        if _is_plain_md5(obj.checksum) and md5 != obj.checksum.lower():
            raise StorageError(f"{where}: MD5 {md5} does not match lakeFS's checksum {obj.checksum}: data corrupted")
        return FileEntry(str(relative), size, sha256)

    # -- upload ---------------------------------------------------------------------------------

    def upload(
        self,
        source: Path,
        repo: str,
        branch: str,
        prefix: str = "edge/",
        message: str = "",
        metadata: dict[str, str] | None = None,
        create_branch_from: str | None = None,
    ) -> UploadResult:
        """Make `{branch}/{prefix}` hold exactly the files of `source`, then commit once.

        Files whose path, size and MD5 already match the branch are not sent; objects under the
        prefix that `source` does not have are deleted (the prefix mirrors one run's artifacts).
        When nothing differs, no commit is made and the branch head is returned.
        """
        prefix = normalize_prefix(prefix)
        source = Path(source)
        local = self._local_files(source)
        if not local:
            raise StorageError(f"nothing to upload: {source} holds no files")
        self._ensure_branch(repo, branch, create_branch_from)
        remote = {obj.path: obj for obj in self.list_objects(repo, branch, prefix)}
        changed = [
            rel
            for rel, (size, _, md5) in local.items()
            if (obj := remote.get(prefix + rel)) is None or obj.size != size or obj.checksum.lower() != md5
        ]
        stale = sorted(path for path in remote if path[len(prefix) :] not in local)
        files = [FileEntry(rel, size, sha) for rel, (size, sha, _) in sorted(local.items())]
        if not changed and not stale:
            head = self.branch_head(repo, branch)
            log.info("lakefs://%s/%s/%s already holds these %d files: no commit", repo, branch, prefix, len(local))
            return UploadResult(repo, branch, prefix, head or "", False, [], [], files)
        progress = Progress(sum(local[rel][0] for rel in changed), f"upload to {repo}/{branch}/{prefix}")
        for rel in changed:
            self._put_object(repo, branch, prefix + rel, source / rel, progress)
        for path in stale:
            self._call(
                f"delete lakefs://{repo}/{branch}/{path}",
                lambda path=path: lakefs_sdk.ObjectsApi(self.api).delete_object(repo, branch, path),
            )
        commit = self._call(
            f"commit to lakefs://{repo}/{branch}",
            lambda: lakefs_sdk.CommitsApi(self.api).commit(
                repo,
                branch,
                lakefs_sdk.CommitCreation(message=message or f"edge-deploy: publish {prefix}", metadata=metadata or {}),
            ),
        )
        log.info("committed %d uploads, %d deletions to %s/%s: %s", len(changed), len(stale), repo, branch, commit.id)
        return UploadResult(repo, branch, prefix, commit.id, True, sorted(changed), stale, files)

    @staticmethod
    def _local_files(source: Path) -> dict[str, tuple[int, str, str]]:
        """{relative posix path: (size, sha256, md5)} of every regular file below `source`."""
        if not source.is_dir():
            raise StorageError(f"upload source {source} is not a directory")
        result = {}
        for path in sorted(source.rglob("*")):
            if path.is_file():
                sha256, md5 = file_digests(path)
                result[path.relative_to(source).as_posix()] = (path.stat().st_size, sha256, md5)
        return result

    def _ensure_branch(self, repo: str, branch: str, source_ref: str | None) -> None:
        if self.branch_head(repo, branch) is not None:
            return
        if source_ref is None:
            raise StorageError(f"branch {branch!r} does not exist in lakeFS repository {repo!r}; create it first")
        self._call(
            f"create branch {branch!r} from {source_ref!r} in lakeFS repository {repo!r}",
            lambda: lakefs_sdk.BranchesApi(self.api).create_branch(
                repo, lakefs_sdk.BranchCreation(name=branch, source=source_ref)
            ),
        )

    def _put_object(self, repo: str, branch: str, path: str, local: Path, progress: Progress) -> None:
        """Stream one file to lakeFS as an octet-stream body (lakefs-sdk would read it all into memory)."""
        url = f"{self.settings.api_url}/repositories/{quote(repo)}/branches/{quote(branch)}/objects"
        credentials = f"{self.settings.access_key_id}:{self.settings.secret_access_key.reveal()}"
        headers = urllib3.make_headers(basic_auth=credentials)
        headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(local.stat().st_size)})
        what = f"upload {local.name} to lakefs://{repo}/{branch}/{path}"

        def attempt() -> None:
            try:
                with open(local, "rb") as body:
                    response = self.api.rest_client.pool_manager.urlopen(
                        "POST",
                        f"{url}?path={quote(path, safe='')}",
                        body=_CountingReader(body, progress),
                        headers=headers,
                        timeout=urllib3.Timeout(connect=10, read=self.timeout),
                        retries=False,
                    )
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
                raise TransientError(f"{what}: lakeFS at {self.settings.endpoint} unreachable: {exc}") from None
            if response.status >= 300:
                raise _status_error(what, response.status, response.data.decode(errors="replace"))

        call_with_retry(attempt, what, self.retry)


class _CountingReader:
    """A file wrapper that reports bytes read, so uploads show progress."""

    def __init__(self, handle, progress: Progress) -> None:
        self.handle, self.progress = handle, progress

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.progress(len(data))
        return data


class _ProgressSubscriber(BaseSubscriber):
    """boto3 transfer subscriber forwarding byte counts to a shared `Progress`."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        self.progress(bytes_transferred)


def _status_error(what: str, status: int, body: str) -> Exception:
    message = _api_message(body)
    if status >= 500 or status == 429:
        return TransientError(f"{what}: lakeFS answered {status}: {message}")
    hints = {
        401: "check LAKEFS_ACCESS_KEY_ID and LAKEFS_SECRET_ACCESS_KEY",
        403: "the lakeFS user lacks permission for this repository or branch",
        404: "check the repository, ref and path",
    }
    hint = hints.get(status, "")
    error_type = NotFoundError if status == 404 else StorageError
    return error_type(f"{what}: lakeFS answered {status}: {message}" + (f" ({hint})" if hint else ""))


def _api_error(what: str, exc: ApiException) -> Exception:
    return _status_error(what, exc.status or 0, exc.body or exc.reason or "")


def _api_message(body: str) -> str:
    try:
        return str(json.loads(body).get("message", body))[:300]
    except (ValueError, AttributeError):
        return body[:300]


def _s3_error(what: str, exc: Exception) -> Exception:
    if isinstance(exc, RetriesExceededError):
        # s3transfer already re-fetched a body that kept arriving short or reset
        return TransientError(f"{what} (S3 gateway): the body kept arriving incomplete: {exc.last_exception}")
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        return _status_error(what + " (S3 gateway)", status, code or str(exc))
    if isinstance(exc, (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, OSError)):
        return TransientError(f"{what} (S3 gateway): {exc}")
    return StorageError(f"{what}: {exc}")
