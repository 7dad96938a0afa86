"""A CycloneDX software bill of materials of a container image, read from the image's own files.

What is installed is read from the flattened filesystem (`docker export`, a tar stream), not
asked of a package manager inside the image, so it works for an image of any architecture and
for one that has no Python or no shell:

- Python packages: every `*.dist-info/METADATA` (site-packages, venvs under /opt, pip --target
  trees), as `pkg:pypi/...`;
- Debian packages: `/var/lib/dpkg/status` (installed ones), as `pkg:deb/debian/...`;
- the operating system: `/etc/os-release` (usually a link to `/usr/lib/os-release`);
- the base image, when the image's labels name it (`org.opencontainers.image.base.name` and
  `.base.digest`, which ci/build-image.sh sets).

Only the standard library is used: the pipeline's build job runs this before anything is installed.
"""

from __future__ import annotations

import json
import tarfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import HeaderParser
from typing import IO, Any
from urllib.parse import quote

from edge_deploy import __version__

SPEC_VERSION = "1.6"
BASE_NAME_LABEL = "org.opencontainers.image.base.name"
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
DPKG_STATUS = "var/lib/dpkg/status"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
MAX_TEXT_BYTES = 16 * 1024 * 1024  # a METADATA or dpkg status file larger than this is not read


@dataclass(frozen=True)
class Package:
    kind: str  # "pypi" or "deb"
    name: str
    version: str
    license: str | None = None
    arch: str | None = None


@dataclass
class Inventory:
    packages: list[Package] = field(default_factory=list)
    os_release: dict[str, str] = field(default_factory=dict)


def read_inventory(tar_stream: IO[bytes]) -> Inventory:
    """What the image filesystem in `tar_stream` (a `docker export`) has installed, read in one pass."""
    inventory, texts = Inventory(), {}
    with tarfile.open(fileobj=tar_stream, mode="r|*") as archive:
        for member in archive:
            name = member.name.lstrip("./")
            if member.issym() and name in OS_RELEASE:
                texts.setdefault(name, f"->{member.linkname}")
            if not member.isfile() or member.size > MAX_TEXT_BYTES:
                continue
            if name.endswith(".dist-info/METADATA"):
                package = _python_package(_text(archive, member))
                if package:
                    inventory.packages.append(package)
            elif name == DPKG_STATUS or name in OS_RELEASE:
                texts[name] = _text(archive, member)
    inventory.packages += _debian_packages(texts.get(DPKG_STATUS, ""))
    inventory.os_release = _os_release(texts)
    inventory.packages = sorted(set(inventory.packages), key=lambda p: (p.kind, p.name.lower(), p.version))
    return inventory


def cyclonedx(inventory: Inventory, image: str, digest: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The CycloneDX 1.6 JSON document for `image` (its repository) at `digest` (or image id)."""
    labels = labels or {}
    subject = {"type": "container", "bom-ref": f"{image}@{digest}", "name": image, "version": digest}
    by_ref: dict[str, dict[str, Any]] = {}
    for package in inventory.packages:  # one component per package URL (the same wheel in two venvs)
        component = _component(package, inventory.os_release)
        by_ref.setdefault(component["bom-ref"], component)
    components = list(by_ref.values())
    if inventory.os_release.get("ID"):
        components.append(
            {
                "type": "operating-system",
                "bom-ref": f"os:{inventory.os_release['ID']}",
                "name": inventory.os_release["ID"],
                "version": inventory.os_release.get("VERSION_ID", "unknown"),
                "description": inventory.os_release.get("PRETTY_NAME", ""),
            }
        )
    if labels.get(BASE_NAME_LABEL):
        base = {"type": "container", "bom-ref": f"base:{labels[BASE_NAME_LABEL]}", "name": labels[BASE_NAME_LABEL]}
        if labels.get(BASE_DIGEST_LABEL):
            base["version"] = labels[BASE_DIGEST_LABEL]
        components.append(base)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        # one serial number per image: the same image always gets the same one
        "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, f"{image}@{digest}").urn,
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "edge-deploy", "version": __version__}]},
            "component": subject,
        },
        "components": components,
        "dependencies": [{"ref": subject["bom-ref"], "dependsOn": [c["bom-ref"] for c in components]}],
    }


def write_json(document: Mapping[str, Any], out: IO[str]) -> None:
    json.dump(document, out, indent=2, sort_keys=False)
    out.write("\n")


def _text(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    handle = archive.extractfile(member)
    return handle.read().decode("utf-8", errors="replace") if handle else ""


def _python_package(metadata: str) -> Package | None:
    headers = HeaderParser().parsestr(metadata, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    license_text = headers.get("License-Expression") or _short_license(headers.get("License"))
    return Package("pypi", name.strip(), version.strip(), license_text)


def _short_license(value: str | None) -> str | None:
    # Some packages put their whole license text in the License field: keep only a name-sized one.
    if value and len(value) <= 100 and "\n" not in value.strip() and value.strip().upper() != "UNKNOWN":
        return value.strip()
    return None


def _debian_packages(status: str) -> list[Package]:
    found = []
    for stanza in status.split("\n\n"):
        fields = dict(_fields(stanza.splitlines()))
        if fields.get("Package") and fields.get("Version") and "installed" in fields.get("Status", "").split():
            found.append(Package("deb", fields["Package"], fields["Version"], None, fields.get("Architecture")))
    return found


def _fields(lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    for line in lines:
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            yield key, value.strip()


def _os_release(texts: Mapping[str, str]) -> dict[str, str]:
    text = texts.get("etc/os-release", "")
    if text.startswith("->") or not text:  # a link (Debian's is ../usr/lib/os-release)
        text = texts.get("usr/lib/os-release", "")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def _component(package: Package, os_release: Mapping[str, str]) -> dict[str, Any]:
    purl = _purl(package, os_release)
    component: dict[str, Any] = {
        "type": "library" if package.kind == "pypi" else "application",
        "bom-ref": purl,
        "name": package.name,
        "version": package.version,
        "purl": purl,
    }
    if package.license:
        component["licenses"] = [{"license": {"name": package.license}}]
    return component


def _purl(package: Package, os_release: Mapping[str, str]) -> str:
    """A package URL (github.com/package-url/purl-spec): pypi names lowercased with `-` for `_`."""
    version = quote(package.version, safe="")
    if package.kind == "pypi":
        return f"pkg:pypi/{quote(package.name.lower().replace('_', '-'), safe='')}@{version}"
    qualifiers = []
    if package.arch:
        qualifiers.append(f"arch={quote(package.arch, safe='')}")
    if os_release.get("ID") and os_release.get("VERSION_ID"):
        qualifiers.append(f"distro={quote(os_release['ID'] + '-' + os_release['VERSION_ID'], safe='')}")
    vendor = quote(os_release.get("ID", "debian"), safe="")
    suffix = "?" + "&".join(qualifiers) if qualifiers else ""
    return f"pkg:deb/{vendor}/{quote(package.name, safe='')}@{version}{suffix}"
