"""`LakeFSClient`: lakeFS through its REST API (lakefs-sdk) and its S3 gateway (boto3), call by call.

`store.LakeFSStore` adds the two stages on top (download, publish), which are written against
this client in `download` and `publish`.

Every REST call goes through `_call`: 5xx, 429, resets and timeouts are retried with bounded
backoff; any other answer fails at once with the repository, ref and path in the message. The
store counts the requests it makes (`calls`), so a publish or a no-op rerun can be measured.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
import botocore.config
import lakefs_sdk
import urllib3
from boto3.s3.transfer import TransferConfig
from lakefs_sdk.exceptions import ApiException

from edge_deploy.config import LakeFSSettings
from edge_deploy.errors import NotFoundError, StorageError
from edge_deploy.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from edge_deploy.storage.failures import (
    CONNECTION_ERRORS,
    ConflictError,
    MergeConflictError,
    api_error,
    connection_error,
    status_error,
)
from edge_deploy.storage.progress import CountingReader, Progress

log = logging.getLogger(__name__)
T = TypeVar("T")

LIST_PAGE = 1000
OCTET_STREAM = "application/octet-stream"
# boto3's defaults (8 MiB parts) with fewer threads: two cores here, and memory stays near
# max_concurrency * part size however big the file is.
DEFAULT_TRANSFER = TransferConfig(
    multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4, max_io_queue=64
)


@dataclass(frozen=True)
class RemoteObject:
    """An object as lakeFS lists it; what lakeFS compares to tell whether it changed."""

    path: str  # full path in the repository
    size: int
    checksum: str
    content_type: str = OCTET_STREAM
    metadata: dict[str, str] = field(default_factory=dict)


class LakeFSClient:
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
        self.calls: Counter[str] = Counter()  # REST requests sent, by operation, retries included
        self._s3 = None

    # -- REST calls ----------------------------------------------------------------------------------------------

    def _attempt(self, operation: str, what: str, fn: Callable[[], T]) -> T:
        self.calls[operation] += 1
        try:
            return fn()
        except ApiException as exc:
            raise api_error(what, exc) from None
        except CONNECTION_ERRORS as exc:
            raise connection_error(what, self.settings.endpoint, exc) from None

    def _call(self, operation: str, what: str, fn: Callable[[], T]) -> T:
        """One API call: 5xx and connection failures are retried, 4xx fail at once."""
        return call_with_retry(lambda: self._attempt(operation, what, fn), what, self.retry)

    def resolve_commit(self, repo: str, ref: str) -> str:
        """The immutable commit id a branch, tag or commit id points at right now."""
        commit = self._call(
            "get_commit",
            f"resolve ref {ref!r} in lakeFS repository {repo!r}",
            lambda: lakefs_sdk.CommitsApi(self.api).get_commit(repo, ref, _request_timeout=self.timeout),
        )
        return commit.id

    def _paged(self, operation: str, what: str, fetch: Callable[[str], Any]) -> Iterator[Any]:
        """Every result of a paginated listing; `fetch(after)` gets the page after that offset."""
        after = ""
        while True:
            page = self._call(operation, what, lambda after=after: fetch(after))
            yield from page.results
            if not page.pagination.has_more:
                return
            after = page.pagination.next_offset

    def list_objects(self, repo: str, ref: str, prefix: str) -> Iterator[RemoteObject]:
        """Every object under `prefix` at `ref`, page by page."""
        objects = lakefs_sdk.ObjectsApi(self.api)
        items = self._paged(
            "list_objects",
            f"list lakefs://{repo}/{ref}/{prefix}",
            lambda after: objects.list_objects(
                repo, ref, prefix=prefix, after=after, amount=LIST_PAGE, _request_timeout=self.timeout
            ),
        )
        for item in items:
            if item.path_type == "object":
                metadata = dict(item.metadata or {})
                content_type = item.content_type or OCTET_STREAM
                yield RemoteObject(item.path, int(item.size_bytes or 0), item.checksum or "", content_type, metadata)

    def log_commits(self, repo: str, ref: str) -> Iterator[tuple[str, dict[str, str]]]:
        """(commit id, metadata) of the commits reachable from `ref`, newest first, page by page."""
        refs = lakefs_sdk.RefsApi(self.api)
        commits = self._paged(
            "log_commits",
            f"log of lakefs://{repo}/{ref}",
            lambda after: refs.log_commits(repo, ref, after=after, amount=LIST_PAGE, _request_timeout=self.timeout),
        )
        for commit in commits:
            yield commit.id, dict(commit.metadata or {})

    def read_object(self, repo: str, ref: str, path: str, max_bytes: int = 64 << 20) -> bytes:
        """A small object's bytes (a report, a record); larger than `max_bytes` is refused."""
        objects = lakefs_sdk.ObjectsApi(self.api)
        where = f"lakefs://{repo}/{ref}/{path}"
        stat = self._call("stat_object", f"stat {where}", lambda: objects.stat_object(repo, ref, path))
        if int(stat.size_bytes or 0) > max_bytes:
            raise StorageError(f"{where} is {stat.size_bytes} bytes, more than the {max_bytes} read here")
        return bytes(self._call("get_object", f"read {where}", lambda: objects.get_object(repo, ref, path)))

    def branch_head(self, repo: str, branch: str) -> str | None:
        """The branch's head commit id, or None when the branch does not exist."""
        try:
            ref = self._call(
                "get_branch",
                f"read branch {branch!r} of lakeFS repository {repo!r}",
                lambda: lakefs_sdk.BranchesApi(self.api).get_branch(repo, branch, _request_timeout=self.timeout),
            )
        except NotFoundError:
            # lakeFS answers 404 for a missing repository too; that one must not read as "no branch"
            self._call(
                "get_repository",
                f"read lakeFS repository {repo!r}",
                lambda: lakefs_sdk.RepositoriesApi(self.api).get_repository(repo, _request_timeout=self.timeout),
            )
            return None
        return ref.commit_id

    def create_branch(self, repo: str, name: str, source: str) -> str:
        """Create branch `name` at the commit `source` resolves to; returns that commit id."""
        return self._call(
            "create_branch",
            f"create branch {name!r} from {source!r} in lakeFS repository {repo!r}",
            lambda: lakefs_sdk.BranchesApi(self.api).create_branch(
                repo, lakefs_sdk.BranchCreation(name=name, source=source), _request_timeout=self.timeout
            ),
        )

    def delete_branch(self, repo: str, name: str) -> bool:
        """Delete a branch; False when it was already gone."""
        try:
            self._call(
                "delete_branch",
                f"delete branch {name!r} of lakeFS repository {repo!r}",
                lambda: lakefs_sdk.BranchesApi(self.api).delete_branch(repo, name, _request_timeout=self.timeout),
            )
        except NotFoundError:
            return False
        return True

    def list_branches(self, repo: str, prefix: str) -> Iterator[tuple[str, str]]:
        """(name, head commit id) of every branch whose name starts with `prefix`."""
        branches = lakefs_sdk.BranchesApi(self.api)
        refs = self._paged(
            "list_branches",
            f"list branches {prefix}* of lakeFS repository {repo!r}",
            lambda after: branches.list_branches(
                repo, prefix=prefix, after=after, amount=LIST_PAGE, _request_timeout=self.timeout
            ),
        )
        return ((ref.id, ref.commit_id) for ref in refs)

    def commit_once(self, repo: str, branch: str, message: str, metadata: dict[str, str]) -> str:
        """One commit attempt, never repeated here: a repeat after a lost answer would fail as "no changes"."""
        commit = self._attempt(
            "commit",
            f"commit to lakefs://{repo}/{branch}",
            lambda: lakefs_sdk.CommitsApi(self.api).commit(
                repo,
                branch,
                lakefs_sdk.CommitCreation(message=message, metadata=metadata),
                _request_timeout=self.timeout,
            ),
        )
        return commit.id

    def has_uncommitted(self, repo: str, branch: str) -> bool:
        page = self._call(
            "diff_branch",
            f"list uncommitted changes of lakefs://{repo}/{branch}",
            lambda: lakefs_sdk.BranchesApi(self.api).diff_branch(repo, branch, amount=1, _request_timeout=self.timeout),
        )
        return bool(page.results)

    def diff(
        self, repo: str, left: str, right: str, prefix: str = "", three_dot: bool = False
    ) -> list[tuple[str, str]]:
        """(path, type) of every change from `left` to `right` (three_dot: what merging right into left brings)."""
        refs = lakefs_sdk.RefsApi(self.api)
        kind = "three_dot" if three_dot else "two_dot"
        changes = self._paged(
            "diff_refs",
            f"diff lakefs://{repo}/{left}..{right}/{prefix}",
            lambda after: refs.diff_refs(
                repo,
                left,
                right,
                prefix=prefix,
                after=after,
                amount=LIST_PAGE,
                type=kind,
                _request_timeout=self.timeout,
            ),
        )
        return [(item.path, item.type) for item in changes]

    def squash_merge_once(self, repo: str, source_ref: str, branch: str, message: str, metadata: dict[str, str]) -> str:
        """Merge `source_ref` into `branch` as one commit whose only parent is the branch's head.

        One attempt, never repeated here: a merge repeated after a lost answer would add a second,
        empty merge commit. A conflict raises `MergeConflictError`.
        """
        what = f"merge {source_ref[:12]} into lakefs://{repo}/{branch}"
        merge = lakefs_sdk.Merge(message=message, metadata=metadata, squash_merge=True)
        refs = lakefs_sdk.RefsApi(self.api)
        try:
            result = self._attempt(
                "merge",
                what,
                lambda: refs.merge_into_branch(repo, source_ref, branch, merge, _request_timeout=self.timeout),
            )
        except ConflictError:  # lakeFS's 409 body is an empty MergeResult: the paths are found by a diff
            raise MergeConflictError(f"{what}: lakeFS answered 409: conflict found") from None
        return result.reference

    def delete_object(self, repo: str, branch: str, path: str) -> None:
        self._call(
            "delete_object",
            f"delete lakefs://{repo}/{branch}/{path}",
            lambda: lakefs_sdk.ObjectsApi(self.api).delete_object(repo, branch, path, _request_timeout=self.timeout),
        )

    def put_object(self, repo: str, branch: str, path: str, local: Path, progress: Progress) -> None:
        """Stream one file to lakeFS as an octet-stream body (lakefs-sdk would read it all into memory)."""
        url = f"{self.settings.api_url}/repositories/{quote(repo)}/branches/{quote(branch)}/objects"
        credentials = f"{self.settings.access_key_id}:{self.settings.secret_access_key.reveal()}"
        headers = urllib3.make_headers(basic_auth=credentials)
        headers.update({"Content-Type": OCTET_STREAM, "Content-Length": str(local.stat().st_size)})
        what = f"upload {local.name} to lakefs://{repo}/{branch}/{path}"

        def send() -> None:
            with open(local, "rb") as body:
                response = self.api.rest_client.pool_manager.urlopen(
                    "POST",
                    f"{url}?path={quote(path, safe='')}",
                    body=CountingReader(body, progress),
                    headers=headers,
                    timeout=urllib3.Timeout(connect=10, read=self.timeout),
                    retries=False,
                )
            if response.status >= 300:
                raise status_error(what, response.status, response.data.decode(errors="replace"))

        call_with_retry(lambda: self._attempt("upload_object", what, send), what, self.retry)

    # -- S3 gateway ----------------------------------------------------------------------------------------------

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
