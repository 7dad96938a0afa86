"""Record store throughput: writes and queries per second, MongoDB wire (SecantusDB) vs the embedded SQLite file.

    .venv/bin/python benchmarks/records_throughput.py [--records 1000] [--queries 300]

Starts SecantusDB (the test-only MongoDB-wire server, data on disk in a temp dir) on a free loopback
port, and an embedded store in the same temp dir, then times on each, one client, sequentially:
  insert      upsert of a new record (realistic size: 2 model files, 2 platforms, timings)
  re-upsert   the same records again (a retried task: must change nothing)
  get         one record by run id
  latest      latest successful record of a model for a platform
  history     a model's 20 newest records
SecantusDB is a Python server: its figures say little about a real mongod, but show the shape
of the cost (a network round trip per operation) against an in-process file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from edge_deploy.records import FAILED, SUCCEEDED, DeploymentRecord, RecordStore
from edge_deploy.records.embedded import EmbeddedRecordStore
from edge_deploy.records.mongo import MongoRecordStore
from tests.fixtures.mongo import run_mongo_server
from tests.records.builders import deployment

MODELS = 20
PLATFORMS = ("linux/amd64", "linux/arm64")


def make_record(index: int) -> DeploymentRecord:
    """The tests' complete record, spread over MODELS models; every third has one platform, every fifth failed."""
    return deployment(
        f"run-{index:06d}",
        repo=f"model-{index % MODELS}",
        commit=hashlib.sha256(f"commit{index}".encode()).hexdigest()[:40],
        platforms=PLATFORMS if index % 3 else PLATFORMS[:1],
        state=FAILED if index % 5 == 0 else SUCCEEDED,
        minute=index,
    )


def rate(count: int, work: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for index in range(count):
        work(index)
    return count / (time.perf_counter() - started)


def measure(store: RecordStore, records: list[DeploymentRecord], queries: int) -> dict[str, float]:
    store.get("warm-up")  # connect and create the indexes outside the timings
    figures = {
        "insert": rate(len(records), lambda i: store.upsert(records[i])),
        "re-upsert": rate(len(records), lambda i: store.upsert(records[i])),
        "get": rate(queries, lambda i: store.get(records[(i * 7919) % len(records)].run_id)),
        "latest": rate(queries, lambda i: store.latest_successful(f"model-{i % MODELS}", platform=PLATFORMS[i % 2])),
        "history": rate(queries, lambda i: store.history(f"model-{i % MODELS}", limit=20)),
    }
    assert store.count() == len(records), "a re-upsert duplicated records"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    records = [make_record(index) for index in range(args.records)]
    print(f"{args.records} records of ~{len(records[0].to_json())} bytes JSON; {args.queries} queries per kind")

    with tempfile.TemporaryDirectory(prefix="records-bench-") as tmp:
        work_dir = Path(tmp)
        with run_mongo_server(work_dir) as server:
            mongo = MongoRecordStore(server.url, "bench")
            mongo_figures = measure(mongo, records, args.queries)
            mongo.close()
        embedded = EmbeddedRecordStore(work_dir / "deployments.sqlite3")
        embedded_figures = measure(embedded, records, args.queries)
        embedded.close()

    print(f"{'operation':<11} {'MongoDB wire (SecantusDB)':>26} {'embedded SQLite':>16} {'embedded/mongo':>15}")
    for name, mongo_rate in mongo_figures.items():
        embedded_rate = embedded_figures[name]
        print(
            f"{name:<11} {mongo_rate:>20,.0f} ops/s {embedded_rate:>10,.0f} ops/s {embedded_rate / mongo_rate:>14.1f}x"
        )


if __name__ == "__main__":
    main()
