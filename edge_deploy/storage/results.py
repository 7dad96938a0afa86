"""What the storage stage hands to the next stage: files with digests, provenance, publish results.

Standard library only: these dataclasses travel between Flyte tasks, and importing them must not
load the lakeFS and S3 clients.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_deploy.errors import StorageError

HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One file of a model or artifact directory; `path` is relative to the directory."""

    path: str
    size: int
    sha256: str


LOCAL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class Provenance:
    """Exactly what was downloaded: the commit the ref pointed at, and every file's digest."""

    repo: str
    ref: str
    commit_id: str
    prefix: str
    files: list[FileEntry] = field(default_factory=list)
    local: bool = False  # a local directory (`ref` is its path, `repo` the model's name), not lakeFS

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def uri(self) -> str:
        return f"lakefs://{self.repo}/{self.commit_id}/{self.prefix}"


@dataclass(frozen=True)
class UploadResult:
    """A publish: `commit_id` is the commit on `branch` that holds exactly `files` under `prefix`.

    It is the merge commit the publish made, or, when the branch already held exactly these files
    (`committed` false), the branch's head commit. `uploaded` and `deleted` are the paths under the
    prefix that the publish changed and removed.
    """

    repo: str
    branch: str
    prefix: str
    commit_id: str
    committed: bool
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)


@dataclass(frozen=True)
class LocalFile:
    """A file to publish: its size and digests (sha256 for records, MD5 to compare with lakeFS)."""

    path: Path
    size: int
    sha256: str
    md5: str


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, read in blocks."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def local_files(root: Path, what: str) -> dict[str, LocalFile]:
    """{relative posix path: LocalFile} of every regular file below `root`; `what` names it in errors."""
    root = Path(root)
    if not root.is_dir():
        raise StorageError(f"{what} {root} does not exist or is not a directory")
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha256, md5 = file_digests(path)
            found[path.relative_to(root).as_posix()] = LocalFile(path, path.stat().st_size, sha256, md5)
    if not found:
        raise StorageError(f"{what} {root} holds no files")
    return found


def describe_local_directory(root: Path) -> Provenance:
    """A local model directory described like a lakeFS download (the embedded default's source).

    Its "commit id" is the sha256 of its listing (paths and file digests), so the same content
    always gets the same id, as a lakeFS commit would.
    """
    files = [FileEntry(rel, f.size, f.sha256) for rel, f in local_files(root, "local model directory").items()]
    listing = "\n".join(f"{f.path}\t{f.size}\t{f.sha256}" for f in files)
    digest = hashlib.sha256(listing.encode()).hexdigest()
    return Provenance(local_model_name(root), str(root), digest, "", files, local=True)


def local_model_name(root: Path) -> str:
    """The name a local model directory is recorded (and its images named) by: its manifest's `name`,
    else the directory's own name (`edge-deploy sample rtmdet-tiny DIR` -> DIR's name), when that is
    a plain name (lower-case letters, digits and dashes); else "local". The manifest is read without
    a YAML parser (this module is stdlib only): its top-level `name:` line."""
    for manifest in ("manifest.yaml", "manifest.yml", "manifest.json"):
        path = root / manifest
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        name = None
        if manifest.endswith(".json"):
            with contextlib.suppress(ValueError, AttributeError):
                name = json.loads(text).get("name")
        elif found := re.search(r"""^name:\s*["']?([^"'\s#]+)["']?\s*(?:#.*)?$""", text, flags=re.MULTILINE):
            name = found.group(1)
        if isinstance(name, str) and LOCAL_NAME.fullmatch(name):
            return name
    return root.name if LOCAL_NAME.fullmatch(root.name) else "local"
