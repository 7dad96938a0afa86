"""lakeFS's operations over the in-memory version graph and the S3 backing store.

A branch's staging area IS its prefix in the backing store: `{branch}/{path}` holds the branch's
current (possibly uncommitted) objects, so writes through the S3 gateway stage objects exactly
like writes through the API. A commit records the branch's objects and copies them to
`{commit_id}/{path}`; a new branch or tag gets its own copy of its commit's objects. Reads through
a branch see its staging area; reads through a commit or tag see exactly that commit.
Error statuses and messages are lakeFS's (pkg/api/controller.go, pkg/graveler/errors.go).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import BinaryIO

from tests.lakefs_server.backing import BackingStore, StoredObject
from tests.lakefs_server.model import (
    BRANCH_NAME,
    FIRST_COMMIT_MESSAGE,
    REPOSITORY_NAME,
    STORAGE_NAMESPACE,
    TAG_NAME,
    ApiError,
    Commit,
    Entry,
    Repository,
    bad_request,
    new_commit,
    not_found,
)

MAX_PER_PAGE = 1000  # DefaultMaxPerPage
COPY_THREADS = 8


def object_stats(entry: Entry, bucket: str, user_metadata: bool = True) -> dict[str, object]:
    return {
        "path": entry.path,
        "path_type": "object",
        "physical_address": f"s3://{bucket}/{entry.key}",
        "checksum": entry.checksum,
        "size_bytes": entry.size,
        "mtime": entry.mtime,
        "content_type": entry.content_type,
        "metadata": dict(entry.metadata) if user_metadata else {},
    }


def common_prefix(path: str) -> dict[str, object]:
    # lakeFS sends the required ObjectStats fields with zero values for a common prefix
    return {"path": path, "path_type": "common_prefix", "checksum": "", "physical_address": "", "mtime": 0}


def page_of(items: list[dict], key: str, after: str, amount: int) -> tuple[list[dict], dict[str, object]]:
    """Items after `after` (by `key`), at most `amount`, and lakeFS's Pagination for them."""
    remaining = [item for item in items if item[key] > after] if after else items
    page = remaining[:amount]
    has_more = len(remaining) > amount
    pagination = {
        "has_more": has_more,
        "next_offset": page[-1][key] if has_more and page else "",
        "results": len(page),
        "max_per_page": MAX_PER_PAGE,
    }
    return page, pagination


def group_by_delimiter(paths: list[str], prefix: str, delimiter: str) -> list[tuple[str, bool]]:
    """(path, is_common_prefix) in lakeFS's listing order: objects and common prefixes interleaved."""
    items: dict[str, bool] = {}
    for path in paths:
        rest = path[len(prefix) :]
        if delimiter and delimiter in rest:
            items[prefix + rest[: rest.index(delimiter) + len(delimiter)]] = True
        else:
            items[path] = False
    return sorted(items.items())


class LakeFSService:
    def __init__(self, store: BackingStore, committer: str) -> None:
        self.store = store
        self.committer = committer
        self._repositories: dict[str, Repository] = {}
        self._lock = threading.Lock()
        self._copier = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="copy")

    # -- repositories ------------------------------------------------------------------------------------------

    def repository(self, name: str) -> Repository:
        with self._lock:
            found = self._repositories.get(name)
        if found is None:
            raise not_found("repository not found")
        return found

    def create_repository(self, name: str, storage_namespace: str, default_branch: str) -> dict[str, object]:
        if not REPOSITORY_NAME.match(name):
            raise bad_request(f"repository name {name!r} does not match {REPOSITORY_NAME.pattern}")
        if not STORAGE_NAMESPACE.match(storage_namespace):
            raise bad_request(f"storage_namespace {storage_namespace!r} does not match {STORAGE_NAMESPACE.pattern}")
        if not BRANCH_NAME.match(default_branch):
            raise bad_request(f"default_branch {default_branch!r} does not match {BRANCH_NAME.pattern}")
        with self._lock:
            if name in self._repositories:
                raise ApiError(409, "error creating repository: not unique")
            if self.store.bucket_exists(name) and not self.store.bucket_is_empty(name):
                raise bad_request(
                    f"failed to create repository: found lakeFS objects in the storage namespace ({name}): "
                    "storage namespace already in use"
                )
            if not self.store.bucket_exists(name):
                self.store.create_bucket(name)
            repository = Repository(name, storage_namespace, default_branch, creation_date=int(time.time()))
            first = new_commit((), "", FIRST_COMMIT_MESSAGE, {}, {}, generation=1, range_id="")
            repository.commits[first.id] = first
            repository.branches[default_branch] = first.id
            self._repositories[name] = repository
        return repository.to_json()

    def list_repositories(self, prefix: str, after: str, amount: int) -> dict[str, object]:
        with self._lock:
            repositories = sorted(self._repositories.values(), key=lambda repo: repo.name)
        items = [repo.to_json() for repo in repositories if repo.name.startswith(prefix)]
        results, pagination = page_of(items, "id", after, amount)
        return {"pagination": pagination, "results": results}

    # -- branches, tags, commits -------------------------------------------------------------------------------

    def get_branch(self, repo_name: str, branch: str) -> dict[str, object]:
        repo = self.repository(repo_name)
        return {"id": branch, "commit_id": repo.branch_head(branch)}

    def list_branches(self, repo_name: str, prefix: str, after: str, amount: int) -> dict[str, object]:
        repo = self.repository(repo_name)
        items = [{"id": name, "commit_id": head} for name, head in sorted(repo.branches.items())]
        results, pagination = page_of([item for item in items if item["id"].startswith(prefix)], "id", after, amount)
        return {"pagination": pagination, "results": results}

    def create_branch(self, repo_name: str, name: str, source: str) -> str:
        repo = self.repository(repo_name)
        if not BRANCH_NAME.match(name):
            raise bad_request(f"branch id: invalid value: {name!r} does not match {BRANCH_NAME.pattern}")
        with repo.lock:
            if name in repo.branches:
                raise ApiError(409, "branch already exists: not unique")
            if name in repo.tags:
                # lakeFS would allow it; here both would share the `{name}/` prefix in the backing store
                raise ApiError(409, f"the test lakeFS server cannot create branch {name!r}: a tag has that name")
            try:
                commit_id = repo.resolve(source).commit_id  # a branch's commit, never its staging area
            except ApiError as exc:
                raise ApiError(exc.status, f"source reference '{source}': {exc.message}") from None
            self._copy_tree(repo, repo.commit(commit_id), name)
            repo.branches[name] = commit_id
        return commit_id

    def create_tag(self, repo_name: str, tag: str, ref: str) -> dict[str, object]:
        repo = self.repository(repo_name)
        if not TAG_NAME.match(tag) or tag.endswith((".", ".lock")):
            raise bad_request(f"tag id: invalid value: {tag!r}")
        with repo.lock:
            if tag in repo.tags:
                raise ApiError(409, "tag already exists: not unique")
            if tag in repo.branches:
                raise ApiError(409, f"the test lakeFS server cannot create tag {tag!r}: a branch has that name")
            commit_id = repo.resolve(ref).commit_id
            self._copy_tree(repo, repo.commit(commit_id), tag)
            repo.tags[tag] = commit_id
        return {"id": tag, "commit_id": commit_id}

    def get_tag(self, repo_name: str, tag: str) -> dict[str, object]:
        repo = self.repository(repo_name)
        if tag not in repo.tags:
            raise not_found("tag not found")
        return {"id": tag, "commit_id": repo.tags[tag]}

    def list_tags(self, repo_name: str, prefix: str, after: str, amount: int) -> dict[str, object]:
        repo = self.repository(repo_name)
        items = [{"id": name, "commit_id": commit_id} for name, commit_id in sorted(repo.tags.items())]
        results, pagination = page_of([item for item in items if item["id"].startswith(prefix)], "id", after, amount)
        return {"pagination": pagination, "results": results}

    def get_commit(self, repo_name: str, ref: str) -> dict[str, object]:
        repo = self.repository(repo_name)
        try:
            commit_id = repo.resolve(ref).commit_id
        except ApiError as exc:
            raise not_found("commit not found") if exc.status == 404 else exc from None
        return repo.commit(commit_id).to_json()

    def log_commits(self, repo_name: str, ref: str, after: str, amount: int) -> dict[str, object]:
        repo = self.repository(repo_name)
        history = [commit.to_json() for commit in repo.log(repo.resolve(ref).commit_id)]
        if after:
            ids = [item["id"] for item in history]
            history = history[ids.index(after) + 1 :] if after in ids else []
        results, pagination = page_of(history, "id", "", amount)
        return {"pagination": pagination, "results": results}

    def commit(
        self,
        repo_name: str,
        branch: str,
        message: str,
        metadata: Mapping[str, str],
        date: int | None,
        allow_empty: bool,
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        with repo.lock:
            head = repo.commit(repo.branch_head(branch))
            staged = self._branch_objects(repo, branch)
            # lakeFS identifies an entry by its checksum: re-uploading identical bytes is no change
            changed = [
                path
                for path, stored in staged.items()
                if path not in head.tree or head.tree[path].checksum != stored.etag
            ]
            removed = [path for path in head.tree if path not in staged]
            if not changed and not removed and not allow_empty:
                raise bad_request("commit: no changes")
            tree = {
                path: head.tree[path] if path not in changed else self._branch_entry(repo, path, stored)
                for path, stored in staged.items()
            }
            commit = new_commit(
                (head.id,), self.committer, message, metadata, tree, head.generation + 1, creation_date=date
            )
            committed_tree = {path: replace(entry, key=f"{commit.id}/{path}") for path, entry in tree.items()}
            self._copy_all(repo, [(staged[path].key, entry) for path, entry in committed_tree.items()])
            commit = replace(commit, tree=committed_tree)
            repo.commits[commit.id] = commit
            repo.branches[branch] = commit.id
        return commit.to_json()

    def diff_branch(
        self, repo_name: str, branch: str, prefix: str, after: str, amount: int, delimiter: str
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        head = repo.commit(repo.branch_head(branch))
        staged = self._branch_objects(repo, branch, prefix)
        changes: dict[str, tuple[str, int]] = {}
        for path, stored in staged.items():
            if path not in head.tree:
                changes[path] = ("added", stored.size)
            elif head.tree[path].checksum != stored.etag:
                changes[path] = ("changed", stored.size)
        for path, entry in head.tree.items():
            if path.startswith(prefix) and path not in staged:
                changes[path] = ("removed", entry.size)
        items = []
        for path, is_prefix in group_by_delimiter(sorted(changes), prefix, delimiter):
            if is_prefix:
                items.append({"type": "prefix_changed", "path": path, "path_type": "common_prefix"})
            else:
                kind, size = changes[path]
                items.append({"type": kind, "path": path, "path_type": "object", "size_bytes": size})
        results, pagination = page_of(items, "path", after, amount)
        return {"pagination": pagination, "results": results}

    # -- objects -----------------------------------------------------------------------------------------------

    def list_objects(
        self, repo_name: str, ref: str, prefix: str, after: str, delimiter: str, amount: int, user_metadata: bool
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        paths, entry_at = self._view(repo, ref, prefix)
        items: list[dict[str, object]] = []
        for path, is_prefix in group_by_delimiter(paths, prefix, delimiter):
            if path <= after:
                continue
            if len(items) > amount:
                break  # one more than a page tells whether there is more
            items.append(common_prefix(path) if is_prefix else {"path": path, "pending": True})
        results, pagination = page_of(items, "path", "", amount)
        filled = [
            object_stats(entry_at(item["path"]), repo.name, user_metadata) if item.get("pending") else item
            for item in results
        ]
        return {"pagination": pagination, "results": filled}

    def stat_object(self, repo_name: str, ref: str, path: str) -> Entry:
        repo = self.repository(repo_name)
        resolved = repo.resolve(ref)
        if resolved.branch is None:
            entry = repo.commit(resolved.commit_id).tree.get(path)
            if entry is None:
                raise not_found()
            return entry
        found = self.store.head(repo.name, f"{resolved.branch}/{path}")
        if found is None:
            raise not_found()
        stored, details = found
        return Entry(path, stored.etag, stored.size, stored.mtime, details.content_type, details.metadata, stored.key)

    def read_object(self, repo_name: str, entry: Entry, first: int | None, last: int | None) -> Iterator[bytes]:
        return self.store.read(repo_name, entry.key, first, last)

    def check_upload(self, repo_name: str, branch: str, path: str, if_none_match: str | None) -> None:
        """What lakeFS checks before it reads an upload's body."""
        repo = self.repository(repo_name)
        if branch not in repo.branches:
            raise not_found(f"branch '{branch}' not found")
        if if_none_match is not None:
            if if_none_match != "*":
                raise bad_request('Unsupported value for If-None-Match - Only "*" is supported')
            if self.store.head(repo.name, f"{branch}/{path}") is not None:
                raise ApiError(412, "path already exists")

    def upload_object(
        self,
        repo_name: str,
        branch: str,
        path: str,
        body: BinaryIO,
        size: int,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        stored = self.store.put(repo.name, f"{branch}/{path}", body, size, content_type, metadata)
        entry = Entry(path, stored.etag, stored.size, stored.mtime, content_type, dict(metadata), stored.key)
        return object_stats(entry, repo.name)

    def delete_object(self, repo_name: str, branch: str, path: str) -> None:
        repo = self.repository(repo_name)
        repo.branch_head(branch)
        self.store.delete(repo.name, f"{branch}/{path}")  # a missing object is no error (spec)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _view(self, repo: Repository, ref: str, prefix: str) -> tuple[list[str], Callable[[str], Entry]]:
        """The sorted paths under `prefix` that `ref` sees, and how to get each one's entry."""
        resolved = repo.resolve(ref)
        if resolved.branch is None:
            tree = repo.commit(resolved.commit_id).tree
            return sorted(path for path in tree if path.startswith(prefix)), tree.__getitem__
        staged = self._branch_objects(repo, resolved.branch, prefix)
        return sorted(staged), lambda path: self._branch_entry(repo, path, staged[path])

    def _branch_objects(self, repo: Repository, branch: str, prefix: str = "") -> dict[str, StoredObject]:
        base = f"{branch}/"
        return {stored.key[len(base) :]: stored for stored in self.store.list(repo.name, base + prefix)}

    def _branch_entry(self, repo: Repository, path: str, stored: StoredObject) -> Entry:
        details = self.store.details(repo.name, stored)
        return Entry(path, stored.etag, stored.size, stored.mtime, details.content_type, details.metadata, stored.key)

    def _copy_tree(self, repo: Repository, commit: Commit, ref_name: str) -> None:
        self._copy_all(
            repo, [(entry.key, replace(entry, key=f"{ref_name}/{path}")) for path, entry in commit.tree.items()]
        )

    def _copy_all(self, repo: Repository, copies: list[tuple[str, Entry]]) -> None:
        jobs = [
            self._copier.submit(self.store.copy, repo.name, source_key, target.key, target.checksum, target.size)
            for source_key, target in copies
        ]
        for job in jobs:
            job.result()
