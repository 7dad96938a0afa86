"""ci/pin-base-images.py against a real registry on loopback: every base and job image is pinned to the
digest its tag points to, in images/base-images.env and in .gitlab-ci.yml alike, or nothing is written."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from edge_deploy.config import RegistrySettings
from edge_deploy.images.registry import RegistryClient
from tests.delivery.conftest import ROOT
from tests.images.conftest import FAST_RETRIES

pytestmark = pytest.mark.docker


def pin(repository, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repository / "ci" / "pin-base-images.py"), *options],
        cwd=repository, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def repository(tmp_path, registry, docker_engine, make_scratch_image):
    """A copy of the files the script edits, naming two images pushed to the loopback registry."""
    copy = tmp_path / "repo"
    for name in ("ci", "edge_deploy"):
        shutil.copytree(ROOT / name, copy / name)
    (copy / "images").mkdir()
    shutil.copy(ROOT / ".gitlab-ci.yml", copy / ".gitlab-ci.yml")
    references = {}
    for name, tag in (("python", "3.11-slim"), ("dind", "27")):
        reference = f"{registry.host}/bases/{name}:{tag}"
        make_scratch_image(reference)
        for line in docker_engine.images.push(reference, stream=True, decode=True):
            assert "error" not in line, line
        references[name] = reference
    env = (ROOT / "images" / "base-images.env").read_text()
    env = env.replace("PYTHON_BASE=docker.io/library/python:3.11-slim-bookworm", f"PYTHON_BASE={references['python']}")
    env = env.replace("DIND_IMAGE=docker.io/library/docker:27-dind", f"DIND_IMAGE={references['dind']}")
    env = "\n".join(line for line in env.splitlines() if not line.startswith(("PYTHON_JOB_IMAGE", "TRIVY_IMAGE")))
    (copy / "images" / "base-images.env").write_text(env + "\n")
    return copy, references


def digest_of(registry, reference: str) -> str:
    path, tag = reference.split("/", 1)[1].rsplit(":", 1)
    settings = RegistrySettings(registry.host, None, None, True, None)
    return RegistryClient(settings, FAST_RETRIES).manifest_digest(path, tag)


def test_the_check_names_every_unpinned_image_and_pinning_fixes_it(repository, registry):
    copy, references = repository
    done = pin(copy, "--check")
    assert done.returncode == 1
    assert f"not pinned by digest: PYTHON_BASE={references['python']}" in done.stderr
    assert f"not pinned by digest: DIND_IMAGE={references['dind']}" in done.stderr
    done = pin(copy, "--insecure", registry.host)
    assert done.returncode == 0, done.stderr
    env, pipeline = (copy / "images" / "base-images.env").read_text(), (copy / ".gitlab-ci.yml").read_text()
    pinned = f"{references['dind']}@{digest_of(registry, references['dind'])}"
    assert f"DIND_IMAGE={pinned}\n" in env and f"  DIND_IMAGE: {pinned}\n" in pipeline
    assert f"PYTHON_BASE={references['python']}@{digest_of(registry, references['python'])}\n" in env
    assert pin(copy, "--check").returncode == 0


def test_an_unknown_tag_is_named_and_nothing_is_written(repository, registry):
    copy, references = repository
    env = copy / "images" / "base-images.env"
    env.write_text(env.read_text().replace(references["dind"], references["dind"].replace(":27", ":99")))
    before = (env.read_text(), (copy / ".gitlab-ci.yml").read_text())
    done = pin(copy, "--insecure", registry.host)
    assert done.returncode == 1 and "has no tag '99' in bases/dind; nothing was written" in done.stderr
    assert (env.read_text(), (copy / ".gitlab-ci.yml").read_text()) == before


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("python:3.11-slim-bookworm", ("registry-1.docker.io", "library/python", "3.11-slim-bookworm")),
        ("docker.io/aquasec/trivy:0.67.2", ("registry-1.docker.io", "aquasec/trivy", "0.67.2")),
        ("myacr.azurecr.io/base/python@sha256:" + "a" * 64, ("myacr.azurecr.io", "base/python", "latest")),
        ("127.0.0.1:5000/bases/python:3.11", ("127.0.0.1:5000", "bases/python", "3.11")),
    ],
)
def test_references_are_split_as_docker_does(reference, expected):
    spec = importlib.util.spec_from_file_location("pin_base_images", ROOT / "ci" / "pin-base-images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.split_reference(reference) == expected
