"""`make task-images` builds from the repository root: .dockerignore must let every COPY source through
and keep everything else (the venv, tests, .env) out. Checked with the task Dockerfiles' own COPY lines
on an empty base, since no Python base image can be pulled here."""

import secrets
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.docker_engine import TEST_IMAGE_LABEL
from tests.flyte_specs.conftest import ROOT

pytestmark = pytest.mark.docker


def copy_sources(dockerfile: Path) -> list[str]:
    """The build-context paths that any stage's COPY reads (not COPY --from another stage)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += [word for word in line.split()[1:-1] if not word.startswith("--")]  # not --chown=...
    return sources


@pytest.mark.parametrize("image", ["conversion", "builder"])
def test_the_build_context_holds_what_the_image_copies_and_nothing_private(docker_engine, image, tmp_path):
    sources = copy_sources(ROOT / "images" / image / "Dockerfile")
    assert sources
    probe = tmp_path / "Dockerfile"
    probe.write_text("FROM scratch\nCOPY . /context/\n")  # the context exactly as .dockerignore filters it
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
                    names = {name.removeprefix("context/") for name in exported.getnames()}
        finally:
            container.remove()
    finally:
        docker_engine.images.remove(tag, force=True)
    for source in [*sources, "edge_deploy/__init__.py", "tasks/cluster.py", "workflows/deploy.py"]:
        assert source.rstrip("/") in names, f"{source} (COPY in the {image} Dockerfile) is not in the build context"
    assert not [n for n in names if n.startswith(("tests/", ".venv/", ".git/")) or n.endswith((".env", ".pyc"))]
