"""Publish a directory to a lakeFS branch the write-audit-publish way.

1. Read the target branch's head (creating the branch from `create_branch_from` when it is
   missing). When that commit already holds exactly these files, publish nothing and return it.
2. Write: on a work branch made from that head (or the one an earlier attempt of the same run left
   behind), upload what differs, delete what the prefix should no longer hold, then commit once.
3. Audit the commit: every file's size and MD5 checksum as listed at that commit, and nothing
   outside the prefix changed.
4. Publish: squash-merge the audited commit into the target (one new commit whose parent is the
   target's head), check that commit holds exactly the files, and delete the work branch.

Readers of the target only ever see the commit before or the commit after: a crash anywhere leaves
the target untouched and at most a work branch, which the next attempt of the run resumes (or the
next publish, or `edge-deploy publish-cleanup`, deletes once abandoned).

Beside the prefix, each publish writes `.edge-deploy/publish/{prefix}manifest.json` (the files'
paths, sizes and digests). Two publishers of one prefix therefore always change that file
differently, so lakeFS's merge refuses the second with a conflict instead of mixing their files;
the second then publishes again from the new head (a bounded number of times). Retries of single
requests are bounded and only for transient failures; a commit or merge whose answer was lost is
looked up rather than repeated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge_deploy.errors import EdgeDeployError, StorageError, TransientError
from edge_deploy.storage.failures import ConflictError, MergeConflictError
from edge_deploy.storage.paths import normalize_prefix
from edge_deploy.storage.progress import Progress
from edge_deploy.storage.results import FileEntry, LocalFile, UploadResult, local_files
from edge_deploy.storage.work_branches import (
    STALE_AFTER_SECONDS,
    list_work_branches,
    run_label,
    target_key,
    work_branch_name,
)

if TYPE_CHECKING:
    from edge_deploy.storage.client import LakeFSClient, RemoteObject

log = logging.getLogger(__name__)
T = TypeVar("T")

MANIFEST_ROOT = ".edge-deploy/publish/"
MAX_PUBLISH_ATTEMPTS = 4  # one publish plus three more after conflicting concurrent publishes
OCTET_STREAM = "application/octet-stream"


class _PublishAgain(Exception):
    """The work branch cannot be merged as it is: start over from the target's current head."""


@dataclass(frozen=True)
class Publication:
    """What to publish where, with the digests everything is compared against."""

    source: Path
    repo: str
    branch: str
    prefix: str
    message: str
    metadata: dict[str, str]
    create_branch_from: str | None
    run_id: str
    files: dict[str, LocalFile] = field(repr=False)
    manifest: bytes = field(repr=False)

    @classmethod
    def of(cls, source, repo, branch, prefix, message, metadata, create_branch_from, run_id) -> Publication:
        prefix = normalize_prefix(prefix)
        if not prefix:
            raise StorageError(
                f"publishing to the root of lakefs://{repo}/{branch} would delete every other object on the "
                "branch: give a prefix such as 'edge/'"
            )
        files = local_files(source, "publish source")
        manifest = _manifest(prefix, files)
        run = run_id or metadata.get("run_id") or "content-" + hashlib.sha256(manifest).hexdigest()[:12]
        message = message or f"edge-deploy: publish {prefix}"
        return cls(source, repo, branch, prefix, message, metadata, create_branch_from, run, files, manifest)

    @property
    def where(self) -> str:
        return f"lakefs://{self.repo}/{self.branch}/{self.prefix}"

    @property
    def manifest_path(self) -> str:
        return f"{MANIFEST_ROOT}{self.prefix}manifest.json"

    def wanted(self) -> dict[str, tuple[int, str]]:
        """{repository path: (size, md5)} of everything a publish leaves: the files and the manifest."""
        wanted = {self.prefix + rel: (f.size, f.md5) for rel, f in self.files.items()}
        wanted[self.manifest_path] = (len(self.manifest), hashlib.md5(self.manifest, usedforsecurity=False).hexdigest())
        return wanted

    def entries(self) -> list[FileEntry]:
        return [FileEntry(rel, f.size, f.sha256) for rel, f in sorted(self.files.items())]


def _manifest(prefix: str, files: dict[str, LocalFile]) -> bytes:
    listing = {rel: {"size": f.size, "sha256": f.sha256, "md5": f.md5} for rel, f in sorted(files.items())}
    return (json.dumps({"format": 1, "prefix": prefix, "files": listing}, indent=2, sort_keys=True) + "\n").encode()


def publish(store: LakeFSClient, pub: Publication, show: Callable[[str], None]) -> UploadResult:
    head = _target_head(store, pub)
    current = _view(store, pub, head)
    done = _holds(current, pub)
    leftover = _clear_work_branches(store, pub, keep_own=not done)
    if done:
        return _unchanged(pub, head, show)
    if leftover is None:
        return _publish_with_retries(store, pub, _new_work_branch(store, pub, head), current, show)
    show(f"resuming the publish of run {pub.run_id} to {pub.where} on work branch {leftover}")
    return _publish_with_retries(store, pub, leftover, _view(store, pub, leftover), show)


def _unchanged(pub: Publication, head: str, show: Callable[[str], None]) -> UploadResult:
    show(f"{pub.where} already holds these {len(pub.files)} files at {head[:12]}: nothing to publish")
    return UploadResult(pub.repo, pub.branch, pub.prefix, head, False, [], [], pub.entries())


def _publish_with_retries(
    store: LakeFSClient, pub: Publication, work: str, current: dict[str, RemoteObject], show: Callable[[str], None]
) -> UploadResult:
    """Publish from `work`; when the target moved under the prefix meanwhile, again from its new head."""
    for attempt in range(1, MAX_PUBLISH_ATTEMPTS + 1):
        try:
            return _publish_from(store, pub, work, current, show)
        except TransientError:
            raise  # the work branch stays: the task's retry resumes from what it holds
        except (MergeConflictError, _PublishAgain) as conflict:
            _drop_work_branch(store, pub, work)
            if attempt == MAX_PUBLISH_ATTEMPTS:
                raise MergeConflictError(
                    f"publish to {pub.where}: {conflict}; gave up after {attempt} attempts while other writers kept "
                    f"changing the same paths (run {pub.run_id}; rerun it once they are done)"
                ) from None
            show(f"{conflict}; publishing again from the new head of {pub.branch}")
            head = _target_head(store, pub)
            current = _view(store, pub, head)
            if _holds(current, pub):
                return _unchanged(pub, head, show)
            work = _new_work_branch(store, pub, head)
        except StorageError:
            _drop_work_branch(store, pub, work)  # refused for good: nothing to resume
            raise
    raise AssertionError("unreachable")


def _publish_from(
    store: LakeFSClient, pub: Publication, work: str, current: dict[str, RemoteObject], show: Callable[[str], None]
) -> UploadResult:
    """Stage, commit, audit and merge from one work branch; MergeConflictError when the target moved."""
    staged = _stage(store, pub, work, current, show)
    commit = _commit(store, pub, work, staged)
    changes = _audit(store, pub, commit)
    if not changes:
        raise _PublishAgain(f"work branch {work} brings nothing {pub.branch} lacks (a leftover of an older state)")
    show(f"audited {commit[:12]}: {len(pub.files)} files as expected; merging into {pub.branch}")
    merged = _merge(store, pub, commit)
    mismatch = _mismatch(_view(store, pub, merged), pub)
    if mismatch:
        # Someone wrote these paths directly (not through a publish) while we merged: publish again on top.
        raise _PublishAgain(f"{pub.branch} at {merged[:12]} differs on {', '.join(mismatch[:5])} after the merge")
    _drop_work_branch(store, pub, work)
    show(f"published {pub.where} at {merged[:12]}")
    uploaded = sorted(path[len(pub.prefix) :] for path, kind in changes.items() if kind != "removed")
    deleted = sorted(path[len(pub.prefix) :] for path, kind in changes.items() if kind == "removed")
    return UploadResult(pub.repo, pub.branch, pub.prefix, merged, True, uploaded, deleted, pub.entries())


# -- the target and the work branch ------------------------------------------------------------------------------


def _target_head(store: LakeFSClient, pub: Publication) -> str:
    head = store.branch_head(pub.repo, pub.branch)
    if head is not None:
        return head
    if pub.create_branch_from is None:
        raise StorageError(f"branch {pub.branch!r} does not exist in lakeFS repository {pub.repo!r}; create it first")
    try:
        return store.create_branch(pub.repo, pub.branch, pub.create_branch_from)
    except ConflictError:  # another publisher created it a moment ago
        return store.branch_head(pub.repo, pub.branch) or ""


def _clear_work_branches(store: LakeFSClient, pub: Publication, keep_own: bool) -> str | None:
    """Delete other runs' abandoned work branches and this run's extra ones; returns the one to resume."""
    now, run, key = time.time(), run_label(pub.run_id), target_key(pub.branch, pub.prefix)
    own, doomed = [], []
    for branch in list_work_branches(store, pub.repo):  # oldest first
        if (branch.run, branch.target) == (run, key):
            own.append(branch.name)
        elif branch.age(now) > STALE_AFTER_SECONDS:
            doomed.append(branch.name)
    resume = own.pop() if own and keep_own else None
    for name in doomed + own:
        _drop_work_branch(store, pub, name)
    return resume


def _drop_work_branch(store: LakeFSClient, pub: Publication, name: str) -> None:
    """Delete a work branch; one that cannot be deleted now is left for the next publish or the cleanup."""
    try:
        store.delete_branch(pub.repo, name)
    except EdgeDeployError as exc:
        log.warning("could not delete work branch lakefs://%s/%s (left for cleanup): %s", pub.repo, name, exc)


def _new_work_branch(store: LakeFSClient, pub: Publication, head: str) -> str:
    name = work_branch_name(pub.run_id, pub.branch, pub.prefix)
    with contextlib.suppress(ConflictError):  # made by this very call, whose first answer was lost
        store.create_branch(pub.repo, name, head)
    return name


# -- write, audit, publish ---------------------------------------------------------------------------------------


def _view(store: LakeFSClient, pub: Publication, ref: str) -> dict[str, RemoteObject]:
    """What `ref` holds under the prefix, and its manifest."""
    listed = {obj.path: obj for obj in store.list_objects(pub.repo, ref, pub.prefix)}
    listed.update((obj.path, obj) for obj in store.list_objects(pub.repo, ref, pub.manifest_path))
    return {path: obj for path, obj in listed.items() if path.startswith(pub.prefix) or path == pub.manifest_path}


def _same(obj: RemoteObject | None, size: int, md5: str) -> bool:
    """Equal as lakeFS sees it: size, checksum, content type and user metadata."""
    return (
        obj is not None
        and obj.size == size
        and obj.checksum.lower() == md5
        and obj.content_type == OCTET_STREAM
        and not obj.metadata
    )


def _mismatch(view: dict[str, RemoteObject], pub: Publication) -> list[str]:
    wanted = pub.wanted()
    differing = [path for path, (size, md5) in wanted.items() if not _same(view.get(path), size, md5)]
    return sorted(differing + [path for path in view if path not in wanted])


def _holds(view: dict[str, RemoteObject], pub: Publication) -> bool:
    return not _mismatch(view, pub)


def _stage(
    store: LakeFSClient, pub: Publication, work: str, current: dict[str, RemoteObject], show: Callable[[str], None]
) -> bool:
    """Make the work branch hold exactly the files and the manifest; True when anything was staged."""
    sending = [rel for rel, f in pub.files.items() if not _same(current.get(pub.prefix + rel), f.size, f.md5)]
    stale = sorted(path for path in current if path.startswith(pub.prefix) and path[len(pub.prefix) :] not in pub.files)
    size, md5 = pub.wanted()[pub.manifest_path]
    manifest_differs = not _same(current.get(pub.manifest_path), size, md5)
    if not sending and not stale and not manifest_differs:
        return False
    show(f"publishing {len(pub.files)} files to {pub.where} on work branch {work}: {len(sending)} to upload")
    progress = Progress(sum(pub.files[rel].size for rel in sending), f"upload to {pub.repo}/{work}/{pub.prefix}", show)
    for rel in sorted(sending):
        store.put_object(pub.repo, work, pub.prefix + rel, pub.files[rel].path, progress)
    for path in stale:
        store.delete_object(pub.repo, work, path)
    if manifest_differs:
        with tempfile.TemporaryDirectory() as scratch:
            manifest = Path(scratch) / "manifest.json"
            manifest.write_bytes(pub.manifest)
            store.put_object(pub.repo, work, pub.manifest_path, manifest, Progress(size, "manifest", log.debug))
    return True


def _commit(store: LakeFSClient, pub: Publication, work: str, staged: bool) -> str:
    """The commit on the work branch that holds the staged files (made now, or by an earlier attempt)."""
    if not staged and not store.has_uncommitted(pub.repo, work):
        return store.branch_head(pub.repo, work) or ""

    def landed() -> str | None:
        return None if store.has_uncommitted(pub.repo, work) else store.branch_head(pub.repo, work)

    return _once_or_landed(
        store,
        f"commit to lakefs://{pub.repo}/{work}",
        lambda: store.commit_once(pub.repo, work, pub.message, pub.metadata),
        landed,
    )


def _audit(store: LakeFSClient, pub: Publication, commit: str) -> dict[str, str]:
    """Check the commit holds exactly the files; returns {path: change} of what merging it brings."""
    mismatch = _mismatch(_view(store, pub, commit), pub)
    if mismatch:
        raise StorageError(
            f"audit of commit {commit[:12]} for {pub.where} failed: lakeFS holds something else than was sent "
            f"for {', '.join(mismatch[:5])} (sizes or checksums differ)"
        )
    changes = dict(store.diff(pub.repo, pub.branch, commit, three_dot=True))
    conflicts = sorted(path for path, kind in changes.items() if kind == "conflict")
    if conflicts:
        raise MergeConflictError(f"{pub.branch} changed {', '.join(conflicts[:5])} since the publish began")
    foreign = sorted(path for path in changes if not path.startswith(pub.prefix) and path != pub.manifest_path)
    if foreign:
        raise StorageError(
            f"audit of commit {commit[:12]} for {pub.where} failed: it would also change {', '.join(foreign[:5])}, "
            "outside the prefix (something else wrote to the work branch)"
        )
    return {path: kind for path, kind in changes.items() if path != pub.manifest_path}


def _merge(store: LakeFSClient, pub: Publication, commit: str) -> str:
    def landed() -> str | None:  # our merge, or an identical publish: either way a commit that holds them
        head = store.branch_head(pub.repo, pub.branch)
        return head if head and _holds(_view(store, pub, head), pub) else None

    return _once_or_landed(
        store,
        f"merge into {pub.where}",
        lambda: store.squash_merge_once(pub.repo, commit, pub.branch, pub.message, pub.metadata),
        landed,
    )


def _once_or_landed(store: LakeFSClient, what: str, attempt: Callable[[], T], landed: Callable[[], T | None]) -> T:
    """Run a request that must not happen twice: after a transient failure, look whether it landed
    before trying again (at most the retry policy's number of attempts)."""
    policy = store.retry
    for number in range(policy.attempts):
        try:
            return attempt()
        except TransientError as exc:
            found = landed()
            if found is not None:
                return found
            if number == policy.attempts - 1:
                raise TransientError(f"{what}: gave up after {policy.attempts} attempts: {exc}") from exc
            time.sleep(policy.delay(number))
    raise AssertionError("unreachable")
