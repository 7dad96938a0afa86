"""The storage stage as Flyte tasks: called in-process and through `pyflyte run`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flytekit.exceptions.user import FlyteRecoverableException
from flytekit.types.directory import FlyteDirectory

from edge_deploy.errors import StorageError
from tasks.download import download_model
from tests.fixtures.processes import free_port
from tests.storage.conftest import tree

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lakefs_env(lakefs_server, monkeypatch):
    for name, value in lakefs_server.env().items():
        monkeypatch.setenv(name, value)


def test_download_in_process_pins_the_commit(lakefs_env, seed, lakefs_repo, tmp_path):
    commit = seed(lakefs_repo, {"model/config.py": b"cfg", "model/w/epoch.pth": b"weights"})

    model_dir, provenance = download_model(repo=lakefs_repo, ref="main")

    assert provenance.commit_id == commit
    assert tree(Path(model_dir.path)) == {"config.py": b"cfg", "w/epoch.pth": b"weights"}


def test_a_local_directory_is_described_like_a_download(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.py").write_bytes(b"cfg")

    model_dir, provenance = download_model(local_dir=FlyteDirectory(str(tmp_path / "model")))
    _, again = download_model(local_dir=FlyteDirectory(str(tmp_path / "model")))

    assert Path(model_dir.path) == tmp_path / "model"
    # no manifest to name it: recorded by the directory's name
    assert provenance.local and provenance.repo == "model" and [f.path for f in provenance.files] == ["config.py"]
    assert again.commit_id == provenance.commit_id  # same content, same id
    (tmp_path / "model" / "config.py").write_bytes(b"changed")
    assert download_model(local_dir=FlyteDirectory(str(tmp_path / "model")))[1].commit_id != provenance.commit_id


def test_no_source_at_all_says_what_to_give():
    with pytest.raises(StorageError, match=r"give repo .* or local_dir"):
        download_model()


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


def test_a_local_directory_is_recorded_by_its_manifest_s_name(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.yaml").write_text(
        "# the demo's detector\nname: rtmdet-tiny  # as the sample names it\ntask: detection\n"
    )
    assert download_model(local_dir=FlyteDirectory(str(model)))[1].repo == "rtmdet-tiny"
    # a name that cannot name a record's model or an image repository is not used: the directory's is
    (model / "manifest.yaml").write_text("name: My Model!\n")
    assert download_model(local_dir=FlyteDirectory(str(model)))[1].repo == "model"
    odd = tmp_path / "My Model"
    model.rename(odd)
    assert download_model(local_dir=FlyteDirectory(str(odd)))[1].repo == "local"
    odd.rename(model)
    (model / "manifest.yaml").unlink()
    (model / "manifest.json").write_text('{"name": "camera-detector"}')
    assert download_model(local_dir=FlyteDirectory(str(model)))[1].repo == "camera-detector"
