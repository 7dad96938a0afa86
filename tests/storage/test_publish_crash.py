"""A publishing process killed (SIGKILL) at the worst moments: the target never shows a partial set,
and the rerun publishes exactly once, into a commit that holds every artifact."""

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import lakefs_sdk
import pytest

from tests.fixtures.s3 import PROJECT_ROOT
from tests.storage.conftest import branch_names, contents_at, first_parent_log, head_of, write_tree

ARTIFACTS = {"end2end.onnx": os.urandom(200_000), "record.json": b'{"run_id": "run-7"}', "sdk/pipeline.json": b"[]"}
# Where the child is held (every matching request answers 503, which it retries) until it is killed.
STALLS = {
    "between the uploads and the commit": r"^POST /api/v1/repositories/[^/]+/branches/edge-deploy-publish-.*/commits",
    "between the commit and the merge": r"^POST /api/v1/repositories/[^/]+/refs/[^/]+/merge/main",
}


class TargetWatcher:
    """Polls the target branch and records every set of files its head showed under edge/."""

    def __init__(self, lakefs_server, repo: str) -> None:
        self.api = lakefs_server.api()
        self.repo, self.seen, self._stop = repo, set(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        branches, objects = lakefs_sdk.BranchesApi(self.api), lakefs_sdk.ObjectsApi(self.api)
        while not self._stop.is_set():
            head = branches.get_branch(self.repo, "main").commit_id  # read at one commit: never half of two
            listed = objects.list_objects(self.repo, head, prefix="edge/").results
            self.seen.add(frozenset((item.path, item.checksum) for item in listed))
            time.sleep(0.02)

    def __enter__(self) -> "TargetWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.api.close()


def run_child_until_stalled(lakefs_server, source, repo: str, stall: str) -> None:
    lakefs_server.faults.fail_next(100_000, status=503, match=stall)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.publisher_child", str(source), repo, "main", "run-7"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **lakefs_server.env(), "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not lakefs_server.faults.triggered():
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the publisher never reached the stalled request"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    lakefs_server.faults.clear()


@pytest.mark.parametrize("moment", STALLS)
def test_a_publisher_killed_mid_publish_is_completed_exactly_once_by_the_rerun(
    moment, store, seed, lakefs_repo, lakefs_server, tmp_path
):
    seeded = seed(lakefs_repo, {"model/config.py": b"x"})
    source = write_tree(tmp_path / "art", ARTIFACTS)
    complete = frozenset((f"edge/{path}", hashlib.md5(data).hexdigest()) for path, data in ARTIFACTS.items())

    with TargetWatcher(lakefs_server, lakefs_repo) as watcher:
        run_child_until_stalled(lakefs_server, source, lakefs_repo, STALLS[moment])

        assert head_of(lakefs_server, lakefs_repo) == seeded  # the target is untouched
        leftovers = [name for name in branch_names(lakefs_server, lakefs_repo) if name != "main"]
        assert len(leftovers) == 1 and leftovers[0].startswith("edge-deploy-publish-run-7-"), leftovers
        assert contents_at(lakefs_server, lakefs_repo, leftovers[0]) == ARTIFACTS  # staged or committed there
        committed_before = head_of(lakefs_server, lakefs_repo, leftovers[0]) != seeded
        assert committed_before == (moment == "between the commit and the merge")

        result = store.upload(source, lakefs_repo, "main", run_id="run-7", metadata={"run_id": "run-7"})
        time.sleep(0.1)  # let the watcher see the final head too

    assert result.committed and result.commit_id == head_of(lakefs_server, lakefs_repo)
    history = [commit.id for commit in first_parent_log(lakefs_server, lakefs_repo)]
    assert history[:2] == [result.commit_id, seeded] and len(history) == 3  # exactly one publish commit
    assert contents_at(lakefs_server, lakefs_repo, result.commit_id) == ARTIFACTS
    assert watcher.seen == {frozenset(), complete}  # nothing, then everything: never a part
    assert store.calls["upload_object"] == 0  # the rerun resumed the work branch: nothing was sent again
    assert store.calls["commit"] == (0 if committed_before else 1)
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]
