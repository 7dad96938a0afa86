"""lakeFS's version graph in memory: repositories, branches with staging areas, tags, commits, refs.

Ref resolution follows lakeFS's graveler (pkg/graveler/ref/resolve_ref.go): a full commit id wins;
otherwise a branch, then a tag; otherwise a unique hex prefix of a commit id. Modifiers `~N`
(first-parent ancestor), `^N` (N-th parent), `@` (a branch's committed state, without its
uncommitted changes) and `$` (a branch's staging area) may follow. Branches and tags are separate
namespaces: a branch and a tag may share a name, and the branch wins when it is resolved.

An entry's identity is what lakeFS compares to decide whether an object changed (catalog
EntryToValue): its size, checksum, user metadata and content type, so re-uploading the same bytes
with another content type or metadata is a change.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

FIRST_COMMIT_MESSAGE = "Repository created"  # graveler.FirstCommitMsg
REPOSITORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")  # RepositoryCreation.name in the OpenAPI spec
STORAGE_NAMESPACE = re.compile(r"^(s3|gs|https?|mem|local|transient)://.*$")
BRANCH_NAME = re.compile(r"^\w[-\w]*$")  # graveler.ValidateBranchID
TAG_NAME = re.compile(r"^\w[-\w.]*$")
HEX = re.compile(r"^[a-fA-F0-9]{1,64}$")
MODIFIER = re.compile(r"(~|\^)(\d*)|(@)|(\$)")
MERGE_STRATEGY_KEY = ".lakefs.merge.strategy"  # graveler.MergeStrategyMetadataKey
MERGE_STRATEGIES = {"": "default", "dest-wins": "dest-wins", "source-wins": "source-wins"}


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


class MergeConflict(ApiError):
    """lakeFS answers a merge conflict with 409 and an empty MergeResult, not an Error body."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(409, "conflict found")
        self.paths = paths


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

    @property
    def identity(self) -> tuple[object, ...]:
        return (self.size, self.checksum, tuple(sorted(self.metadata.items())), self.content_type)


Tree = Mapping[str, Entry]


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
    tree: Tree = field(repr=False)

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


def meta_range_id(tree: Tree) -> str:
    """A content address of a tree, like lakeFS's metarange id: equal trees, equal ids."""
    digest = hashlib.sha256()
    for path in sorted(tree):
        digest.update(json.dumps([path, *tree[path].identity]).encode())
    return digest.hexdigest()


def new_commit(
    parents: tuple[str, ...],
    committer: str,
    message: str,
    metadata: Mapping[str, str],
    tree: Tree,
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


@dataclass
class Branch:
    head: str  # commit id
    staging: dict[str, Entry | None] = field(default_factory=dict)  # None: a staged deletion

    def view(self, committed: Tree) -> dict[str, Entry]:
        """The committed tree with the staged changes applied: what reads through the branch see."""
        view = dict(committed)
        for path, entry in self.staging.items():
            if entry is None:
                view.pop(path, None)
            else:
                view[path] = entry
        return view


@dataclass(frozen=True)
class ResolvedRef:
    """A ref resolved to a commit; `branch` is set when reads include that branch's staging area."""

    commit_id: str
    branch: str | None = None


@dataclass
class Repository:
    name: str
    storage_namespace: str
    default_branch: str
    creation_date: int
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, Branch] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> commit id
    # Serializes what lakeFS serializes per branch (commits, merges, branch and tag creation).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.name,
            "creation_date": self.creation_date,
            "default_branch": self.default_branch,
            "storage_namespace": self.storage_namespace,
            "read_only": False,
        }

    def branch(self, name: str) -> Branch:
        if name not in self.branches:
            raise not_found("branch not found")
        return self.branches[name]

    def branch_head(self, name: str) -> str:
        return self.branch(name).head

    def commit(self, commit_id: str) -> Commit:
        return self.commits[commit_id]

    def tree(self, resolved: ResolvedRef) -> dict[str, Entry]:
        """What a resolved ref sees: a commit's tree, or a branch's tree with its staging area."""
        committed = self.commits[resolved.commit_id].tree
        if resolved.branch is None:
            return dict(committed)
        return self.branches[resolved.branch].view(committed)

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
            return ResolvedRef(self.branches[base].head, branch=base), True
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

    def log(self, commit_id: str, first_parent: bool = False) -> Iterator[Commit]:
        """The commit and its ancestors, newest first, as lakeFS's CommitIterator orders them."""
        queue: list[tuple[int, str, str]] = []  # (-creation date, inverted id for ties, id)
        seen = {commit_id}

        def push(cid: str) -> None:
            inverted = "".join(format(15 - int(c, 16), "x") for c in cid)  # larger id first on ties
            heapq.heappush(queue, (-self.commits[cid].creation_date, inverted, cid))

        push(commit_id)
        while queue:
            commit = self.commits[heapq.heappop(queue)[2]]
            yield commit
            for parent in commit.parents[:1] if first_parent else commit.parents:
                if parent not in seen:
                    seen.add(parent)
                    push(parent)

    def merge_base(self, left: str, right: str) -> str | None:
        """The nearest common ancestor, found like lakeFS's FindMergeBase (highest generation first)."""
        if left == right:
            return left
        reached = {left: 1, right: 2}
        queue = [(-self.commits[cid].generation, cid) for cid in (left, right)]
        heapq.heapify(queue)
        while queue:
            current = heapq.heappop(queue)[1]
            for parent in self.commits[current].parents:
                if parent not in reached:
                    reached[parent] = 0
                    heapq.heappush(queue, (-self.commits[parent].generation, parent))
                reached[parent] |= reached[current]
                if reached[parent] == 3:
                    return parent
        return None


@dataclass(frozen=True)
class Change:
    """One path that a merge of source into destination changes (lakeFS's compare iterator)."""

    path: str
    kind: str  # added, removed, changed, conflict
    source: Entry | None
    destination: Entry | None


def three_way(destination: Tree, source: Tree, base: Tree) -> list[Change]:
    """What merging `source` into `destination` does, path by path, judged against `base`.

    The rules of lakeFS's merge table: a path changed on one side only takes that side; changed
    on both sides the same way it stays; changed differently (or changed on one side and removed
    on the other) it is a conflict.
    """
    changes = []
    for path in sorted(set(destination) | set(source)):
        dst, src, bse = destination.get(path), source.get(path), base.get(path)
        if _same(dst, src) or _same(src, bse):
            continue  # nothing to bring over: equal already, or only the destination changed
        if _same(dst, bse):
            kind = "removed" if src is None else "added" if dst is None else "changed"
            changes.append(Change(path, kind, src, dst))
        else:
            changes.append(Change(path, "conflict", src, dst))
    return changes


def two_dot(left: Tree, right: Tree) -> list[Change]:
    """How `right` differs from `left`, path by path."""
    changes = []
    for path in sorted(set(left) | set(right)):
        before, after = left.get(path), right.get(path)
        if not _same(before, after):
            kind = "added" if before is None else "removed" if after is None else "changed"
            changes.append(Change(path, kind, after, before))
    return changes


def _same(one: Entry | None, other: Entry | None) -> bool:
    if one is None or other is None:
        return one is other
    return one.identity == other.identity


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
