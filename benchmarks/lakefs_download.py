"""Download throughput and peak memory of the lakeFS storage stage, for growing file sizes.

Starts the test S3 server (moto) and the test lakeFS server (API and S3 gateway) on loopback,
publishes one model file of each size with LakeFSStore.upload, then downloads each in a fresh
subprocess so that its peak RSS belongs to that download alone. Memory should stay flat as the
file grows (parts are streamed to disk); throughput here is bounded by the test server's Python
gateway and moto serving ranged GETs, not by the client.

    .venv/bin/python benchmarks/lakefs_download.py [--sizes-mib 64,256,1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lakefs_sdk  # noqa: E402

from edge_deploy.config import Settings  # noqa: E402
from edge_deploy.storage import LakeFSStore  # noqa: E402
from tests.fixtures.lakefs import run_lakefs_server  # noqa: E402
from tests.fixtures.s3 import run_s3_server  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
from edge_deploy.config import Settings
from edge_deploy.storage import LakeFSLocation, LakeFSStore
env, repo, dest = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
store = LakeFSStore(Settings.from_env(env).require_lakefs())
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
provenance = store.download(LakeFSLocation(repo, "main"), dest, show=lambda message: None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "bytes": provenance.total_bytes, "peak_kib": peak, "baseline_kib": baseline}))
"""


def write_random(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for offset in range(0, size, len(block)):
            handle.write(block[: min(len(block), size - offset)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", default="64,256,1024")
    sizes = [int(s) for s in parser.parse_args().sizes_mib.split(",")]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        with run_s3_server(scratch / "s3") as s3, run_lakefs_server(s3, scratch / "lakefs.log") as lakefs:
            env = lakefs.env()
            store = LakeFSStore(Settings.from_env(env).require_lakefs())
            print(f"{'size MiB':>9} {'seconds':>8} {'MiB/s':>7} {'peak RSS MiB':>13} {'import RSS MiB':>15}")
            for size_mib in sizes:
                repo = f"bench-{size_mib}"
                lakefs_sdk.RepositoriesApi(lakefs.api()).create_repository(
                    lakefs_sdk.RepositoryCreation(name=repo, storage_namespace=f"s3://{repo}", default_branch="main")
                )
                source = scratch / f"src-{size_mib}"
                source.mkdir()
                write_random(source / "model.pth", size_mib << 20)
                store.upload(source, repo, "main", "model/")
                (source / "model.pth").unlink()
                dest = scratch / f"dl-{size_mib}"
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, json.dumps(env), repo, str(dest)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                mib_s = figures["bytes"] / 2**20 / figures["seconds"]
                print(
                    f"{size_mib:>9} {figures['seconds']:>8.2f} {mib_s:>7.1f} {figures['peak_kib'] / 1024:>13.1f}"
                    f" {figures['baseline_kib'] / 1024:>15.1f}"
                )
                (dest / "model.pth").unlink()
    print(f"benchmark process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.1f}s")
