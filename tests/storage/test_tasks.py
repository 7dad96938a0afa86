"""The storage stage as Flyte tasks: called in-process and through `pyflyte run`."""

import os
import subprocess
import sys
from pathlib import Path

import lakefs_sdk
import pytest
from flytekit.exceptions.user import FlyteRecoverableException
from flytekit.types.directory import FlyteDirectory

from tasks.download import download_model
from tasks.publish import publish_artifacts
from tests.fixtures.processes import free_port
from tests.storage.conftest import tree

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lakefs_env(lakefs_server, monkeypatch):
    for name, value in lakefs_server.env().items():
        monkeypatch.setenv(name, value)


def test_download_then_publish_in_process(lakefs_env, seed, lakefs_repo, lakefs_server, tmp_path):
    commit = seed(lakefs_repo, {"model/config.py": b"cfg", "model/w/epoch.pth": b"weights"})

    model_dir, provenance = download_model(repo=lakefs_repo, ref="main")

    assert provenance.commit_id == commit
    assert tree(Path(model_dir.path)) == {"config.py": b"cfg", "w/epoch.pth": b"weights"}

    artifacts = tmp_path / "edge"
    artifacts.mkdir()
    (artifacts / "end2end.onnx").write_bytes(b"onnx")
    result = publish_artifacts(
        artifacts=FlyteDirectory(str(artifacts)), source=provenance, branch="edge-release", create_branch_from="main"
    )

    assert result.committed and result.branch == "edge-release" and result.prefix == "edge/"
    commit_meta = lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id).metadata
    assert commit_meta["source_commit"] == commit and commit_meta["source_repo"] == lakefs_repo
    assert commit_meta["producer"].startswith("edge-deploy ")


def test_a_transient_failure_is_raised_as_recoverable_for_cluster_retries(lakefs_env, monkeypatch, lakefs_repo):
    monkeypatch.setenv("LAKEFS_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    with pytest.raises(FlyteRecoverableException, match="unreachable"):
        download_model(repo=lakefs_repo, ref="main")


def test_pyflyte_run_downloads_a_model(lakefs_server, seed, lakefs_repo):
    seed(lakefs_repo, {"model/config.py": b"cfg"})
    env = {**os.environ, **lakefs_server.env(), "FLYTE_LOCAL_CACHE_ENABLED": "false"}

    pyflyte = [sys.executable, "-m", "flytekit.clis.sdk_in_container.pyflyte"]
    result = subprocess.run(
        [*pyflyte, "run", "tasks/download.py", "download_model", "--repo", lakefs_repo, "--ref", "main"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert lakefs_repo in result.stdout and "commit_id" in result.stdout
