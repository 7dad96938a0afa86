"""Edge image build and push time per platform, and image sizes.

    .venv/bin/python benchmarks/image_build.py [--cold-layers]

Needs the Docker engine and Debian's docker-registry (started here on a free loopback port, storage
in a temp dir). Bases: the tests' debootstrap Python base for x86_64 and the arm64-labelled base
(made here if the engine lacks them, as tests/fixtures/base_images.py does). The model is the tests'
small Conv model: image size is dominated by the base and the ONNX Runtime layer, not by it.
Runs: (1) cold build + push of both targets, (2) the same inputs again (content tags already in the
registry: nothing built or pushed). `--cold-layers` also times making the runtime layers from PyPI.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import docker.errors
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_deploy.config import Settings
from edge_deploy.crypto import Keyring, generate_key
from edge_deploy.images.push import build_and_push
from tests.fixtures import base_images
from tests.fixtures.processes import free_port, require_binary, running
from tests.images.conftest import LAYER_CACHE, release_request
from tests.runtime.onnx_models import write_sealed_model

MB = 1_000_000


def ensure_bases(client: docker.DockerClient, work: Path) -> dict[str, base_images.BaseImage]:
    try:
        debian = client.images.get(base_images.DEBIAN_PYTHON_BASE)
    except docker.errors.ImageNotFound:
        print("making the debootstrap base (about a minute) ...", flush=True)
        base_images._make_debian_python_base(client, work / "debian")
        debian = client.images.get(base_images.DEBIAN_PYTHON_BASE)
    try:
        arm = client.images.get(base_images.ARM64_BASE)
    except docker.errors.ImageNotFound:
        client.images.load(base_images.arm64_image_tarball(base_images.ARM64_BASE))
        arm = client.images.get(base_images.ARM64_BASE)
    return {
        "x86_64-cpu": base_images.BaseImage(base_images.DEBIAN_PYTHON_BASE, debian.id, "linux/amd64"),
        "arm64-cpu": base_images.BaseImage(base_images.ARM64_BASE, arm.id, "linux/arm64/v8"),
    }


@contextlib.contextmanager
def registry_server(work: Path):
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (work / "config.yml").write_text(yaml.safe_dump(config))
    binary = require_binary("docker-registry", "apt-get install docker-registry")
    url = f"http://127.0.0.1:{port}/v2/"
    with running([binary, "serve", str(work / "config.yml")], "registry", lambda: requests.get(url, timeout=1).ok,
                 work / "registry.log"):  # fmt: skip
        yield f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-layers", action="store_true", help="make the runtime layers from PyPI again")
    args = parser.parse_args()
    client = docker.from_env(timeout=900)
    with tempfile.TemporaryDirectory(prefix="edge-image-bench-") as temp:
        work = Path(temp)
        bases = ensure_bases(client, work)
        keyring = Keyring({"bench": generate_key()})
        model = write_sealed_model(work / "model", keyring, "bench")
        layer_cache = work / "layers" if args.cold_layers else LAYER_CACHE
        with registry_server(work / "registry") as host:
            settings = Settings(registry=host, registry_insecure=True, work_dir=layer_cache)
            request = release_request(model, bases, release_tag="bench")
            runs = []
            for label in ("first build + push", "unchanged inputs again"):
                started = time.monotonic()
                runs.append((label, build_and_push(request, settings, client), time.monotonic() - started))
            for label, result, seconds in runs:
                print(f"\n{label}: {seconds:.2f}s total (index {'pushed' if result.index_pushed else 'unchanged'})")
                print(f"  {'target':<12} {'platform':<15} {'target s':>8} {'build s':>8} {'push s':>7}"
                      f" {'local MB':>9} {'registry MB':>12}  built pushed")  # fmt: skip
                for target in result.targets:
                    local = client.images.get(target.reference).attrs["Size"] / MB if target.built else float("nan")
                    print(f"  {target.device_class:<12} {target.platform:<15} {target.seconds:8.1f} "
                          f"{target.build_seconds:8.1f} {target.push_seconds:7.1f} {local:9.1f} "
                          f"{target.size / MB:12.1f}  {target.built!s:<5} {target.pushed}")  # fmt: skip
            for target in runs[0][1].targets:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(target.reference, force=True)
    layer_sizes = {
        p.parent.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / MB
        for p in sorted(LAYER_CACHE.glob("runtime-layers/*/site-packages"))
    }
    print("\nruntime layers (uncompressed MB):", ", ".join(f"{k}: {v:.0f}" for k, v in layer_sizes.items()))
    subprocess.run(["docker", "image", "ls", base_images.DEBIAN_PYTHON_BASE], check=False)


if __name__ == "__main__":
    main()
