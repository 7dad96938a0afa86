"""Where things are in lakeFS: `lakefs://` locations and the prefixes and keys below them (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from edge_deploy.errors import StorageError


@dataclass(frozen=True)
class LakeFSLocation:
    """`lakefs://{repo}/{ref}/{prefix}`: a directory in a lakeFS repository at a ref."""

    repo: str
    ref: str
    prefix: str = "model/"

    def __post_init__(self) -> None:
        if not self.repo or not self.ref:
            raise StorageError(f"a lakeFS location needs a repository and a ref, got {self.uri}")
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))

    @property
    def uri(self) -> str:
        return f"lakefs://{self.repo}/{self.ref}/{self.prefix}"

    @classmethod
    def parse(cls, uri: str, default_prefix: str = "model/") -> LakeFSLocation:
        if not uri.startswith("lakefs://"):
            raise StorageError(f"not a lakefs:// URI: {uri!r}")
        repo, _, rest = uri.removeprefix("lakefs://").partition("/")
        ref, _, prefix = rest.partition("/")
        return cls(repo=repo, ref=ref, prefix=prefix or default_prefix)


def normalize_prefix(prefix: str) -> str:
    """'model' -> 'model/', '' -> '' (the repository root); rejects '..' and absolute prefixes."""
    prefix = prefix.strip()
    if prefix in ("", "/"):
        return ""
    if prefix.startswith("/") or any(part in ("", ".", "..") for part in prefix.rstrip("/").split("/")):
        raise StorageError(f"invalid lakeFS prefix {prefix!r}: use a relative path like 'model/'")
    return prefix.rstrip("/") + "/"


def safe_relative_path(key: str, prefix: str) -> PurePosixPath:
    """The part of `key` below `prefix`, refused if it could land outside the target directory."""
    relative = key[len(prefix) :]
    parts = relative.split("/")
    if (
        not key.startswith(prefix)
        or not relative
        or relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise StorageError(f"refusing object key {key!r}: it would escape the target directory")
    return PurePosixPath(*parts)
