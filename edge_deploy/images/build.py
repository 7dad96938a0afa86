"""Building one edge image with the docker SDK (the engine's legacy builder; COPY-only Dockerfile).

A build is untagged until it succeeds; a failed build removes every image it created, so it leaves no
dangling images or tags behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import docker
import docker.errors

from edge_deploy.images.context import BuildContext
from edge_deploy.images.errors import BaseImageMissingError, BuildError, EngineUnavailableError
from edge_deploy.platforms import OciPlatform, host_platform
from edge_deploy.sbom import Inventory, read_inventory

log = logging.getLogger(__name__)

ENGINE_TIMEOUT_SECONDS = 900
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")


@dataclass(frozen=True)
class BaseImage:
    reference: str
    image_id: str  # sha256:<config digest>: what the content tag hashes
    platform: OciPlatform


@dataclass(frozen=True)
class BuiltImage:
    image_id: str
    size: int  # uncompressed, as the engine reports it


def engine_client(timeout: int = ENGINE_TIMEOUT_SECONDS) -> docker.DockerClient:
    """A client of the engine that DOCKER_HOST (or the default socket) points at, checked with a ping."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (the default)"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailableError(
            f"no Docker engine answers at {where} ({_first_line(exc)}); start dockerd, or point DOCKER_HOST at a "
            "running engine, e.g. DOCKER_HOST=unix:///run/docker.sock or DOCKER_HOST=tcp://builder:2376"
        ) from None
    return client


def engine_platform(client: docker.DockerClient) -> OciPlatform:
    """The platform the engine builds on (it may be remote: DOCKER_HOST)."""
    return host_platform(client.info())


def resolve_base(client: docker.DockerClient, reference: str, platform: OciPlatform, pull: bool = True) -> BaseImage:
    """The base image, from the engine (or pulled for `platform`), checked to be for `platform`."""
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        image, why = _pull_base(client, reference, platform) if pull else (None, "pulling is off")
        if image is None:
            raise BaseImageMissingError(
                f"base image {reference} for {platform} is not in the Docker engine and could not be pulled ({why}); "
                f"pull or load it (docker pull --platform {platform} {reference}) or choose another base"
            ) from None
    found = OciPlatform(
        image.attrs.get("Os", "linux"),
        image.attrs.get("Architecture", ""),
        image.attrs.get("Variant") or OciPlatform.parse(f"linux/{image.attrs.get('Architecture', 'amd64')}").variant,
    )
    if (found.os, found.architecture) != (platform.os, platform.architecture) or (
        platform.variant and found.variant and found.variant != platform.variant
    ):
        # the legacy builder takes the architecture from the base: a wrong base makes a wrong image silently
        raise BaseImageMissingError(f"base image {reference} is {found}, but the target platform is {platform}")
    return BaseImage(reference, image.id, platform)


def build_image(
    client: docker.DockerClient,
    context: BuildContext,
    base: BaseImage,
    labels: Mapping[str, str],
    build_args: Mapping[str, str],
) -> BuiltImage:
    """Build the context into an untagged image; on failure remove whatever the build made."""
    created: list[str] = []
    image_id = None
    try:
        stream = client.api.build(
            path=str(context.path),
            rm=True,
            forcerm=True,  # remove intermediate containers even when a step fails
            pull=False,
            decode=True,
            labels=dict(labels),
            buildargs={"BASE_IMAGE": base.reference, **build_args},
            network_mode="none",
        )
        for chunk in stream:
            if "error" in chunk:
                raise BuildError(f"building {context.path.name} on {base.reference}: {chunk['error'].strip()}")
            text = chunk.get("stream", "")
            for line in text.splitlines():
                match = _STEP_IMAGE.match(line)
                if match:
                    created.append(match.group(1))
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        if image_id is None:
            raise BuildError(f"building {context.path.name}: the engine reported no image id")
    except docker.errors.APIError as exc:
        _remove_images(client, created, keep=base.image_id)
        raise BuildError(f"building {context.path.name} on {base.reference}: {_first_line(exc)}") from None
    except BaseException:
        _remove_images(client, created, keep=base.image_id)
        raise
    image = client.images.get(image_id)
    return BuiltImage(image.id, int(image.attrs.get("Size", 0)))


def label_image(client: docker.DockerClient, image_id: str, labels: Mapping[str, str]) -> str:
    """A new image of `image_id` with `labels`: a LABEL-only build, so its layers are the very ones
    of `image_id` (what was run and accepted is what ships; only the config differs)."""
    dockerfile = io.BytesIO(f"FROM {image_id}\n".encode())
    try:
        image, _ = client.images.build(
            fileobj=dockerfile, labels=dict(labels), pull=False, rm=True, network_mode="none"
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise BuildError(f"labelling {image_id}: {_first_line(exc)}") from None
    return image.id


def tag_image(client: docker.DockerClient, image_id: str, repository: str, tag: str) -> None:
    if not client.api.tag(image_id, repository, tag, force=True):
        raise BuildError(f"the engine refused to tag {image_id} as {repository}:{tag}")


def _remove_images(client: docker.DockerClient, image_ids: list[str], keep: str) -> None:
    """Remove the images a failed build created, newest first (children before parents)."""
    for short_id in reversed(image_ids):
        if keep.removeprefix("sha256:").startswith(short_id):
            continue
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.api.remove_image(short_id, force=False, noprune=False)


def _pull_base(client: docker.DockerClient, reference: str, platform: OciPlatform) -> tuple[object | None, str]:
    try:
        log.info("pulling base image %s for %s", reference, platform)
        return client.images.pull(reference, platform=str(platform)), ""
    except docker.errors.DockerException as exc:
        return None, _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


def image_inventory(client: docker.DockerClient, image_id: str) -> Inventory:
    """What the image has installed, read from its filesystem (`docker export` of a container that is
    created, never started: it works for any architecture)."""
    container = client.containers.create(image_id, command=["sbom"])  # a command, for images without one
    try:
        return read_inventory(_ChunkReader(container.export()))
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)


class _ChunkReader(io.RawIOBase):
    """A file-like reader over an iterator of byte chunks (the SDK's export stream), for tarfile."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size
