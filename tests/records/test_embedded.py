"""The embedded SQLite store: shared safely by concurrent processes, clear about a bad file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_deploy.records import RecordStoreError
from edge_deploy.records.embedded import EmbeddedRecordStore
from tests.records.builders import deployment

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WRITER = textwrap.dedent(
    """
    import sys
    from edge_deploy.records.embedded import EmbeddedRecordStore
    from tests.records.builders import deployment

    store = EmbeddedRecordStore(sys.argv[1])
    worker = sys.argv[2]
    for index in range(40):
        store.upsert(deployment(f"run-{worker}-{index}", minute=index))
        store.upsert(deployment("run-shared", minute=0))  # every process retries the same run
        assert store.latest_successful("detector") is not None
    """
)


def test_concurrent_processes_share_the_file_without_losing_or_duplicating_records(tmp_path: Path) -> None:
    path = tmp_path / "deployments.sqlite3"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(worker)], cwd=PROJECT_ROOT, stderr=subprocess.PIPE
        )
        for worker in range(4)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr.decode()[-2000:]
    store = EmbeddedRecordStore(path)
    assert store.count() == 4 * 40 + 1
    assert store.get("run-3-39") == deployment("run-3-39", minute=39)
    store.close()


def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    EmbeddedRecordStore(tmp_path / "d.sqlite3").close()
    with sqlite3.connect(tmp_path / "d.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "deployments.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(RecordStoreError, match=f"cannot open embedded SQLite store {path}"):
        EmbeddedRecordStore(path)
