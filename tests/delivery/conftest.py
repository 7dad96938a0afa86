"""Helpers for the delivery tests: the repository as a pipeline sees it, and the tools that run it here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GITLAB_CI_LOCAL_HINT = "install it: npm install -g gitlab-ci-local@4.73.0 (and Debian's rsync); bash .ci/run does"
# A digest of the right shape, for rendering and dry runs that never reach a registry.
EXAMPLE_DIGEST = "sha256:" + "ab" * 32
ENVIRONMENTS = ["staging", "production"]
REPOSITORY = "myregistry.azurecr.io/edge-deploy/service"
COMMIT = "0123abcd"  # the pipeline's CI_COMMIT_SHORT_SHA


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for the ci/ scripts: this venv's tools (check-jsonschema, pyflyte, ...) first on PATH."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    for name in ("DRY_RUN", "CI_COMMIT_TAG", "CI_COMMIT_SHORT_SHA", "CI_COMMIT_SHA"):  # a test sets what it needs
        env.pop(name, None)
    return {**env, **extra}


def run_script(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cwd / args[0]), *args[1:]], cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=300
    )


def require_tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return found


def rendered_objects(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def snapshot_repository(destination: Path, branch: str = "main") -> str:
    """This working tree's files (tracked and new, not ignored) as one commit of a fresh repository whose
    remote is a GitLab project, the way a pipeline checks it out. Returns the commit's 8-character id."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in (entry.decode() for entry in listed if entry):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=destination, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q", "-b", branch)
    git("remote", "add", "origin", "https://gitlab.example.com/edge/edge-deploy.git")
    git("add", "-A")
    git("-c", "user.name=CI", "-c", "user.email=ci@example.com", "commit", "-q", "-m", "snapshot")
    return git("rev-parse", "--short=8", "HEAD")


def render(environment: str, tmp_path: Path, image: str | None = None) -> list[dict]:
    """The objects of `environment` as ci/deploy.sh renders them (the service image by digest, unless `image`)."""
    repository = tmp_path / environment
    shutil.copytree(ROOT / "ci", repository / "ci")
    shutil.copytree(ROOT / "deploy", repository / "deploy")
    done = run_script("ci/deploy.sh", "render", environment, cwd=repository, CI_COMMIT_SHORT_SHA=COMMIT,
                      SERVICE_IMAGE=image or f"{REPOSITORY}@{EXAMPLE_DIGEST}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return rendered_objects(repository / "dist" / "deploy" / f"{environment}.yaml")
