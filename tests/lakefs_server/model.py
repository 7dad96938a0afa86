"""lakeFS's version graph in memory: repositories, branches, tags, commits, and ref resolution.

Ref resolution follows lakeFS's graveler (pkg/graveler/ref/resolve_ref.go): a full commit id wins;
otherwise a branch, then a tag; otherwise a unique hex prefix of a commit id. Modifiers `~N`
(first-parent ancestor), `^N` (N-th parent), `@` (a branch's committed state, without its
uncommitted changes) and `$` (a branch's staging area) may follow.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

FIRST_COMMIT_MESSAGE = "Repository created"  # graveler.FirstCommitMsg
REPOSITORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")  # RepositoryCreation.name in the OpenAPI spec
STORAGE_NAMESPACE = re.compile(r"^(s3|gs|https?|mem|local|transient)://.*$")
BRANCH_NAME = re.compile(r"^\w[-\w]*$")  # graveler.ValidateBranchID
TAG_NAME = re.compile(r"^\w[-\w.]*$")
HEX = re.compile(r"^[a-fA-F0-9]{1,64}$")
MODIFIER = re.compile(r"(~|\^)(\d*)|(@)|(\$)")


class ApiError(Exception):
    """An error answer: HTTP status and the `message` of lakeFS's Error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass(frozen=True)
class Entry:
    """One object as a ref sees it; `key` is where its bytes are in the repository's bucket."""

    path: str
    checksum: str
    size: int
    mtime: int
    content_type: str
    metadata: Mapping[str, str]
    key: str


@dataclass(frozen=True)
class Commit:
    id: str
    parents: tuple[str, ...]
    committer: str
    message: str
    creation_date: int
    meta_range_id: str
    metadata: Mapping[str, str]
    generation: int
    tree: Mapping[str, Entry] = field(repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "parents": list(self.parents),
            "committer": self.committer,
            "message": self.message,
            "creation_date": self.creation_date,
            "meta_range_id": self.meta_range_id,
            "metadata": dict(self.metadata),
            "generation": self.generation,
            "version": 1,
        }


def meta_range_id(tree: Mapping[str, Entry]) -> str:
    """A content address of a tree, like lakeFS's metarange id (64 hex chars)."""
    digest = hashlib.sha256()
    for path in sorted(tree):
        entry = tree[path]
        digest.update(json.dumps([path, entry.checksum, entry.size, entry.content_type]).encode())
    return digest.hexdigest()


def new_commit(
    parents: tuple[str, ...],
    committer: str,
    message: str,
    metadata: Mapping[str, str],
    tree: Mapping[str, Entry],
    generation: int,
    creation_date: int | None = None,
    range_id: str | None = None,
) -> Commit:
    created = int(time.time()) if creation_date is None else creation_date
    range_id = meta_range_id(tree) if range_id is None else range_id
    # lakeFS content-addresses commits; the nanosecond clock keeps two identical commits apart.
    identity = json.dumps(
        [list(parents), committer, message, dict(metadata), created, range_id, generation, time.time_ns()],
        sort_keys=True,
    )
    return Commit(
        id=hashlib.sha256(identity.encode()).hexdigest(),
        parents=parents,
        committer=committer,
        message=message,
        creation_date=created,
        meta_range_id=range_id,
        metadata=MappingProxyType(dict(metadata)),
        generation=generation,
        tree=MappingProxyType(dict(tree)),
    )


@dataclass(frozen=True)
class ResolvedRef:
    """A ref resolved to a commit; `branch` is set when reads go to that branch's staging area."""

    commit_id: str
    branch: str | None = None


@dataclass
class Repository:
    name: str
    storage_namespace: str
    default_branch: str
    creation_date: int
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> head commit id
    tags: dict[str, str] = field(default_factory=dict)  # tag -> commit id
    # Serializes what lakeFS serializes per branch (commits, branch and tag creation).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.name,
            "creation_date": self.creation_date,
            "default_branch": self.default_branch,
            "storage_namespace": self.storage_namespace,
            "read_only": False,
        }

    def branch_head(self, branch: str) -> str:
        if branch not in self.branches:
            raise not_found("branch not found")
        return self.branches[branch]

    def commit(self, commit_id: str) -> Commit:
        return self.commits[commit_id]

    def resolve(self, ref: str) -> ResolvedRef:
        """Resolve a ref expression; unknown refs are 404 "not found", bad modifiers 400."""
        base, modifiers = _split_ref(ref)
        resolved, is_branch = self._resolve_base(base)
        if not modifiers:
            return resolved
        commit_id = resolved.commit_id
        for symbol, number in modifiers:
            if symbol in ("@", "$"):
                if not is_branch or len(modifiers) != 1:
                    raise bad_request("ref: invalid value: validation error")
                return ResolvedRef(commit_id, branch=resolved.branch if symbol == "$" else None)
            commit_id = self._ancestor(commit_id, symbol, number)
        return ResolvedRef(commit_id)

    def _resolve_base(self, base: str) -> tuple[ResolvedRef, bool]:
        if base in self.commits:
            return ResolvedRef(base), False
        if base in self.branches:
            return ResolvedRef(self.branches[base], branch=base), True
        if base in self.tags:
            return ResolvedRef(self.tags[base]), False
        if HEX.match(base):
            matches = [commit_id for commit_id in self.commits if commit_id.startswith(base.lower())]
            if len(matches) == 1:
                return ResolvedRef(matches[0]), False
        raise not_found()

    def _ancestor(self, commit_id: str, symbol: str, number: int) -> str:
        if symbol == "~":
            for _ in range(number):
                parents = self.commits[commit_id].parents
                if not parents:
                    raise not_found()
                commit_id = parents[0]
            return commit_id
        if number == 0:
            return commit_id
        parents = self.commits[commit_id].parents
        if number > len(parents):
            raise bad_request("ref: invalid value: validation error")
        return parents[number - 1]

    def log(self, commit_id: str) -> list[Commit]:
        """The commit and its first-parent ancestors, newest first (this server never merges)."""
        history = []
        current: str | None = commit_id
        while current is not None:
            commit = self.commits[current]
            history.append(commit)
            current = commit.parents[0] if commit.parents else None
        return history


def _split_ref(ref: str) -> tuple[str, list[tuple[str, int]]]:
    cut = min((ref.find(symbol) for symbol in "~^@$" if symbol in ref), default=len(ref))
    base, rest = ref[:cut], ref[cut:]
    if not base:
        raise bad_request("ref: invalid value: validation error")
    modifiers: list[tuple[str, int]] = []
    position = 0
    while position < len(rest):
        found = MODIFIER.match(rest, position)
        if not found:
            raise bad_request("ref: invalid value: validation error")
        if found.group(1):
            modifiers.append((found.group(1), int(found.group(2) or 1)))
        else:
            modifiers.append((found.group(3) or found.group(4), 0))
        position = found.end()
    return base, modifiers
