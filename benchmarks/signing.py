"""Signing and verifying a release: time per image, and the share of a whole run on the demo sample.

    .venv/bin/python benchmarks/signing.py [--sample rtmdet-tiny] [--rounds 5]

Runs the demo's workflow (the sample, the x86_64 target on the local Python base) once, with a
loopback registry (Debian's docker-registry) and EDGE_SIGNING_KEY set, and times the whole run.
Then, on the image and index that run pushed, it times (medians of --rounds):
- sign: the image's signature, its SLSA provenance (DSSE) and the index's signature, each with a
  fresh key so that nothing is skipped as already signed (what the index stage adds to a run);
- SBOM: reading the image's packages (`docker export`), which the build stage does once per base
  and runtime layer (later images of that pair read the cached list: no export);
- verify: `edge-deploy verify`'s chain walk on what the registry holds (signature, provenance,
  labels, SBOM, the sealed model inside the image), as a device team would run it.
The demo's model comes from a local directory, so the lakeFS links are unreached here; with lakeFS
they add a report read and the source model's download (benchmarks/lakefs_download.py times those).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from image_build import registry_server  # noqa: E402 - a sibling benchmark's registry

from edge_deploy.crypto import generate_key  # noqa: E402
from edge_deploy.crypto.keyring import write_key_file  # noqa: E402
from edge_deploy.images.base import DEFAULT_REFERENCE, ensure_python_base  # noqa: E402
from edge_deploy.images.build import engine_client, image_inventory  # noqa: E402
from edge_deploy.images.push import sign_release  # noqa: E402
from edge_deploy.images.registry import RegistryClient  # noqa: E402
from edge_deploy.samples import write_sample  # noqa: E402
from edge_deploy.signing.chain import verify_chain  # noqa: E402
from edge_deploy.signing.keys import SigningKey  # noqa: E402

TARGET = "x86_64-cpu"


def median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="rtmdet-tiny")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-signing-"))
    engine = engine_client()
    ensure_python_base(engine, DEFAULT_REFERENCE)
    with registry_server(work / "registry") as host:
        key = SigningKey.generate()
        (work / "signing.pem").write_bytes(key.private_pem())
        (work / "keys").mkdir()
        write_key_file(work / "keys" / "bench", generate_key())
        os.environ.update(
            {
                "EDGE_WORK_DIR": str(work / "work"),
                "EDGE_KEY_DIR": str(work / "keys"),
                "EDGE_SEAL_KEY_ID": "bench",
                "EDGE_RUN_ID": "bench-signing",
                "EDGE_REGISTRY": host,
                "EDGE_REGISTRY_INSECURE": "true",
                "EDGE_SIGNING_KEY_FILE": str(work / "signing.pem"),
                "FLYTE_LOCAL_CACHE_ENABLED": "false",
            }
        )
        for name in ("MONGODB_URI", "REDIS_URL", "LAKEFS_ENDPOINT"):
            os.environ.pop(name, None)
        from edge_deploy.config import Settings
        from workflows.local import run_local_model

        model_dir = work / "model"
        write_sample(args.sample, model_dir)
        print(f"whole run: sample {args.sample}, target {TARGET}, registry {host} ...", flush=True)
        started = time.perf_counter()
        record = run_local_model(model_dir, [TARGET], base_images={TARGET: DEFAULT_REFERENCE})
        run_seconds = time.perf_counter() - started
        settings = Settings.from_env()
        registry = RegistryClient(settings.require_registry())
        [image] = record.images.platforms
        repository = image.reference.split("/", 1)[1].rsplit(":", 1)[0]
        index_digest = record.images.index_digest
        release = _release_of(settings, record)
        print(f"  {run_seconds:.1f} s; image {image.digest[:19]}, {image.size / 1e6:.0f} MB", flush=True)

        def sign_fresh() -> None:
            fresh = Settings.from_env({**os.environ, "EDGE_SIGNING_KEY_FILE": _fresh_key(work)})
            sign_release(registry, repository, release.targets, index_digest, fresh)

        sign = median_seconds(sign_fresh, args.rounds)
        inventory_cold = median_seconds(lambda: image_inventory(engine, image.reference), min(args.rounds, 3))
        verify = median_seconds(lambda: verify_chain(registry, repository, image.digest, key.public, None), args.rounds)
        report = verify_chain(registry, repository, image.digest, key.public, None)
        broken = report.first_broken
        print(f"verify: {'verified' if broken is None else f'BROKEN {broken}'}")
        print()
        print(f"{'step':<44} {'seconds':>8} {'share of the run':>17}")
        for name, seconds in (
            ("whole run (demo sample, one target)", run_seconds),
            ("sign: image + provenance + index", sign),
            ("SBOM package scan, first image of a base", inventory_cold),
            ("verify (registry links, model layer hashed)", verify),
        ):
            print(f"{name:<44} {seconds:8.2f} {seconds / run_seconds:16.1%}")


def _fresh_key(work: Path) -> str:
    path = work / f"fresh-{time.monotonic_ns()}.pem"
    path.write_bytes(SigningKey.generate().private_pem())
    return str(path)


def _release_of(settings, record):
    """The run's ReleaseResult, from images.json in its published artifacts (it carries the evidence)."""
    from edge_deploy.codec import from_json
    from edge_deploy.images.push import ReleaseResult

    path = settings.work_dir / "runs" / record.run_id / "edge" / "images.json"
    return from_json(ReleaseResult, path.read_text())


if __name__ == "__main__":
    main()
