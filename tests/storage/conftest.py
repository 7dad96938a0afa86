"""Shared helpers for the storage tests: a store on the test lakeFS, and a way to seed a branch."""

from pathlib import Path

import lakefs_sdk
import pytest

from edge_deploy.config import Settings
from edge_deploy.retry import RetryPolicy
from edge_deploy.storage import LakeFSStore

# Fast backoff: the retry tests would otherwise sleep for seconds.
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def store_factory(lakefs_server):
    """Makes stores on the test lakeFS (one per concurrent publisher: each counts its own calls)."""
    return lambda: LakeFSStore(Settings.from_env(lakefs_server.env()).require_lakefs(), retry=FAST_RETRY)


@pytest.fixture
def store(store_factory) -> LakeFSStore:
    return store_factory()


@pytest.fixture
def seed(lakefs_server, tmp_path_factory):
    """seed(repo, {path: bytes}, branch="main", message=...) -> commit id, through the real SDK."""
    api = lakefs_server.api()
    staging = tmp_path_factory.mktemp("seed")  # not in tmp_path: tests check it stays empty

    def write(repo: str, files: dict[str, bytes], branch: str = "main", message: str = "seed") -> str:
        objects = lakefs_sdk.ObjectsApi(api)
        for number, (path, data) in enumerate(files.items()):
            local = staging / f"seed-{number}"
            local.write_bytes(data)
            objects.upload_object(repo, branch, path, content=str(local))
        return lakefs_sdk.CommitsApi(api).commit(repo, branch, lakefs_sdk.CommitCreation(message=message)).id

    return write


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def contents_at(lakefs_server, repo: str, ref: str, prefix: str = "edge/") -> dict[str, bytes]:
    """{path below prefix: bytes} of everything `ref` holds under `prefix`, read through the API."""
    with lakefs_server.api() as api:
        objects = lakefs_sdk.ObjectsApi(api)
        listed = objects.list_objects(repo, ref, prefix=prefix, amount=1000).results
        return {item.path[len(prefix) :]: bytes(objects.get_object(repo, ref, item.path)) for item in listed}


def first_parent_log(lakefs_server, repo: str, branch: str = "main") -> list[lakefs_sdk.Commit]:
    with lakefs_server.api() as api:
        return lakefs_sdk.RefsApi(api).log_commits(repo, branch, first_parent=True).results


def branch_names(lakefs_server, repo: str) -> list[str]:
    with lakefs_server.api() as api:
        return [ref.id for ref in lakefs_sdk.BranchesApi(api).list_branches(repo).results]


def head_of(lakefs_server, repo: str, branch: str = "main") -> str:
    with lakefs_server.api() as api:
        return lakefs_sdk.BranchesApi(api).get_branch(repo, branch).commit_id
