"""Publishing artifacts to lakeFS: write-audit-publish through a work branch, one merge commit, idempotent."""

import hashlib
import json
import threading

import lakefs_sdk
import pytest

from edge_deploy.errors import StorageError
from edge_deploy.storage.failures import MergeConflictError
from edge_deploy.storage.publish import MAX_PUBLISH_ATTEMPTS
from tests.storage.conftest import branch_names, contents_at, first_parent_log, head_of, write_tree

ARTIFACTS = {"end2end.onnx": b"\x08\x07onnx" * 1000, "report.json": b"{}", "sdk/pipeline.json": b"[]"}
MANIFEST = ".edge-deploy/publish/edge/manifest.json"
WRITES = {"create_branch", "upload_object", "delete_object", "commit", "merge"}


@pytest.fixture
def seeded(seed, lakefs_repo) -> str:
    """The repository's main branch with a model on it; returns its head commit."""
    return seed(lakefs_repo, {"model/config.py": b"x"})


def test_a_publish_is_one_merge_commit_holding_exactly_the_files(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    source = write_tree(tmp_path / "art", ARTIFACTS)

    result = store.upload(source, lakefs_repo, "main", "edge/", "publish", {"run_id": "r1", "source_commit": "abc"})

    assert result.committed and result.uploaded == sorted(ARTIFACTS) and result.deleted == []
    assert result.commit_id == head_of(lakefs_server, lakefs_repo)
    commit = lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id)
    assert commit.parents == [seeded]  # the branch gained exactly one commit
    assert commit.metadata["run_id"] == "r1" and commit.metadata["source_commit"] == "abc"
    assert commit.message == "publish"
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id) == ARTIFACTS
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id, "model/") == {"config.py": b"x"}
    assert {f.path: f.sha256 for f in result.files} == {p: hashlib.sha256(d).hexdigest() for p, d in ARTIFACTS.items()}
    manifest = json.loads(contents_at(lakefs_server, lakefs_repo, result.commit_id, MANIFEST)[""])
    assert manifest["files"]["end2end.onnx"]["sha256"] == hashlib.sha256(ARTIFACTS["end2end.onnx"]).hexdigest()
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]  # the work branch is gone


def test_a_rerun_with_identical_artifacts_commits_nothing(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    source = write_tree(tmp_path / "art", ARTIFACTS)
    first = store.upload(source, lakefs_repo, "main", run_id="r1")
    history = first_parent_log(lakefs_server, lakefs_repo)
    store.calls.clear()

    second = store.upload(source, lakefs_repo, "main", run_id="r1")

    assert first.committed and not second.committed
    assert second.commit_id == first.commit_id and second.uploaded == [] and second.deleted == []
    assert first_parent_log(lakefs_server, lakefs_repo) == history
    assert not WRITES & set(store.calls), store.calls


def test_changed_and_removed_files_make_one_new_commit(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    first = store.upload(write_tree(tmp_path / "v1", ARTIFACTS), lakefs_repo, "main")
    v2 = {"end2end.onnx": ARTIFACTS["end2end.onnx"], "report.json": b'{"passed": true}', "images.json": b"[]"}
    store.calls.clear()

    result = store.upload(write_tree(tmp_path / "v2", v2), lakefs_repo, "main")

    assert result.committed
    assert result.uploaded == ["images.json", "report.json"] and result.deleted == ["sdk/pipeline.json"]
    assert store.calls["upload_object"] == 3  # the two changed files and the manifest; the ONNX is not sent again
    assert lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id).parents == [
        first.commit_id
    ]
    assert contents_at(lakefs_server, lakefs_repo, "main") == v2


def test_the_branch_is_created_from_a_source_ref_when_asked(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    source = write_tree(tmp_path / "art", ARTIFACTS)

    with pytest.raises(StorageError, match="branch 'deploy' does not exist"):
        store.upload(source, lakefs_repo, "deploy")
    result = store.upload(source, lakefs_repo, "deploy", create_branch_from="main")

    commit = lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id)
    assert commit.parents == [seeded]
    assert head_of(lakefs_server, lakefs_repo, "main") == seeded  # main itself is untouched


def test_a_5xx_during_upload_is_retried(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    lakefs_server.faults.fail_next(2, status=502, match="POST .*/objects")

    result = store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main")

    assert result.committed and len(lakefs_server.faults.triggered()) == 2
    assert contents_at(lakefs_server, lakefs_repo, "main") == ARTIFACTS


def test_a_refused_upload_changes_nothing_and_leaves_no_branch(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    lakefs_server.faults.fail_next(5, status=403, match="POST .*/objects")

    with pytest.raises(StorageError, match="403") as error:
        store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main")

    assert lakefs_repo in str(error.value) and "edge/" in str(error.value)
    assert len(lakefs_server.faults.triggered()) == 1  # no retry for a refusal
    assert head_of(lakefs_server, lakefs_repo) == seeded
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]


@pytest.mark.parametrize("request_line", ["POST .*/commits", "POST .*/merge/"])
def test_a_commit_or_merge_whose_answer_is_lost_is_looked_up_not_repeated(
    store, seeded, lakefs_repo, lakefs_server, tmp_path, request_line
):
    lakefs_server.faults.truncate_next(1, match=request_line)  # lakeFS did it; the answer breaks off

    result = store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main")

    assert len(lakefs_server.faults.triggered()) == 1
    assert [c.id for c in first_parent_log(lakefs_server, lakefs_repo)][:2] == [result.commit_id, seeded]
    assert store.calls["commit"] == 1 and store.calls["merge"] == 1
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id) == ARTIFACTS


def test_a_conflict_that_persists_is_a_clear_error_and_changes_nothing(
    store, seeded, lakefs_repo, lakefs_server, tmp_path
):
    lakefs_server.faults.fail_next(MAX_PUBLISH_ATTEMPTS, status=409, match="POST .*/merge/")

    with pytest.raises(MergeConflictError) as error:
        store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main", run_id="r9")

    message = str(error.value)
    assert f"lakefs://{lakefs_repo}/main/edge/" in message and f"gave up after {MAX_PUBLISH_ATTEMPTS}" in message
    assert "r9" in message
    assert head_of(lakefs_server, lakefs_repo) == seeded
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]


def test_a_branch_with_uncommitted_changes_is_refused_clearly(store, seeded, lakefs_repo, lakefs_server, tmp_path):
    lakefs_sdk.ObjectsApi(lakefs_server.api()).upload_object(
        lakefs_repo, "main", "scratch.txt", content=str(write_tree(tmp_path / "x", {"s": b"s"}) / "s")
    )

    with pytest.raises(StorageError, match=r"main.*uncommitted changes \(dirty branch\)"):
        store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main")

    assert head_of(lakefs_server, lakefs_repo) == seeded
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]


def test_a_commit_to_other_paths_during_the_publish_merges_beside_it(
    store, seed, seeded, lakefs_repo, lakefs_server, tmp_path
):
    other = []

    def commit_elsewhere(message: str) -> None:
        if message.startswith("audited") and not other:
            other.append(seed(lakefs_repo, {"model/weights.pth": b"new weights"}))

    result = store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main", show=commit_elsewhere)

    commit = lakefs_sdk.CommitsApi(lakefs_server.api()).get_commit(lakefs_repo, result.commit_id)
    assert commit.parents == other  # merged on top of the other commit, not instead of it
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id) == ARTIFACTS
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id, "model/") == {
        "config.py": b"x",
        "weights.pth": b"new weights",
    }


def test_a_direct_write_into_the_prefix_during_the_merge_is_published_over(
    store, seed, seeded, lakefs_repo, lakefs_server, tmp_path
):
    store.upload(write_tree(tmp_path / "v1", ARTIFACTS), lakefs_repo, "main")
    v2 = {**ARTIFACTS, "report.json": b'{"v": 2}'}
    intruder = []
    store.calls.clear()

    def overwrite_the_onnx(message: str) -> None:  # a file this publish leaves as it is
        if message.startswith("audited") and not intruder:
            intruder.append(seed(lakefs_repo, {"edge/end2end.onnx": b"not from the publish"}))

    result = store.upload(write_tree(tmp_path / "v2", v2), lakefs_repo, "main", show=overwrite_the_onnx)

    assert intruder and result.commit_id == head_of(lakefs_server, lakefs_repo)
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id) == v2  # the record's commit holds exactly v2
    assert store.calls["merge"] == 2  # the first merge kept the intruder's ONNX: the check after it caught that
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]


def test_two_concurrent_publishes_of_different_runs_both_land_as_their_own_commits(
    lakefs_server, seeded, lakefs_repo, tmp_path, store_factory
):
    sets = {
        "run-a": {**ARTIFACTS, "record.json": b'{"run_id": "run-a"}'},
        "run-b": {**ARTIFACTS, "report.json": b'{"x": 1}', "record.json": b'{"run_id": "run-b"}'},
    }
    both_audited = threading.Barrier(2, timeout=60)
    results, stores = {}, {}

    def publish(run: str) -> None:
        waited = []

        def meet_the_other(message: str) -> None:
            if message.startswith("audited") and not waited:
                waited.append(both_audited.wait())  # both hold an audited commit on the same head

        stores[run] = store_factory()
        source = write_tree(tmp_path / run, sets[run])
        results[run] = stores[run].upload(source, lakefs_repo, "main", run_id=run, show=meet_the_other)

    threads = [threading.Thread(target=publish, args=(run,)) for run in sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert set(results) == set(sets), "a publisher failed; see the captured log"
    log = [commit.id for commit in first_parent_log(lakefs_server, lakefs_repo)]
    first, second = sorted(sets, key=lambda run: log.index(results[run].commit_id), reverse=True)
    assert log[:3] == [results[second].commit_id, results[first].commit_id, seeded]
    for run in sets:
        assert contents_at(lakefs_server, lakefs_repo, results[run].commit_id) == sets[run]
    assert stores[second].calls["merge"] == 2  # its first merge met the other's commit and was refused
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]


def test_the_repository_root_and_empty_sources_are_refused(store, lakefs_repo, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="holds no files"):
        store.upload(tmp_path / "empty", lakefs_repo, "main")
    with pytest.raises(StorageError, match="would delete every other object"):
        store.upload(write_tree(tmp_path / "art", ARTIFACTS), lakefs_repo, "main", prefix="")
