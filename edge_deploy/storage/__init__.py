"""The lakeFS storage stage: download a model directory at a pinned commit, publish artifacts.

- `LakeFSStore.download`: a ref resolved to its commit, every file read at that commit through
  the S3 gateway, checked against lakeFS's size and checksum, the directory appearing atomically
  (`edge_deploy.storage.download`).
- `LakeFSStore.upload`: write-audit-publish to a branch through a work branch, one audited commit
  and one merge (`edge_deploy.storage.publish`); `edge_deploy.storage.work_branches` finds and
  removes abandoned work branches.

The dataclasses that travel between tasks (`Provenance`, `UploadResult`, ...) import only the
standard library; `LakeFSStore` loads lakefs-sdk and boto3 when it is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_deploy.storage.paths import LakeFSLocation, normalize_prefix, safe_relative_path
from edge_deploy.storage.results import FileEntry, Provenance, UploadResult, describe_local_directory, file_digests

if TYPE_CHECKING:
    from edge_deploy.storage.store import LakeFSStore

__all__ = [
    "FileEntry",
    "LakeFSLocation",
    "LakeFSStore",
    "Provenance",
    "UploadResult",
    "describe_local_directory",
    "file_digests",
    "normalize_prefix",
    "safe_relative_path",
]


def __getattr__(name: str):
    if name == "LakeFSStore":  # the only name that needs lakefs-sdk and boto3
        from edge_deploy.storage.store import LakeFSStore

        return LakeFSStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
