"""The work branches a publish stages and commits on, named so that they can be found again.

`edge-deploy-publish-{run}-{target}-{created}`: `run` is the run id (made safe for a branch name),
`target` eight hex digits of the target branch and prefix, `created` the Unix time the branch was
made. A rerun of the same run finds its own leftover by the first two; anyone can tell an
abandoned branch by the last (no publish lives for a day: the publish task times out in an hour).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_deploy.errors import EdgeDeployError

if TYPE_CHECKING:
    from edge_deploy.storage.client import LakeFSClient

log = logging.getLogger(__name__)

WORK_BRANCH_PREFIX = "edge-deploy-publish-"
STALE_AFTER_SECONDS = 24 * 3600
UNSAFE = re.compile(r"[^\w-]+")
NAME = re.compile(rf"^{WORK_BRANCH_PREFIX}(?P<run>[\w-]+)-(?P<target>[0-9a-f]{{8}})-(?P<created>\d+)$")


@dataclass(frozen=True)
class WorkBranch:
    name: str
    run: str
    target: str
    created: int

    @classmethod
    def parse(cls, name: str) -> WorkBranch | None:
        found = NAME.match(name)
        if found is None:
            return None
        return cls(name, found["run"], found["target"], int(found["created"]))

    def age(self, now: float) -> float:
        return now - self.created


def run_label(run_id: str) -> str:
    """The run id as branch names allow it (letters, digits, `_` and `-`), at most 64 characters."""
    label = UNSAFE.sub("-", run_id).strip("-")[:64]
    if not label:
        raise EdgeDeployError(f"run id {run_id!r} has no letters or digits to name a work branch after")
    return label


def target_key(branch: str, prefix: str) -> str:
    return hashlib.sha256(f"{branch}\n{prefix}".encode()).hexdigest()[:8]


def work_branch_name(run_id: str, branch: str, prefix: str, now: float | None = None) -> str:
    created = int(time.time() if now is None else now)
    return f"{WORK_BRANCH_PREFIX}{run_label(run_id)}-{target_key(branch, prefix)}-{created}"


def list_work_branches(store: LakeFSClient, repo: str, run_id: str | None = None) -> list[WorkBranch]:
    """Work branches in `repo` (of one run when `run_id` is given), oldest first."""
    prefix = WORK_BRANCH_PREFIX + (run_label(run_id) + "-" if run_id else "")
    found = [WorkBranch.parse(name) for name, _ in store.list_branches(repo, prefix)]
    run = run_label(run_id) if run_id else None
    branches = [branch for branch in found if branch is not None and run in (None, branch.run)]
    return sorted(branches, key=lambda branch: (branch.created, branch.name))


def remove_work_branches(
    store: LakeFSClient,
    repo: str,
    run_id: str | None = None,
    older_than: float = STALE_AFTER_SECONDS,
    dry_run: bool = False,
    now: float | None = None,
) -> list[str]:
    """Delete abandoned work branches: those of `run_id` whatever their age, else those older than `older_than`.

    Returns the names deleted (or, with `dry_run`, that would be).
    """
    now = time.time() if now is None else now
    doomed = [
        branch.name
        for branch in list_work_branches(store, repo, run_id)
        if run_id is not None or branch.age(now) > older_than
    ]
    if not dry_run:
        for name in doomed:
            store.delete_branch(repo, name)
            log.info("deleted abandoned work branch lakefs://%s/%s", repo, name)
    return doomed
