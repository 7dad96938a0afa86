"""An image started as a device starts it, and asked about photos through its own endpoints.

The container gets no network (`--network none`), `--init` and the image's own user; the sealing
key is put where the runtime looks by default (/run/secrets/edge-keys/<key id>, mode 0444 so that
the image's uid 10001 reads it), with the photos and the client beside it under /acceptance. They
are copied into the created container before it starts (the archive API), not bind-mounted, so
that a remote engine (a dind sidecar, DOCKER_HOST=tcp://...) works as well as a local one; the
container, and the key with it, is removed at the end. The questions are asked from inside the
container (`docker exec` of `device_client.py` with the image's Python): no port is published.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import logging
import statistics
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import numpy as np
from docker.types import Mount

from edge_deploy.acceptance.photos import Photo
from edge_deploy.errors import EdgeDeployError
from edge_deploy.runtime.config import DEFAULT_KEY_DIR

log = logging.getLogger(__name__)

CLIENT = Path(__file__).with_name("device_client.py")
MOUNT = "/acceptance"
PORT = 8080
STOP_TIMEOUT_S = 10


class DeviceRunError(EdgeDeployError):
    """The image could not be run or asked as a device."""


@dataclass(frozen=True)
class DeviceRun:
    answers: dict[str, dict[str, Any]]  # photo name -> /v1/predict answer
    errors: dict[str, str]  # photo name -> why it got no answer
    startup_s: float  # container start to the runtime's /readyz answering 200
    latencies_ms: list[float]
    oip_ready: bool
    oip_model: dict[str, Any] | None
    tensors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # photo -> OIP outputs

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0


@dataclass(frozen=True)
class DeviceSetup:
    """How the engine runs the image: natively, or under an emulator (`entrypoint` prefix and mounts)."""

    platform: str
    entrypoint_prefix: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    python: str = "python3"  # under an emulator: its absolute path in the image


def run_as_device(
    client: docker.DockerClient,
    image: str,
    keys: Mapping[str, str],
    photos: Sequence[Photo],
    query: Mapping[str, str],
    model_name: str,
    *,
    setup: DeviceSetup,
    repeats: int = 1,
    tensors: Mapping[str, Path] | None = None,
    environment: Mapping[str, str] | None = None,
) -> DeviceRun:
    """Start `image`, ask it about every photo (`repeats` times each), stop and remove it.

    `keys`: key id -> base64 key text, given to the runtime as files. `tensors`: photo name -> its
    .npz of input tensors, sent to the OIP endpoint (the outputs come back in `DeviceRun.tensors`).
    `environment`: what the device sets besides (e.g. the requirement of a signed model)."""
    tensors = dict(tensors or {})
    container = None
    try:
        container = client.containers.create(
            image,
            network_mode="none",
            init=True,
            mounts=list(setup.mounts),
            entrypoint=_entrypoint(client, image, setup),
            platform=setup.platform,
            environment=dict(environment or {}),
        )
        if not container.put_archive("/", _files_archive(keys, photos, tensors)):
            raise DeviceRunError(f"cannot copy the key and the photos into a container of {image}")
        container.start()
        started_at = _started_at(container)
        job = {
            "port": PORT,
            "model": model_name,
            "photos": [{"name": p.name, "media_type": p.media_type} for p in photos],
            "query": dict(query),
            "repeats": repeats,
            "tensors": sorted(tensors),
        }
        command = [*setup.entrypoint_prefix, setup.python, f"{MOUNT}/device_client.py", json.dumps(job)]
        try:
            code, (stdout, stderr) = container.exec_run(command, demux=True)
        except docker.errors.APIError:
            # a runtime that refuses to start (a key, a signature) can exit before it is asked:
            # its own reason, in its log, is the answer, not Docker's "is not running"
            container.reload()
            if container.status != "running":
                raise DeviceRunError(_stopped(image, container)) from None
            raise
        if code != 0:
            raise DeviceRunError(
                f"asking {image} as a device failed: {_last_line(stderr)}; the runtime's log ends: "
                f"{_log_tail(container)}"
            )
        result = json.loads(stdout)
        return DeviceRun(
            answers=result["answers"],
            errors=result["errors"],
            startup_s=max(0.0, result["ready_at"] - started_at),
            latencies_ms=result["latencies_ms"],
            oip_ready=result["oip_ready"],
            oip_model=result["oip_model"],
            tensors={photo: _unpack(text) for photo, text in result["tensors"].items()},
        )
    except docker.errors.DockerException as exc:
        raise DeviceRunError(f"cannot run {image} as a device: {exc}") from None
    finally:
        if container is not None:
            _remove(container)


def _unpack(text: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(base64.b64decode(text))) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _files_archive(keys: Mapping[str, str], photos: Sequence[Photo], tensors: Mapping[str, Path]) -> bytes:
    """A tar of the key files, the photos, their tensors and the client, root-owned and readable by any user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in (str(DEFAULT_KEY_DIR), MOUNT, f"{MOUNT}/photos", f"{MOUNT}/tensors"):
            entry = tarfile.TarInfo(directory.lstrip("/"))
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(entry)
        files = {f"{DEFAULT_KEY_DIR}/{key_id}": text.encode() for key_id, text in keys.items()}
        files[f"{MOUNT}/device_client.py"] = CLIENT.read_bytes()
        files.update({f"{MOUNT}/photos/{photo.name}": photo.body for photo in photos})
        files.update({f"{MOUNT}/tensors/{photo}.npz": path.read_bytes() for photo, path in tensors.items()})
        for path, data in files.items():
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.size, entry.mode = len(data), 0o444
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def _entrypoint(client: docker.DockerClient, image: str, setup: DeviceSetup) -> list[str] | None:
    if not setup.entrypoint_prefix:
        return None  # the image's own
    own = list(client.images.get(image).attrs["Config"].get("Entrypoint") or [])
    if own and own[0] == "python3":
        own[0] = setup.python  # an emulator takes a path, not a name to look up
    return [*setup.entrypoint_prefix, *own]


def _started_at(container) -> float:
    container.reload()
    text = container.attrs["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    whole, _, fraction = text.rstrip("Z").partition(".")
    started = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    return started + float(f"0.{fraction[:6] or 0}")


def _stopped(image: str, container) -> str:
    status = container.attrs.get("State", {}).get("ExitCode")
    return f"{image} stopped (exit status {status}) before it was asked; the runtime's log ends: {_log_tail(container)}"


def _log_tail(container, lines: int = 5) -> str:
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace").strip()
    except docker.errors.DockerException:
        return "(no log)"
    return " | ".join(text.splitlines()[-lines:]) or "(empty)"


def _last_line(data: bytes | None) -> str:
    lines = (data or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def _remove(container) -> None:
    with contextlib.suppress(docker.errors.DockerException):  # already stopped: remove it anyway
        container.stop(timeout=STOP_TIMEOUT_S)
    try:
        container.remove(force=True)
    except docker.errors.DockerException as exc:
        log.warning("could not remove the acceptance container %s: %s", container.short_id, exc)
