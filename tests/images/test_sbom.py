"""The CycloneDX SBOM of an image (edge_deploy/sbom.py, ci/sbom.py): read from the image's own files, valid
for CycloneDX's schema, with package URLs a purl parser reads back, and listing what the image's own
package managers say is installed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from edge_deploy.sbom import cyclonedx, read_inventory
from tests.fixtures.s3 import PROJECT_ROOT

DPKG_STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u10

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2025b-0+deb12u1
Description: time zone and daylight-saving time data
 continued description line: not a field
"""
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def filesystem(files: dict[str, str], links: dict[str, str]) -> io.BytesIO:
    """A `docker export`-like tar stream."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as archive:
        for name, target in links.items():
            member = tarfile.TarInfo(name)
            member.type, member.linkname = tarfile.SYMTYPE, target
            archive.addfile(member)
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    stream.seek(0)
    return stream


def metadata(name: str, version: str, extra: str = "") -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\nA long description.\n"


@pytest.fixture
def inventory():
    return read_inventory(
        filesystem(
            {
                "usr/local/lib/python3.11/site-packages/Foo_Bar-1.0+local.dist-info/METADATA": metadata(
                    "Foo_Bar", "1.0+local", "License-Expression: MIT"
                ),
                # the same wheel again in a venv: one component
                "opt/venv/lib/python3.11/site-packages/Foo_Bar-1.0+local.dist-info/METADATA": metadata(
                    "Foo_Bar", "1.0+local", "License-Expression: MIT"
                ),
                "opt/venv/lib/python3.11/site-packages/numpy-2.2.6.dist-info/METADATA": metadata(
                    "numpy", "2.2.6", "License: " + "BSD " * 200
                ),
                "opt/venv/lib/python3.11/site-packages/broken.dist-info/METADATA": "Name: no-version\n",
                "var/lib/dpkg/status": DPKG_STATUS,
                "usr/lib/os-release": OS_RELEASE,
            },
            {"etc/os-release": "../usr/lib/os-release"},
        )
    )


def test_the_inventory_reads_installed_python_and_debian_packages_and_the_os(inventory):
    found = {(p.kind, p.name, p.version) for p in inventory.packages}
    assert found == {
        ("pypi", "Foo_Bar", "1.0+local"),
        ("pypi", "numpy", "2.2.6"),
        ("deb", "libc6", "2.36-9+deb12u10"),
        ("deb", "tzdata", "2025b-0+deb12u1"),
    }  # not the removed package, not a METADATA without a version
    assert inventory.os_release["ID"] == "debian" and inventory.os_release["VERSION_ID"] == "12"
    licenses = {p.name: p.license for p in inventory.packages}
    assert licenses["Foo_Bar"] == "MIT" and licenses["numpy"] is None  # a whole license text is not a name


def test_the_document_is_valid_cyclonedx_with_parseable_package_urls(inventory):
    labels = {
        "org.opencontainers.image.base.name": "python:3.11-slim",
        "org.opencontainers.image.base.digest": "sha256:" + "a" * 64,
    }
    document = cyclonedx(inventory, "registry.example/edge-deploy/service", "sha256:" + "b" * 64, labels)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    assert error is None, str(error).splitlines()[0]
    purls = {c["name"]: PackageURL.from_string(c["purl"]) for c in document["components"] if "purl" in c}
    assert (purls["Foo_Bar"].type, purls["Foo_Bar"].name, purls["Foo_Bar"].version) == ("pypi", "foo-bar", "1.0+local")
    libc = purls["libc6"]
    assert (libc.type, libc.namespace, libc.version) == ("deb", "debian", "2.36-9+deb12u10")
    assert libc.qualifiers == {"arch": "amd64", "distro": "debian-12"}
    kinds = {c["type"] for c in document["components"]}
    assert {"library", "application", "operating-system", "container"} == kinds
    again = cyclonedx(inventory, "registry.example/edge-deploy/service", "sha256:" + "b" * 64, labels)
    assert again["serialNumber"] == document["serialNumber"]  # one serial number per image


@pytest.mark.docker
def test_an_images_sbom_lists_what_its_own_package_managers_say(debian_python_base, tmp_path):
    out = tmp_path / "base.cdx.json"
    done = subprocess.run([sys.executable, "ci/sbom.py", debian_python_base.reference, str(out)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out.read_text()) is None
    listed = {(c["name"], c["version"]) for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")}
    dpkg = run_in(
        debian_python_base.reference, "dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\\n"
    )
    installed = {tuple(line.split()[1:3]) for line in dpkg.splitlines() if line.startswith("ii")}
    assert listed == installed and len(listed) > 50
    python = {
        (c["name"].lower(), c["version"]) for c in document["components"] if c.get("purl", "").startswith("pkg:pypi/")
    }
    script = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps([[d.metadata['Name'].lower(), d.version] for d in m.distributions()]))"
    )
    assert python == {tuple(item) for item in json.loads(run_in(debian_python_base.reference, "python3", "-c", script))}


def run_in(image: str, *command: str) -> str:
    argv = ["docker", "run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
