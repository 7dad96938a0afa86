#!/usr/bin/env python3
"""Write the CycloneDX SBOM of a local Docker image, read from its own files (edge_deploy/sbom.py).

    ci/sbom.py IMAGE OUTPUT.cdx.json [--name REPOSITORY]

IMAGE is any reference the local engine knows (tag, digest or id). The document names the image by
REPOSITORY (default: IMAGE without its tag) at the registry digest the engine knows for it, else its
image id. Nothing runs inside the image: its filesystem is read from `docker export` of a created,
never started, container. The output is written to a temp file and renamed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's edge_deploy, stdlib only

from edge_deploy.sbom import cyclonedx, read_inventory, write_json


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("output", type=Path)
    parser.add_argument("--name", help="the repository to name the image by")
    args = parser.parse_args()
    [attributes] = json.loads(docker("image", "inspect", args.image))
    repository = args.name or args.image.split("@")[0].rsplit(":", 1)[0]
    digests = [
        item.split("@", 1)[1] for item in attributes.get("RepoDigests") or [] if item.startswith(repository + "@")
    ]
    labels = (attributes.get("Config") or {}).get("Labels") or {}
    container = docker("create", args.image, "sbom")  # an argument, so that an image without a command is created too
    try:
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as export:
            inventory = read_inventory(export.stdout)
        if export.returncode != 0:
            sys.exit(f"error: docker export of {args.image} failed (exit status {export.returncode})")
    finally:
        docker("rm", container)
    document = cyclonedx(inventory, repository, digests[0] if digests else attributes["Id"], labels)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(f".{args.output.name}.tmp")
    with open(partial, "w") as out:
        write_json(document, out)
    os.replace(partial, args.output)
    kinds = {"pypi": 0, "deb": 0}
    for package in inventory.packages:
        kinds[package.kind] += 1
    print(
        f"== {args.output}: {kinds['pypi']} Python and {kinds['deb']} Debian packages in {args.image}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
