"""`sync`: record.json files back into the store, from a directory or from lakeFS, safely repeatable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_deploy.config import Settings
from edge_deploy.records import RUNNING, RecordStore
from edge_deploy.records.sync import DirectorySource, ListingSource, SyncSourceError, lakefs_source, sync_records
from edge_deploy.storage import LakeFSStore
from tests.fixtures.lakefs import LakeFSServer
from tests.records.builders import deployment


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_sync_imports_new_records_keeps_newer_ones_and_reports_bad_files(
    record_store: RecordStore, tmp_path: Path
) -> None:
    running = deployment("run-2", state=RUNNING, minute=10)
    finished_later = running.succeeded(at="2026-03-01T12:30:00Z")
    record_store.upsert(finished_later)  # the store already knows how run-2 ended
    fresh = deployment("run-1", minute=0)
    _write(tmp_path / "detector" / "run-1" / "record.json", fresh.to_json())
    _write(tmp_path / "detector" / "run-2" / "record.json", running.to_json())
    _write(tmp_path / "broken" / "record.json", '{"run_id": "run-9"')
    _write(tmp_path / "detector" / "run-1" / "report.json", json.dumps({"not": "a record"}))

    report = sync_records(DirectorySource(tmp_path), record_store)

    assert report.imported == ["run-1"]
    assert report.newer_in_store == ["run-2"]
    assert [location for location, _ in report.failed] == [str(tmp_path / "broken" / "record.json")]
    assert "not valid JSON" in report.failed[0][1]
    assert record_store.get("run-1") == fresh and record_store.get("run-2") == finished_later

    again = sync_records(DirectorySource(tmp_path), record_store)
    assert again.imported == [] and again.already_current == ["run-1"] and again.newer_in_store == ["run-2"]
    assert record_store.count() == 2


def test_sync_from_a_missing_directory_fails_naming_it(record_store: RecordStore, tmp_path: Path) -> None:
    with pytest.raises(SyncSourceError, match=f"cannot sync from {tmp_path / 'nope'}: not a directory"):
        sync_records(DirectorySource(tmp_path / "nope"), record_store)


def test_any_listing_source_feeds_sync(embedded_record_store: RecordStore) -> None:
    objects = {"edge/a/record.json": deployment("run-a").to_json().encode(), "edge/a/end2end.onnx": b"\x08\x07"}
    source = ListingSource("memory://", lambda: objects.keys(), objects.__getitem__)
    report = sync_records(source, embedded_record_store)
    assert report.imported == ["run-a"] and not report.failed


def test_sync_reads_record_json_from_lakefs_at_the_branch_head(
    lakefs_server: LakeFSServer, lakefs_repo: str, embedded_record_store: RecordStore, tmp_path: Path
) -> None:
    lakefs = LakeFSStore(Settings.from_env(lakefs_server.env()).require_lakefs())
    published = tmp_path / "edge"
    first, second = deployment("run-1", minute=0), deployment("run-2", commit="beef", minute=5)
    _write(published / "retinanet" / "record.json", first.to_json())
    _write(published / "rtmdet" / "record.json", second.to_json())
    _write(published / "rtmdet" / "end2end.onnx", "not really onnx")
    upload = lakefs.upload(published, lakefs_repo, "main", prefix="edge/")

    source = lakefs_source(lakefs, lakefs_repo, "main", prefix="edge/")
    report = sync_records(source, embedded_record_store)

    assert sorted(report.imported) == ["run-1", "run-2"] and report.ok
    assert report.source == f"lakefs://{lakefs_repo}/{upload.commit_id}/"
    assert embedded_record_store.get("run-2") == second
