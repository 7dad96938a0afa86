"""The `docker_engine` fixture is the machine's real Docker engine: it answers, builds an image with no pull
(FROM scratch), and removing that image leaves nothing behind."""

from __future__ import annotations

import secrets
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.fixtures.docker_engine import TEST_IMAGE_LABEL, build_scratch_image, remove_image

pytestmark = pytest.mark.docker


def build_chain(client: docker.DockerClient, image_id: str) -> list[str]:
    """The image and the intermediate images the legacy builder left under it (parent links)."""
    chain = []
    while image_id:
        chain.append(image_id)
        image_id = client.images.get(image_id).attrs.get("Parent", "")
    return chain


def test_engine_answers_ping(docker_engine: docker.DockerClient):
    assert docker_engine.ping() is True
    assert docker_engine.version()["ApiVersion"]


def test_scratch_image_builds_without_pulls_and_is_removed_without_leftovers(
    docker_engine: docker.DockerClient, tmp_path: Path
):
    tag = f"edge-deploy-tests/scratch-{secrets.token_hex(4)}:v1"

    image = build_scratch_image(docker_engine, tmp_path / "context", tag)
    chain = build_chain(docker_engine, image.id)

    assert tag in image.tags
    assert image.labels[TEST_IMAGE_LABEL] == "1"
    assert image.attrs["Architecture"] == docker_engine.version()["Arch"]
    assert len(image.attrs["RootFS"]["Layers"]) == 1  # just the COPY: scratch has no layers of its own

    remove_image(docker_engine, image)

    for image_id in chain:
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(image_id)
    dangling = {i.id for i in docker_engine.images.list(filters={"dangling": True})}
    assert dangling.isdisjoint(chain)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_engine.images.get(tag)
