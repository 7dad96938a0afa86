"""lakeFS's operations over the in-memory version graph and the S3 backing store.

Every upload (through the API or the S3 gateway) writes its bytes once, to a new physical address,
and stages an entry pointing there on the branch. A commit turns the branch's staged entries into
a new tree; branches, tags and merges only move pointers to commits. Reads through a branch see
its staging area; reads through a commit, a tag or `branch@` see exactly a commit.
Error statuses and messages are lakeFS's (pkg/api/controller.go, pkg/graveler/errors.go).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from tests.lakefs_server.backing import BackingStore, StoredObject
from tests.lakefs_server.model import (
    BRANCH_NAME,
    FIRST_COMMIT_MESSAGE,
    MERGE_STRATEGIES,
    MERGE_STRATEGY_KEY,
    REPOSITORY_NAME,
    STORAGE_NAMESPACE,
    TAG_NAME,
    ApiError,
    Branch,
    Change,
    Entry,
    MergeConflict,
    Repository,
    ResolvedRef,
    bad_request,
    new_commit,
    not_found,
    three_way,
    two_dot,
)

MAX_PER_PAGE = 1000  # DefaultMaxPerPage


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


def diff_page(changes: list[Change], prefix: str, after: str, amount: int, delimiter: str) -> dict[str, object]:
    """A DiffList page: changes under `prefix`, grouped by `delimiter` into prefix_changed entries."""
    by_path = {change.path: change for change in changes if change.path.startswith(prefix)}
    items = []
    for path, is_prefix in group_by_delimiter(sorted(by_path), prefix, delimiter):
        if is_prefix:
            items.append({"type": "prefix_changed", "path": path, "path_type": "common_prefix"})
        else:
            change = by_path[path]
            shown = change.source if change.source is not None else change.destination
            size = shown.size if shown is not None else 0
            items.append({"type": change.kind, "path": path, "path_type": "object", "size_bytes": size})
    results, pagination = page_of(items, "path", after, amount)
    return {"pagination": pagination, "results": results}


class LakeFSService:
    def __init__(self, store: BackingStore, committer: str) -> None:
        self.store = store
        self.committer = committer
        self._repositories: dict[str, Repository] = {}
        self._lock = threading.Lock()

    # -- repositories ------------------------------------------------------------------------------------------

    def repository(self, name: str) -> Repository:
        with self._lock:
            found = self._repositories.get(name)
        if found is None:
            raise not_found("repository not found")
        return found

    def find_repository(self, name: str) -> Repository | None:
        with self._lock:
            return self._repositories.get(name)

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
            repository.branches[default_branch] = Branch(first.id)
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
        with repo.lock:
            items = [{"id": name, "commit_id": branch.head} for name, branch in sorted(repo.branches.items())]
        results, pagination = page_of([item for item in items if item["id"].startswith(prefix)], "id", after, amount)
        return {"pagination": pagination, "results": results}

    def create_branch(self, repo_name: str, name: str, source: str) -> str:
        repo = self.repository(repo_name)
        if not BRANCH_NAME.match(name):
            raise bad_request(f"branch id: invalid value: {name!r} does not match {BRANCH_NAME.pattern}")
        with repo.lock:
            if name in repo.branches:
                raise ApiError(409, "branch already exists: not unique")
            try:
                commit_id = repo.resolve(source).commit_id  # a branch's commit, never its staging area
            except ApiError as exc:
                raise ApiError(exc.status, f"source reference '{source}': {exc.message}") from None
            repo.branches[name] = Branch(commit_id)
        return commit_id

    def delete_branch(self, repo_name: str, branch: str) -> None:
        repo = self.repository(repo_name)
        with repo.lock:
            if branch == repo.default_branch:
                raise ApiError(403, "cannot delete repository default branch")
            repo.branch(branch)
            del repo.branches[branch]  # its staged data stays in the store, as lakeFS leaves it to GC

    def create_tag(self, repo_name: str, tag: str, ref: str) -> dict[str, object]:
        repo = self.repository(repo_name)
        if not TAG_NAME.match(tag) or tag.endswith((".", ".lock")):
            raise bad_request(f"tag id: invalid value: {tag!r}")
        with repo.lock:
            if tag in repo.tags:
                raise ApiError(409, "tag already exists: not unique")
            commit_id = repo.resolve(ref).commit_id
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

    def log_commits(self, repo_name: str, ref: str, after: str, amount: int, first_parent: bool) -> dict[str, object]:
        repo = self.repository(repo_name)
        history = [commit.to_json() for commit in repo.log(repo.resolve(ref).commit_id, first_parent)]
        if after:
            ids = [item["id"] for item in history]
            history = history[ids.index(after) + 1 :] if after in ids else []
        results, pagination = page_of(history, "id", "", amount)
        return {"pagination": pagination, "results": results}

    def commit(
        self,
        repo_name: str,
        branch_name: str,
        message: str,
        metadata: Mapping[str, str],
        date: int | None,
        allow_empty: bool,
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        with repo.lock:
            branch = repo.branch(branch_name)
            head = repo.commit(branch.head)
            tree = branch.view(head.tree)
            if not two_dot(head.tree, tree) and not allow_empty:
                raise bad_request("commit: no changes")
            commit = new_commit((head.id,), self.committer, message, metadata, tree, head.generation + 1, date)
            repo.commits[commit.id] = commit
            branch.head, branch.staging = commit.id, {}
        return commit.to_json()

    def diff_branch(
        self, repo_name: str, branch_name: str, prefix: str, after: str, amount: int, delimiter: str
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        with repo.lock:
            branch = repo.branch(branch_name)
            committed = repo.commit(branch.head).tree
            changes = two_dot(committed, branch.view(committed))
        return diff_page(changes, prefix, after, amount, delimiter)

    def diff_refs(
        self, repo_name: str, left: str, right: str, three_dot: bool, page: tuple[str, str, int, str]
    ) -> dict[str, object]:
        """lakeFS's diffRefs: two_dot compares the trees; three_dot shows what merging right into left brings."""
        repo = self.repository(repo_name)
        with repo.lock:
            left_tree = repo.commit(repo.resolve(left).commit_id).tree
            right_ref = repo.resolve(right)
            if three_dot:
                right_commit = right_ref.commit_id
                base = repo.merge_base(right_commit, repo.resolve(left).commit_id)
                base_tree = repo.commit(base).tree if base else {}
                changes = three_way(left_tree, repo.commit(right_commit).tree, base_tree)
            else:
                # `branch$` includes the branch's staging area; a plain branch is its committed state
                staged = right.endswith("$")
                changes = two_dot(left_tree, repo.tree(right_ref if staged else ResolvedRef(right_ref.commit_id)))
        prefix, after, amount, delimiter = page
        return diff_page(changes, prefix, after, amount, delimiter)

    def merge(
        self,
        repo_name: str,
        source: str,
        destination: str,
        message: str,
        metadata: Mapping[str, str],
        strategy: str,
        allow_empty: bool,
        squash: bool,
    ) -> str:
        """graveler.Merge: a three-way merge into the destination branch, always as a new commit."""
        repo = self.repository(repo_name)
        if strategy not in MERGE_STRATEGIES:
            raise bad_request(f"update branch {destination}: invalid strategy")
        with repo.lock:
            branch = repo.branch(destination)
            if branch.staging:  # lakeFS refuses to merge into a branch with anything staged
                raise bad_request(f"update branch {destination}: {destination}: uncommitted changes (dirty branch)")
            try:
                source_id = repo.resolve(source).commit_id
            except ApiError as exc:
                raise ApiError(exc.status, f"get commit by ref {source}: {exc.message}") from None
            to_commit, from_commit = repo.commit(branch.head), repo.commit(source_id)
            base_id = repo.merge_base(from_commit.id, to_commit.id)
            base = repo.commit(base_id) if base_id else None
            base_tree = base.tree if base else {}
            if base is not None and from_commit.meta_range_id == base.meta_range_id and not allow_empty:
                raise bad_request(f"update branch {destination}: no changes")
            tree = self._merged_tree(to_commit.tree, from_commit.tree, base_tree, strategy)
            parents = (to_commit.id,) if squash else (to_commit.id, from_commit.id)
            merged = new_commit(
                parents,
                self.committer,
                message,
                {**metadata, MERGE_STRATEGY_KEY: MERGE_STRATEGIES[strategy]},
                tree,
                max(to_commit.generation, from_commit.generation) + 1,
            )
            repo.commits[merged.id] = merged
            branch.head = merged.id
        return merged.id

    @staticmethod
    def _merged_tree(destination, source, base, strategy: str) -> dict[str, Entry]:
        tree = dict(destination)
        changes = three_way(destination, source, base)
        conflicts = [change.path for change in changes if change.kind == "conflict"]
        if conflicts and not strategy:
            raise MergeConflict(conflicts)
        for change in changes:
            take_source = change.kind != "conflict" or strategy == "source-wins"
            if not take_source:
                continue
            if change.source is None:
                tree.pop(change.path, None)
            else:
                tree[change.path] = change.source
        return tree

    # -- objects -----------------------------------------------------------------------------------------------

    def tree(self, repo: Repository, ref: str) -> dict[str, Entry]:
        with repo.lock:
            return repo.tree(repo.resolve(ref))

    def list_objects(
        self, repo_name: str, ref: str, prefix: str, after: str, delimiter: str, amount: int, user_metadata: bool
    ) -> dict[str, object]:
        repo = self.repository(repo_name)
        tree = self.tree(repo, ref)
        items: list[dict[str, object]] = []
        for path, is_prefix in group_by_delimiter(sorted(p for p in tree if p.startswith(prefix)), prefix, delimiter):
            if path <= after:
                continue
            if len(items) > amount:
                break  # one more than a page tells whether there is more
            items.append(common_prefix(path) if is_prefix else object_stats(tree[path], repo.name, user_metadata))
        results, pagination = page_of(items, "path", "", amount)
        return {"pagination": pagination, "results": results}

    def stat_object(self, repo_name: str, ref: str, path: str) -> Entry:
        entry = self.tree(self.repository(repo_name), ref).get(path)
        if entry is None:
            raise not_found()
        return entry

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
            if path in self.tree(repo, branch):
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
    ) -> Entry:
        repo = self.repository(repo_name)
        stored = self.store.put(repo.name, body, size, content_type, metadata)
        return self.stage(repo, branch, path, stored, content_type, metadata)

    def stage(
        self,
        repo: Repository,
        branch_name: str,
        path: str,
        stored: StoredObject,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> Entry:
        """Point `path` on the branch at data already written; the branch may have gone meanwhile."""
        entry = Entry(path, stored.etag, stored.size, int(time.time()), content_type, dict(metadata), stored.key)
        with repo.lock:
            repo.branch(branch_name).staging[path] = entry
        return entry

    def delete_object(self, repo_name: str, branch_name: str, path: str) -> None:
        repo = self.repository(repo_name)
        with repo.lock:
            branch = repo.branch(branch_name)
            if path in repo.commit(branch.head).tree:
                branch.staging[path] = None
            else:
                branch.staging.pop(path, None)  # a missing object is no error (spec)
