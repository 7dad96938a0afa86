"""A Python base image made without pulling anything: debootstrap + `docker import` (or `docker load`).

For builders that cannot reach a registry (air-gapped sites, this project's tests and demo): a
Debian bookworm minbase root filesystem with python3 and CA certificates, from the machine's own
Debian mirror, imported into the engine under a fixed reference and reused from then on.

For another architecture (an arm64 base on an x86_64 host) no emulation is needed to make it:
`debootstrap --foreign` downloads that architecture's packages, every one is unpacked with
`dpkg-deb -x` (its maintainer scripts, which would need the foreign CPU, are not run: python3 needs
none of them), and the root file system is `docker load`ed as one layer under an image config
that names the architecture. The result runs under qemu-user (the acceptance stage).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import tarfile
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


# Debian architecture -> (OCI architecture, variant)
FOREIGN_ARCHITECTURES = {"arm64": ("arm64", "v8")}


def ensure_python_base(
    client: docker.DockerClient,
    reference: str = DEFAULT_REFERENCE,
    labels: dict[str, str] | None = None,
    architecture: str | None = None,
) -> str:
    """The image id of `reference`, made with debootstrap first when the engine does not have it.
    `architecture`: a Debian architecture other than the host's (see FOREIGN_ARCHITECTURES)."""
    try:
        return client.images.get(reference).id
    except docker.errors.ImageNotFound:
        pass
    if architecture is not None:
        return _ensure_foreign_base(client, reference, labels or {}, architecture)
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


def _ensure_foreign_base(client: docker.DockerClient, reference: str, labels: dict[str, str], architecture: str) -> str:
    if architecture not in FOREIGN_ARCHITECTURES:
        raise BaseImageMissingError(f"no foreign base for architecture {architecture!r}; known: arm64")
    for tool in ("debootstrap", "dpkg-deb"):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            raise BaseImageMissingError(f"base image {reference} is missing and {tool} is not installed to make it")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="python-base-") as scratch:
        rootfs, layer = Path(scratch, "rootfs"), Path(scratch, "layer.tar")
        debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        command = [debootstrap, "--foreign", f"--arch={architecture}", "--variant=minbase"]
        command += ["--include=python3,ca-certificates", "bookworm", str(rootfs), debian_mirror()]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BaseImageMissingError(
                f"debootstrap --foreign failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}"
            )
        for package in sorted((rootfs / "var/cache/apt/archives").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(package), str(rootfs)], check=True)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "debootstrap"):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."], check=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        oci_architecture, variant = FOREIGN_ARCHITECTURES[architecture]
        image = Path(scratch, "image.tar")
        write_image_archive(image, reference, layer, oci_architecture, variant, labels)
        with image.open("rb") as archive:
            client.images.load(archive)
    log.info("made %s (%s) with debootstrap --foreign in %.0fs", reference, architecture, time.monotonic() - started)
    return client.images.get(reference).id


def write_image_archive(
    path: Path, reference: str, layer: Path, architecture: str, variant: str | None, labels: dict[str, str]
) -> None:
    """A `docker save`-format archive of one layer (a tar of a root file system) under a config that
    says linux/`architecture`, for `docker load`."""
    digest = hashlib.sha256()
    with layer.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    diff_id = f"sha256:{digest.hexdigest()}"
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": ["python3"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "edge_deploy.images.base: debootstrap --foreign"}],
    }
    if variant:
        config["variant"] = variant
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
        archive.add(str(layer), arcname="layer.tar")
