"""Downloading a model directory from lakeFS: pinned, verified, atomic, and safe."""

import dataclasses
import hashlib
import os

import lakefs_sdk
import pytest

from edge_deploy.config import Secret, Settings
from edge_deploy.errors import StorageError, TransientError
from edge_deploy.storage import LakeFSLocation, LakeFSStore, Provenance
from tests.fixtures.processes import free_port
from tests.storage.conftest import FAST_RETRY, tree

MODEL = {
    "model/config.py": b"model = dict(type='ImageClassifier')\n",
    "model/manifest.yaml": b"task: classification\n",
    "model/weights/epoch_12.pth": os.urandom(300_000),
    "model/weights/nested/deeper/extra.bin": os.urandom(1234),
    "model/empty.txt": b"",
    "other/unrelated.txt": b"not part of the model",
}


def model_files(files=MODEL) -> dict[str, bytes]:
    return {k.removeprefix("model/"): v for k, v in files.items() if k.startswith("model/")}


def test_nested_directory_round_trips_byte_for_byte_with_sha256s(store, seed, lakefs_repo, tmp_path):
    commit = seed(lakefs_repo, MODEL)
    dest = tmp_path / "download"

    provenance = store.download(LakeFSLocation(lakefs_repo, "main"), dest)

    assert tree(dest) == model_files()
    assert isinstance(provenance, Provenance)
    assert (provenance.repo, provenance.ref, provenance.commit_id, provenance.prefix) == (
        lakefs_repo,
        "main",
        commit,
        "model/",
    )
    assert {f.path: f.sha256 for f in provenance.files} == {
        path: hashlib.sha256(data).hexdigest() for path, data in model_files().items()
    }
    assert {f.path: f.size for f in provenance.files} == {path: len(data) for path, data in model_files().items()}
    assert provenance.total_bytes == sum(len(d) for d in model_files().values())


def test_a_tag_or_commit_id_ref_reads_exactly_that_commit(store, seed, lakefs_repo, lakefs_server, tmp_path):
    first = seed(lakefs_repo, {"model/a.txt": b"v1"})
    seed(lakefs_repo, {"model/a.txt": b"v2", "model/b.txt": b"new"})

    lakefs_sdk.TagsApi(lakefs_server.api()).create_tag(lakefs_repo, lakefs_sdk.TagCreation(id="v1", ref=first))

    by_commit = store.download(LakeFSLocation(lakefs_repo, first), tmp_path / "by-commit")
    by_tag = store.download(LakeFSLocation(lakefs_repo, "v1"), tmp_path / "by-tag")

    assert by_commit.commit_id == by_tag.commit_id == first
    assert by_tag.ref == "v1"
    assert tree(tmp_path / "by-commit") == tree(tmp_path / "by-tag") == {"a.txt": b"v1"}


def test_commit_id_is_pinned_while_the_branch_moves(store, seed, lakefs_repo, tmp_path):
    """A commit made to the branch after the ref was resolved must not leak into the download."""
    before = seed(lakefs_repo, {"model/weights.bin": b"old weights", "model/config.py": b"old"})
    moved = []

    def commit_during_download(message: str) -> None:
        # called once the ref is resolved and the listing is taken, before any data is read
        if not moved:
            moved.append(seed(lakefs_repo, {"model/weights.bin": b"NEW weights", "model/added.py": b"new"}))

    provenance = store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl", show=commit_during_download)

    assert moved and moved[0] != before
    assert provenance.commit_id == before
    assert tree(tmp_path / "dl") == {"weights.bin": b"old weights", "config.py": b"old"}


def test_two_503s_from_lakefs_then_success(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, MODEL)
    lakefs_server.faults.fail_next(2, status=503)

    store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert len(lakefs_server.faults.triggered()) == 2
    assert tree(tmp_path / "dl") == model_files()


def test_two_503s_from_the_s3_gateway_then_success(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, MODEL)
    lakefs_server.faults.fail_next(2, status=503, match=f"^GET /{lakefs_repo}/")

    store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert len(lakefs_server.faults.triggered()) == 2
    assert tree(tmp_path / "dl") == model_files()


def test_403_fails_at_once_with_a_clear_message_and_leaves_nothing(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, MODEL)
    lakefs_server.faults.fail_next(5, status=403)

    with pytest.raises(StorageError) as error:
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert not isinstance(error.value, TransientError)
    assert "403" in str(error.value) and lakefs_repo in str(error.value) and "'main'" in str(error.value)
    assert len(lakefs_server.faults.triggered()) == 1  # no retry for a refusal
    assert list(tmp_path.iterdir()) == []


def test_403_from_the_gateway_names_the_object_and_leaves_nothing(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, MODEL)
    lakefs_server.faults.fail_next(50, status=403, match="weights/epoch_12.pth")

    with pytest.raises(StorageError) as error:
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert "epoch_12.pth" in str(error.value) and "403" in str(error.value)
    assert len(lakefs_server.faults.triggered()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_secret_fails_at_once_naming_the_credential(lakefs_server, seed, lakefs_repo, tmp_path):
    seed(lakefs_repo, MODEL)
    settings = Settings.from_env({**lakefs_server.env(), "LAKEFS_SECRET_ACCESS_KEY": "not-the-secret"})
    store = LakeFSStore(settings.require_lakefs(), retry=FAST_RETRY)

    with pytest.raises(StorageError, match=r"401.*LAKEFS_SECRET_ACCESS_KEY") as error:
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert not isinstance(error.value, TransientError) and "not-the-secret" not in str(error.value)
    assert store.calls == {"get_commit": 1}  # the first request, never repeated
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_secret_on_the_s3_gateway_fails_at_once_naming_the_credential(store, seed, lakefs_repo, tmp_path):
    seed(lakefs_repo, MODEL)
    # The API accepted the right secret; the gateway client is made later, from a wrong one.
    store.settings = dataclasses.replace(store.settings, secret_access_key=Secret("not-the-secret"))
    requested = []
    store.s3.meta.events.register("before-send.s3.*", lambda request, **_: requested.append(request.url))

    with pytest.raises(StorageError, match=r"SignatureDoesNotMatch.*LAKEFS_SECRET_ACCESS_KEY") as error:
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert not isinstance(error.value, TransientError) and lakefs_repo in str(error.value)
    assert requested and len(requested) == len(set(requested))  # no request was tried twice
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_body_is_detected_and_refetched(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, MODEL)
    lakefs_server.faults.truncate_next(1, match=r"epoch_12\.pth")

    store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert len(lakefs_server.faults.triggered()) == 1
    assert tree(tmp_path / "dl") == model_files()


def test_a_body_that_stays_truncated_fails_and_leaves_nothing(store, seed, lakefs_repo, lakefs_server, tmp_path):
    seed(lakefs_repo, MODEL)
    lakefs_server.faults.truncate_next(100, match=r"epoch_12\.pth")

    with pytest.raises(TransientError, match=r"epoch_12\.pth.*kept arriving incomplete"):
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad_key", ["model/../escape.txt", "model/a//b.txt", "model/./x.txt"])
def test_keys_that_would_escape_the_directory_are_refused(store, seed, lakefs_repo, tmp_path, bad_key):
    seed(lakefs_repo, {"model/ok.txt": b"ok", bad_key: b"evil"})

    with pytest.raises(StorageError, match="refusing object key") as error:
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert repr(bad_key) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_large_file_comes_in_parallel_ranged_parts(store, seed, lakefs_repo, lakefs_server, tmp_path):
    big = os.urandom(20 * 2**20 + 123)  # above the 8 MiB multipart threshold: three ranged parts
    seed(lakefs_repo, {"model/big.onnx": big})

    provenance = store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")

    assert (tmp_path / "dl" / "big.onnx").read_bytes() == big
    assert provenance.files[0].sha256 == hashlib.sha256(big).hexdigest()


def test_unknown_repo_ref_or_empty_prefix_name_what_to_fix(store, seed, lakefs_repo, tmp_path):
    seed(lakefs_repo, MODEL)
    with pytest.raises(StorageError, match=r"404.*check the repository, ref and path") as error:
        store.download(LakeFSLocation(lakefs_repo, "no-such-branch"), tmp_path / "a")
    assert "no-such-branch" in str(error.value)
    with pytest.raises(StorageError, match="holds no objects"):
        store.download(LakeFSLocation(lakefs_repo, "main", "nothing-here/"), tmp_path / "b")
    with pytest.raises(StorageError, match="no-such-repo"):
        store.download(LakeFSLocation("no-such-repo", "main"), tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_target_directory_must_be_new_or_empty(store, seed, lakefs_repo, tmp_path):
    seed(lakefs_repo, MODEL)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "keep.txt").write_text("mine")

    with pytest.raises(StorageError, match="not empty"):
        store.download(LakeFSLocation(lakefs_repo, "main"), tmp_path / "dl")
    assert tree(tmp_path / "dl") == {"keep.txt": b"mine"}


def test_lakefs_unreachable_is_transient_and_bounded(lakefs_server, tmp_path):
    env = {**lakefs_server.env(), "LAKEFS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    store = LakeFSStore(Settings.from_env(env).require_lakefs(), retry=FAST_RETRY)

    with pytest.raises(TransientError, match=r"gave up after 4 attempts.*unreachable"):
        store.download(LakeFSLocation("repo", "main"), tmp_path / "dl")


def test_location_uri_parsing():
    assert LakeFSLocation.parse("lakefs://models/main/detectors/rtmdet") == LakeFSLocation(
        "models", "main", "detectors/rtmdet/"
    )
    assert LakeFSLocation.parse("lakefs://models/v1.2").prefix == "model/"
    with pytest.raises(StorageError, match="invalid lakeFS prefix"):
        LakeFSLocation("models", "main", "../up")
    with pytest.raises(StorageError, match="not a lakefs:// URI"):
        LakeFSLocation.parse("s3://models/main/model")
