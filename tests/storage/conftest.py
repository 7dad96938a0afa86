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
def store(lakefs_server) -> LakeFSStore:
    return LakeFSStore(Settings.from_env(lakefs_server.env()).require_lakefs(), retry=FAST_RETRY)


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
