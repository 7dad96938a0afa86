"""The acceptance stage's cost: time per target (native x86_64, emulated arm64) and its share of a
whole run of the demo's workflow.

    .venv/bin/python benchmarks/acceptance.py [--sample rtmdet-tiny] [--no-arm64] [--dir D]

Runs `deploy_model` in this process as `edge-deploy demo` does (a sample model directory, a demo
key, the embedded record store, no registry), once for x86_64 and arm64 together. The arm64 image
is built on a real Debian arm64 userland (made with debootstrap --foreign the first time) and
accepted under qemu-user. Prints each stage's time (both targets' build/accept/push summed), each
image's acceptance (seconds, start-up, p50, photos) and the share of the x86_64 acceptance in the
run's total (target: <= 20 %). Base images are made before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout, installed or not

ARM64_BASE = "edge-deploy/python-base-arm64:bookworm-minbase"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="rtmdet-tiny")
    parser.add_argument("--no-arm64", dest="arm64", action="store_false", help="x86_64 only")
    parser.add_argument("--dir", type=Path, help="where the run keeps its files (default: a temp directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acceptance-bench-", dir=args.dir) as directory:
        run(args.sample, args.arm64, Path(directory))


def run(sample: str, arm64: bool, directory: Path) -> None:
    from edge_deploy.cli.demo import DEMO_TARGET, _demo_env
    from edge_deploy.config import Settings
    from edge_deploy.images.base import DEFAULT_REFERENCE, ensure_python_base
    from edge_deploy.images.build import engine_client
    from edge_deploy.records import open_record_store
    from edge_deploy.samples import write_sample

    os.environ.update(_demo_env(directory))
    client = engine_client()
    bases = {DEMO_TARGET: DEFAULT_REFERENCE}
    ensure_python_base(client, DEFAULT_REFERENCE)
    if arm64:
        ensure_python_base(client, ARM64_BASE, architecture="arm64")
        bases["arm64-cpu"] = ARM64_BASE
    model_dir = directory / "models" / sample
    write_sample(sample, model_dir)
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; sample {sample}")

    from workflows.local import run_local_model

    started = time.monotonic()
    run_local_model(model_dir, list(bases), build_images=True, base_images=bases)
    wall = time.monotonic() - started
    store = open_record_store(Settings.from_env())
    try:
        record = store.get(os.environ["EDGE_RUN_ID"])
    finally:
        store.close()
    report(record, wall)


def report(record, wall: float) -> None:
    from edge_deploy.status import PROCESS_STATUS

    stages: dict[str, float] = {}
    for event in PROCESS_STATUS.events(record.run_id):  # every stage's time, both targets' summed
        if event.kind == "stage-finished" and event.seconds is not None:
            stages[event.stage] = stages.get(event.stage, 0.0) + event.seconds
    print(f"\nrun {record.run_id}: {record.status.state} in {wall:.1f} s (wall clock, in this process)")
    print("  stage        seconds")
    for stage, seconds in stages.items():
        print(f"  {stage:<12} {seconds:>7.1f}")
    print("\nacceptance per image:")
    native = 0.0
    for image in record.images.platforms:
        accepted = image.acceptance
        print(f"  {image.platform:<16} {accepted.summary()}")
        if accepted.mode == "native":
            native = accepted.seconds
    print(f"\nx86_64 acceptance: {native:.1f} s = {native / wall:.1%} of the run (target <= 20 %)")


if __name__ == "__main__":
    main()
