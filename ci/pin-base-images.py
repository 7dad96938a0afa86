#!/usr/bin/env python3
"""Pin the base and job images by digest: images/base-images.env, and .gitlab-ci.yml's variables of the same names.

    .venv/bin/python ci/pin-base-images.py [--check] [--insecure HOST[:PORT]]...

For each NAME=REFERENCE in images/base-images.env, asks REFERENCE's registry for the digest its tag points to
now (for a multi-platform image, the index's digest) and writes NAME=repository:tag@digest in both files. A
reference that is already pinned is pinned again to what its tag points to now: that is how a base's fixes are
taken in (review the diff, commit it). Nothing is written unless every reference resolves. Docker Hub is asked
anonymously; REGISTRY_USERNAME / REGISTRY_PASSWORD are used where given.

--check   change nothing; exit 1 naming every reference that is not pinned (a release refuses those bases).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_deploy.config import RegistrySettings, Secret  # noqa: E402
from edge_deploy.errors import EdgeDeployError  # noqa: E402
from edge_deploy.images.registry import RegistryClient  # noqa: E402

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reference = line.partition("=")
            pins[name.strip()] = reference.strip()
    return pins


def split_reference(reference: str) -> tuple[str, str, str]:
    """(registry host, repository path, tag) of host/path:tag[@digest], Docker Hub's defaults filled in."""
    name = reference.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    path, _, tag = path.rpartition(":") if ":" in path else (path, "", "latest")
    if host in DOCKER_HUB:
        host, path = "registry-1.docker.io", path if "/" in path else f"library/{path}"
    return host, path, tag


def resolve(reference: str, insecure: set[str]) -> str:
    host, path, tag = split_reference(reference)
    password = os.environ.get("REGISTRY_PASSWORD")
    settings = RegistrySettings(
        host, os.environ.get("REGISTRY_USERNAME"), Secret(password) if password else None, host in insecure, None
    )
    digest = RegistryClient(settings).manifest_digest(path, tag)
    if not digest:
        raise EdgeDeployError(f"{reference}: the registry {host} has no tag {tag!r} in {path}")
    return f"{reference.split('@', 1)[0]}@{digest}"


def rewrite(path: Path, pattern: str, pinned: dict[str, str]) -> None:
    """Replace each NAME's value in `path` (lines matching `pattern` % NAME), through a temp file."""
    text = path.read_text()
    for name, reference in pinned.items():
        text = re.sub(pattern % re.escape(name), rf"\g<1>{reference}", text, flags=re.MULTILINE)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--insecure", action="append", default=[], help="a registry host[:port] spoken to over HTTP")
    parser.add_argument("--env-file", type=Path, default=ROOT / "images" / "base-images.env")
    parser.add_argument("--pipeline", type=Path, default=ROOT / ".gitlab-ci.yml")
    args = parser.parse_args()
    pins = read_pins(args.env_file)
    if args.check:
        loose = [f"{name}={reference}" for name, reference in pins.items() if not DIGEST.search(reference)]
        for entry in loose:
            print(f"not pinned by digest: {entry} ({args.env_file.name})", file=sys.stderr)
        return 1 if loose else 0
    try:
        pinned = {name: resolve(reference, set(args.insecure)) for name, reference in pins.items()}
    except EdgeDeployError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return 1
    rewrite(args.env_file, r"^(%s=).*$", pinned)
    rewrite(args.pipeline, r"^(  %s: ).*$", pinned)
    for name, reference in pinned.items():
        print(f"{name}={reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
