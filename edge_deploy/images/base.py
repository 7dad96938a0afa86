"""A Python base image made without pulling anything: debootstrap + `docker import`.

For builders that cannot reach a registry (air-gapped sites, this project's tests and demo): a
Debian bookworm minbase root filesystem with python3 and CA certificates, from the machine's own
Debian mirror, imported into the engine under a fixed reference and reused from then on.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

from edge_deploy.images.errors import BaseImageMissingError

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = "edge-deploy/python-base:bookworm-minbase"
APT_SOURCE_FILES = (Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*")))
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def debian_mirror(source_files: tuple[Path, ...] = APT_SOURCE_FILES) -> str:
    """The first Debian archive URI of the machine's apt sources (one-line or deb822 format)."""
    for path in source_files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        uris = re.findall(r"^\s*URIs:\s*(\S+)", text, flags=re.M) + re.findall(
            r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M
        )
        for uri in uris:
            if re.search(r"/debian/?$", uri):
                return uri
    raise BaseImageMissingError("no Debian mirror (a URI ending in /debian) in the apt sources; add one")


def ensure_python_base(
    client: docker.DockerClient, reference: str = DEFAULT_REFERENCE, labels: dict[str, str] | None = None
) -> str:
    """The image id of `reference`, made with debootstrap first when the engine does not have it."""
    try:
        return client.images.get(reference).id
    except docker.errors.ImageNotFound:
        pass
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise BaseImageMissingError(
            f"base image {reference} is missing and debootstrap is not installed to make it: "
            "apt-get install debootstrap, or load a Python 3.11 base under that name"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="python-base-") as scratch:
        archive = _debootstrap_archive(debootstrap, Path(scratch))
        repository, tag = reference.rsplit(":", 1)
        changes = [f"ENV {PATH_ENV}", 'CMD ["python3"]'] + [f"LABEL {k}={v}" for k, v in (labels or {}).items()]
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag, changes=changes)
    log.info("made %s with debootstrap in %.0fs", reference, time.monotonic() - started)
    return client.images.get(reference).id


def _debootstrap_archive(debootstrap: str, scratch: Path) -> Path:
    rootfs, archive = scratch / "rootfs", scratch / "rootfs.tar"
    command = [debootstrap, "--variant=minbase", "--include=python3,ca-certificates", "bookworm", str(rootfs)]
    done = subprocess.run([*command, debian_mirror()], capture_output=True, text=True)
    if done.returncode != 0:
        raise BaseImageMissingError(f"debootstrap failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    # apt lists and caches are not part of a runtime base
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / leftover, ignore_errors=True)
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], check=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    return archive
