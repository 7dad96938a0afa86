"""Publishing an artifacts directory to lakeFS: mirrored, one commit, no commit for no change."""

import hashlib

import lakefs_sdk
import pytest

from edge_deploy.errors import StorageError
from edge_deploy.storage import LakeFSLocation
from tests.storage.conftest import tree


def write_tree(root, files: dict[str, bytes]):
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


ARTIFACTS = {"end2end.onnx": b"\x08\x07onnx" * 1000, "report.json": b"{}", "sdk/pipeline.json": b"[]"}


def commits_of(lakefs_server, repo, branch="main"):
    log = lakefs_sdk.RefsApi(lakefs_server.api()).log_commits(repo, branch)
    return [c.id for c in log.results]


def test_upload_commits_with_metadata_and_reads_back(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, {"model/config.py": b"x"})
    source = write_tree(tmp_path / "art", ARTIFACTS)

    result = store.upload(source, lakefs_repo, "main", "edge/", "publish", {"run_id": "r1", "source_commit": "abc"})

    assert result.committed and result.uploaded == sorted(ARTIFACTS)
    commit = lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id)
    assert commit.metadata == {"run_id": "r1", "source_commit": "abc"}
    assert {f.path: f.sha256 for f in result.files} == {p: hashlib.sha256(d).hexdigest() for p, d in ARTIFACTS.items()}
    store.download(LakeFSLocation(lakefs_repo, result.commit_id, "edge/"), tmp_path / "back")
    assert tree(tmp_path / "back") == ARTIFACTS


def test_uploading_the_same_content_twice_leaves_one_commit(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, {"model/config.py": b"x"})
    source = write_tree(tmp_path / "art", ARTIFACTS)

    first = store.upload(source, lakefs_repo, "main")
    history = commits_of(lakefs_server, lakefs_repo)
    second = store.upload(source, lakefs_repo, "main")

    assert first.committed and not second.committed
    assert second.commit_id == first.commit_id
    assert second.uploaded == [] and second.deleted == []
    assert commits_of(lakefs_server, lakefs_repo) == history


def test_changed_and_removed_files_make_one_new_commit(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, {"model/config.py": b"x"})
    store.upload(write_tree(tmp_path / "v1", ARTIFACTS), lakefs_repo, "main")
    v2 = {"end2end.onnx": ARTIFACTS["end2end.onnx"], "report.json": b'{"passed": true}', "images.json": b"[]"}

    result = store.upload(write_tree(tmp_path / "v2", v2), lakefs_repo, "main")

    assert result.committed
    assert result.uploaded == ["images.json", "report.json"]  # the unchanged ONNX is not sent again
    assert result.deleted == ["edge/sdk/pipeline.json"]
    store.download(LakeFSLocation(lakefs_repo, "main", "edge/"), tmp_path / "back")
    assert tree(tmp_path / "back") == v2


def test_branch_is_created_from_a_source_ref_when_asked(store, seed, lakefs_repo, lakefs_server, tmp_path):
    base = seed(lakefs_repo, {"model/config.py": b"x"})
    source = write_tree(tmp_path / "art", ARTIFACTS)

    with pytest.raises(StorageError, match="branch 'deploy' does not exist"):
        store.upload(source, lakefs_repo, "deploy")
    result = store.upload(source, lakefs_repo, "deploy", create_branch_from="main")

    commit = lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id)
    assert commit.parents == [base]
    assert commits_of(lakefs_server, lakefs_repo, "main")[0] == base  # main itself is untouched


def test_a_5xx_during_upload_is_retried(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, {"model/config.py": b"x"})
    lakefs_server.faults.fail_next(2, status=502, match="POST .*/objects")

    result = store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main")

    assert result.committed and len(lakefs_server.faults.triggered()) == 2
    store.download(LakeFSLocation(lakefs_repo, "main", "edge/"), tmp_path / "back")
    assert tree(tmp_path / "back") == ARTIFACTS


def test_a_refused_upload_commits_nothing(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, {"model/config.py": b"x"})
    history = commits_of(lakefs_server, lakefs_repo)
    lakefs_server.faults.fail_next(5, status=403, match="POST .*/objects")

    with pytest.raises(StorageError, match="403"):
        store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main")

    assert len(lakefs_server.faults.triggered()) == 1
    assert commits_of(lakefs_server, lakefs_repo) == history


def test_nothing_to_upload_is_an_error(store, lakefs_repo, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="holds no files"):
        store.upload(tmp_path / "empty", lakefs_repo, "main")
