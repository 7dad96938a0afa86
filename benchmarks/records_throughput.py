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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pymongo import MongoClient

from edge_deploy.records import (
    ConversionInfo,
    DeploymentRecord,
    ImageSet,
    ModelFile,
    ModelSource,
    OutputError,
    PlatformImage,
    PublishedArtifacts,
    RecordStatus,
    RecordStore,
    ValidationSummary,
)
from edge_deploy.records.embedded import EmbeddedRecordStore
from edge_deploy.records.mongo import MongoRecordStore

MODELS = 20
PLATFORMS = ("linux/amd64", "linux/arm64")
START = datetime(2026, 1, 1, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_record(index: int) -> DeploymentRecord:
    repo = f"model-{index % MODELS}"
    platforms = PLATFORMS if index % 3 else PLATFORMS[:1]
    created = START + timedelta(minutes=index)
    failed = index % 5 == 0
    files = [ModelFile("model.pth", 46_830_571, sha(f"w{index}")), ModelFile("config.py", 2048, sha(f"c{index}"))]
    images = [
        PlatformImage(p, f"registry.local/{repo}:{index}-{p[6:]}", "sha256:" + sha(f"{index}{p}"), 150_000_000)
        for p in platforms
    ]
    return DeploymentRecord(
        run_id=f"run-{index:06d}",
        model=ModelSource(repo, "main", sha(f"commit{index}")[:40], "model/", files),
        status=RecordStatus("failed", "build", "docker build failed") if failed else RecordStatus("succeeded"),
        conversion=ConversionInfo("1.3.1", "2.13.0", "detection_onnxruntime_dynamic", 11, sha(f"o{index}"), 21_300_000),
        validation=ValidationSummary(True, [OutputError("dets", 6e-5), OutputError("labels", 0.0)], 18.7, 24.2),
        images=ImageSet(f"registry.local/{repo}:{index}", "sha256:" + sha(f"i{index}"), images),
        published=PublishedArtifacts(repo, "main", sha(f"p{index}")[:40]),
        timings={"download": 1.2, "convert": 2.8, "validate": 0.9, "build": 6.1, "publish": 0.7},
        created_at=created.isoformat(),
        updated_at=(created + timedelta(seconds=40)).isoformat(),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_secantus(work_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = work_dir / "secantusd.toml"
    config.write_text("")  # an explicit empty config: no search for one in the cwd or home
    argv = [sys.executable, "-m", "secantus", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--storage-path", str(work_dir / "mongo-data"), "--log-level", "WARNING"]
    log = open(work_dir / "secantus.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"mongodb://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"SecantusDB exited with {server.returncode}; see {work_dir / 'secantus.log'}")
        try:
            with MongoClient(url, serverSelectionTimeoutMS=300) as client:
                client.admin.command("ping")
            return server, url
        except Exception:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("SecantusDB did not answer within 30 s")


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
        server, url = start_secantus(work_dir)
        try:
            mongo = MongoRecordStore(url, "bench")
            mongo_figures = measure(mongo, records, args.queries)
            mongo.close()
        finally:
            server.terminate()
            server.wait(10)
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
