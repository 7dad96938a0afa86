"""The product's queries, run on both stores: MongoDB (SecantusDB) and the embedded SQLite file."""

from __future__ import annotations

from edge_deploy.records import FAILED, RUNNING, SUCCEEDED, RecordQuery, RecordStore
from tests.records.builders import deployment


def test_a_record_round_trips_through_the_store(record_store: RecordStore) -> None:
    record = deployment("run-1")
    assert record_store.upsert(record)
    assert record_store.get("run-1") == record
    assert record_store.get("run-missing") is None


def test_a_retried_write_does_not_duplicate_the_record(record_store: RecordStore) -> None:
    record = deployment("run-1", state=RUNNING)
    for _ in range(3):
        record_store.upsert(record)
    finished = record.succeeded(at="2026-03-01T12:05:00Z")
    record_store.upsert(finished)
    record_store.upsert(finished)
    assert record_store.history("detector") == [finished]
    assert record_store.count() == 1


def test_an_older_version_never_replaces_a_newer_one(record_store: RecordStore) -> None:
    running = deployment("run-1", state=RUNNING)
    finished = running.succeeded(at="2026-03-01T12:05:00Z")
    assert record_store.upsert(finished)
    assert not record_store.upsert(running)  # a late retry of an earlier write
    assert record_store.get("run-1") == finished


def test_latest_returns_the_right_digest_per_platform_across_runs(record_store: RecordStore) -> None:
    both = deployment("run-1", platforms=("linux/amd64", "linux/arm64"), minute=0)
    amd64_only = deployment("run-2", platforms=("linux/amd64",), minute=10)
    arm_failed = deployment("run-3", platforms=("linux/arm64",), state=FAILED, minute=20)
    still_running = deployment("run-4", platforms=("linux/amd64", "linux/arm64"), state=RUNNING, minute=30)
    other_model = deployment("run-5", repo="segmenter", minute=40)
    for record in (both, amd64_only, arm_failed, still_running, other_model):
        record_store.upsert(record)

    latest_amd64 = record_store.latest_successful("detector", platform="linux/amd64")
    latest_arm64 = record_store.latest_successful("detector", platform="linux/arm64")
    assert latest_amd64.run_id == "run-2"
    assert latest_amd64.image_for("linux/amd64").digest == amd64_only.image_for("linux/amd64").digest
    assert latest_arm64.run_id == "run-1"
    assert latest_arm64.image_for("linux/arm64").digest == both.image_for("linux/arm64").digest
    assert record_store.latest_successful("detector").run_id == "run-2"
    assert record_store.latest_successful("detector", platform="linux/riscv64") is None
    assert record_store.latest_successful("classifier") is None


def test_latest_can_be_narrowed_to_a_model_prefix(record_store: RecordStore) -> None:
    record_store.upsert(deployment("run-1", prefix="models/retinanet", minute=0))
    record_store.upsert(deployment("run-2", prefix="models/rtmdet/", minute=5))
    assert record_store.latest_successful("detector", prefix="models/retinanet/").run_id == "run-1"
    assert record_store.latest_successful("detector", prefix="models/retinanet").run_id == "run-1"
    assert record_store.latest_successful("detector").run_id == "run-2"


def test_history_lists_a_models_runs_newest_first(record_store: RecordStore) -> None:
    for minute, run_id in ((5, "run-b"), (0, "run-a"), (15, "run-d"), (10, "run-c")):
        record_store.upsert(deployment(run_id, minute=minute, commit=f"commit-{run_id}"))
    record_store.upsert(deployment("other", repo="segmenter", minute=20))
    assert [r.run_id for r in record_store.history("detector")] == ["run-d", "run-c", "run-b", "run-a"]
    assert [r.run_id for r in record_store.history("detector", limit=2)] == ["run-d", "run-c"]


def test_runs_by_status_since_a_time(record_store: RecordStore) -> None:
    record_store.upsert(deployment("ok-early", minute=0))
    record_store.upsert(deployment("failed-early", state=FAILED, minute=1))
    record_store.upsert(deployment("failed-late", state=FAILED, minute=30))
    record_store.upsert(deployment("running", state=RUNNING, minute=31))
    assert [r.run_id for r in record_store.by_status(FAILED)] == ["failed-late", "failed-early"]
    assert [r.run_id for r in record_store.by_status(FAILED, since="2026-03-01T12:20:00Z")] == ["failed-late"]
    assert [r.run_id for r in record_store.by_status(SUCCEEDED)] == ["ok-early"]
    failed = record_store.get("failed-late").status
    assert (failed.failed_stage, failed.error) == ("build", "docker build failed for linux/arm64")


def test_filters_combine(record_store: RecordStore) -> None:
    record_store.upsert(deployment("d-ok", minute=0))
    record_store.upsert(deployment("d-failed", state=FAILED, minute=1))
    record_store.upsert(deployment("s-failed", repo="segmenter", state=FAILED, minute=2))
    found = record_store.find(RecordQuery(model_repo="detector", state=FAILED))
    assert [r.run_id for r in found] == ["d-failed"]
    assert len(record_store.find(RecordQuery())) == 3
