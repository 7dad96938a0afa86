"""Running an image of another architecture on this host: qemu-user, without binfmt registration.

The host's static `qemu-<arch>-static` is bind-mounted into the container and put in front of the
image's entrypoint (and of every `docker exec`), so nothing is registered with the kernel. Under
qemu-user 7.2, ONNX Runtime's CPU detection crashes on the host's x86 /proc/cpuinfo, so an
aarch64 one (an Arm Neoverse N1's) is bind-mounted over it. Bind mounts need the engine to share
this host's file system: with a remote engine (DOCKER_HOST=tcp://..., a dind sidecar) emulation is
not attempted and the acceptance says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors
from docker.types import Mount

from edge_deploy.acceptance.device import DeviceSetup
from edge_deploy.platforms import OciPlatform

QEMU_BINARIES = {"arm64": "qemu-aarch64-static"}
AARCH64_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 50.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
)
CPUINFO = {"arm64": AARCH64_CPUINFO}
IN_CONTAINER = "/usr/bin/edge-deploy-qemu"


def emulated_setup(
    client: docker.DockerClient, image: str, target: OciPlatform, host: OciPlatform
) -> DeviceSetup | str:
    """The setup that runs `image` under qemu-user here, or why it cannot be run on this host."""
    cannot = f"this build host ({host}) cannot run {target} images"
    binary = QEMU_BINARIES.get(target.architecture)
    if host.architecture != "amd64" or binary is None:
        return f"{cannot}: no emulation of {target.architecture} on {host.architecture}"
    qemu = shutil.which(binary)
    if qemu is None:
        return f"{cannot}: {binary} is not installed (Debian: apt-get install qemu-user-static)"
    if not client.api.base_url.startswith("http+docker://"):  # a unix socket: the engine is on this host
        return f"{cannot}: the Docker engine at {client.api.base_url} is remote, and emulation bind-mounts {binary}"
    python = _python_of(client, image)
    if python is None:
        return f"{cannot}: the image has no python3 on its PATH"
    mounts = [
        Mount(IN_CONTAINER, qemu, type="bind", read_only=True),
        Mount("/proc/cpuinfo", str(_cpuinfo_file(target.architecture)), type="bind", read_only=True),
    ]
    return DeviceSetup(str(target), entrypoint_prefix=[IN_CONTAINER], mounts=mounts, python=python)


def _cpuinfo_file(architecture: str) -> Path:
    path = Path(tempfile.gettempdir(), f"edge-deploy-{architecture}-cpuinfo")
    if not path.is_file() or path.read_text() != CPUINFO[architecture]:
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(CPUINFO[architecture])
        temp.chmod(0o444)
        temp.replace(path)
    return path


def _python_of(client: docker.DockerClient, image: str) -> str | None:
    """The absolute path of python3 in the image (qemu-user does not search PATH), looked up in a
    created, never started, container."""
    config = client.images.get(image).attrs.get("Config") or {}
    path = next((e.split("=", 1)[1] for e in config.get("Env") or [] if e.startswith("PATH=")), "/usr/bin:/bin")
    container = client.containers.create(image, entrypoint=["/nonexistent"], network_mode="none")
    try:
        for directory in path.split(":"):
            with contextlib.suppress(docker.errors.NotFound):
                container.get_archive(f"{directory}/python3")
                return f"{directory}/python3"
        return None
    finally:
        container.remove(force=True)
