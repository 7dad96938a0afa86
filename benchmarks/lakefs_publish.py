"""Publish time and lakeFS API calls of the write-audit-publish stage, for a typical artifact set.

Starts the test S3 server (moto) and the test lakeFS server on loopback and publishes a set like
the one a detector deployment makes (a sealed ~21 MiB ONNX model and eight small reports and
records) with LakeFSStore.upload: a first publish, a no-op rerun with identical files, and a
republish where only record.json changed. For comparison it also times the plain way (upload the
files to the branch and commit, no work branch, audit or merge) on a fresh repository, and
prints the ratio. Each figure is the median of --rounds runs; the API calls are those of one run.

    .venv/bin/python benchmarks/lakefs_publish.py [--rounds 5] [--model-mib 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lakefs_sdk  # noqa: E402

from edge_deploy.config import Settings  # noqa: E402
from edge_deploy.storage.progress import Progress  # noqa: E402
from edge_deploy.storage.store import LakeFSStore  # noqa: E402
from tests.fixtures.lakefs import run_lakefs_server  # noqa: E402
from tests.fixtures.s3 import run_s3_server  # noqa: E402

SMALL_FILES = {  # name: size in bytes, as measured on a published RTMDet-tiny deployment
    "deploy.json": 700,
    "pipeline.json": 2_400,
    "detail.json": 9_000,
    "conversion.json": 1_500,
    "validation.json": 4_000,
    "validation.html": 60_000,
    "images.json": 1_200,
    "record.json": 3_000,
}


def write_artifacts(root: Path, model_mib: int) -> Path:
    root.mkdir(parents=True)
    (root / "end2end.onnx.enc").write_bytes(os.urandom(model_mib << 20))
    for name, size in SMALL_FILES.items():
        (root / name).write_bytes(os.urandom(size))
    return root


def new_repository(api, name: str) -> str:
    lakefs_sdk.RepositoriesApi(api).create_repository(
        lakefs_sdk.RepositoryCreation(name=name, storage_namespace=f"s3://{name}", default_branch="main")
    )
    return name


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def plain_upload_and_commit(store: LakeFSStore, source: Path, repo: str) -> None:
    """What publishing cost before write-audit-publish: uploads to the branch, then one commit."""
    progress = Progress(0, "plain", lambda message: None)
    for path in sorted(source.iterdir()):
        store.put_object(repo, "main", f"edge/{path.name}", path, progress)
    store.commit_once(repo, "main", "plain publish", {})


def publisher(store: LakeFSStore, source: Path, repo: str, run_id: str):
    return lambda: store.upload(source, repo, "main", run_id=run_id, show=lambda message: None)


def measure(store: LakeFSStore, action) -> tuple[float, Counter]:
    store.calls.clear()
    seconds, _ = timed(action)
    return seconds, Counter(store.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-mib", type=int, default=21)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"plain": [], "publish": [], "rerun": [], "republish": []}
    calls: dict[str, Counter] = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        source = write_artifacts(scratch / "edge", args.model_mib)
        with run_s3_server(scratch / "s3") as s3, run_lakefs_server(s3, scratch / "lakefs.log") as lakefs:
            store = LakeFSStore(Settings.from_env(lakefs.env()).require_lakefs())
            api = lakefs.api()
            for round_number in range(args.rounds):
                plain_repo = new_repository(api, f"plain-{round_number}")
                seconds, calls["plain"] = measure(store, partial(plain_upload_and_commit, store, source, plain_repo))
                figures["plain"].append(seconds)
                repo = new_repository(api, f"wap-{round_number}")
                publish = publisher(store, source, repo, f"bench-{round_number}")
                for name in ("publish", "rerun"):
                    seconds, calls[name] = measure(store, publish)
                    figures[name].append(seconds)
                (source / "record.json").write_bytes(os.urandom(SMALL_FILES["record.json"]))
                seconds, calls["republish"] = measure(store, publish)
                figures["republish"].append(seconds)
    size_mib = args.model_mib + sum(SMALL_FILES.values()) / 2**20
    print(f"artifact set: 1 model of {args.model_mib} MiB + {len(SMALL_FILES)} small files = {size_mib:.1f} MiB")
    print(f"{'operation':<34} {'median s':>9} {'API calls':>10}  calls by operation")
    labels = {
        "plain": "plain upload + commit (no WAP)",
        "publish": "publish (write-audit-publish)",
        "rerun": "rerun, identical files (no-op)",
        "republish": "republish, record.json changed",
    }
    for name, label in labels.items():
        breakdown = ", ".join(f"{op} {n}" for op, n in sorted(calls[name].items()))
        print(f"{label:<34} {statistics.median(figures[name]):>9.3f} {sum(calls[name].values()):>10}  {breakdown}")
    ratio = statistics.median(figures["publish"]) / statistics.median(figures["plain"])
    print(f"publish / plain upload+commit: {ratio:.2f}x")
    noop = statistics.median(figures["rerun"]) / statistics.median(figures["publish"])
    print(f"no-op rerun / publish: {noop:.2f}x")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.1f}s")
