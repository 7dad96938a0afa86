"""`make task-images` builds from the repository root: .dockerignore must let every COPY source through
and keep everything else (the venv, tests, .env) out. Checked with the task Dockerfiles' own COPY lines
on an empty base, since no Python base image can be pulled here."""

import re
import secrets
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.docker_engine import TEST_IMAGE_LABEL
from tests.flyte_specs.conftest import ROOT

pytestmark = pytest.mark.docker


def final_stage_copies(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text()
    final_stage = re.split(r"^FROM ", text, flags=re.MULTILINE)[-1]
    return [line for line in final_stage.splitlines() if line.startswith("COPY ") and "--from" not in line]


@pytest.mark.parametrize("image", ["conversion", "builder"])
def test_the_build_context_holds_what_the_image_copies_and_nothing_private(docker_engine, image, tmp_path):
    copies = final_stage_copies(ROOT / "images" / image / "Dockerfile")
    assert copies
    probe = tmp_path / "Dockerfile"
    probe.write_text("FROM scratch\n" + "\n".join(copies) + "\n")
    tag = f"edge-deploy-context-probe:{secrets.token_hex(4)}"
    docker_engine.images.build(path=str(ROOT), dockerfile=str(probe), tag=tag, rm=True, labels={TEST_IMAGE_LABEL: "1"})
    try:
        container = docker_engine.containers.create(tag, command="/none")
        try:
            with tempfile.TemporaryFile() as archive:
                for chunk in container.export():
                    archive.write(chunk)
                archive.seek(0)
                with tarfile.open(fileobj=archive) as exported:
                    names = set(exported.getnames())
        finally:
            container.remove()
    finally:
        docker_engine.images.remove(tag, force=True)
    for required in [
        "edge_deploy/__init__.py",
        "tasks/cluster.py",
        "workflows/deploy.py",
        "images/edge/Dockerfile",
        "images/platforms.yaml",
        "requirements/runtime.txt",
        "pyproject.toml",
    ]:
        assert required in names, f"{required} is not in the {image} image's build context"
    assert not [n for n in names if n.startswith(("tests/", ".venv/", ".git/")) or n.endswith((".env", ".pyc"))]
