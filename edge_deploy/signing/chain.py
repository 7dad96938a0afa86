"""`edge-deploy verify`: an image's chain of evidence, walked link by link.

    signature          the image's manifest carries a cosign signature by the key
    provenance         an SLSA provenance whose subject is this digest, signed by the key
    labels             the image's labels say what the provenance says
    sbom               the SBOM the provenance names is attached to the image
    sealed-model       the sealed model inside the image has the provenance's sha256
    validation-report  the report the run published in lakeFS says passed, names the provenance's
                       ONNX sha256, and has the provenance's sha256
    source-model       the model's files at the provenance's lakeFS commit have its sha256s

Each link is `ok`, `broken` (with what differs), `unreached` (no lakeFS access, or a model from a
local directory: the registry's links are still checked) or `skipped` (after a broken link, since
every link leans on the ones before it). A multi-platform index is checked as a signed manifest,
then each of its images as above.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge_deploy.errors import NotFoundError
from edge_deploy.images.registry import DOCKER_MANIFEST_LIST, OCI_INDEX, RegistryClient
from edge_deploy.signing.attest import attached_sbom, verified_statements
from edge_deploy.signing.keys import PublicKey
from edge_deploy.signing.provenance import SLSA_PROVENANCE, Provenance
from edge_deploy.signing.verify import SignatureError, verify_image

if TYPE_CHECKING:
    from edge_deploy.storage.store import LakeFSStore

OK, BROKEN, UNREACHED, SKIPPED = "ok", "broken", "unreached", "skipped"
LINKS = ("signature", "provenance", "labels", "sbom", "sealed-model", "validation-report", "source-model")
SEALED_MODEL_PATH = "opt/edge/model/model.onnx.enc"  # where images/edge/Dockerfile puts it
MAX_LOG_COMMITS = 5000  # commits searched for the run's publish commit
LABEL = "io.edge-deploy"


@dataclass(frozen=True)
class Link:
    name: str
    status: str
    detail: str


@dataclass
class ImageChain:
    digest: str
    platform: str = ""
    links: list[Link] = field(default_factory=list)

    @property
    def first_broken(self) -> Link | None:
        return next((link for link in self.links if link.status == BROKEN), None)


@dataclass
class ChainReport:
    image: str  # the reference asked about
    digest: str  # what it resolved to
    index_signature: Link | None  # for a multi-platform index: its own signature
    images: list[ImageChain]

    @property
    def first_broken(self) -> tuple[str, Link] | None:
        """(digest, link) of the first broken link, the index's signature first."""
        if self.index_signature and self.index_signature.status == BROKEN:
            return self.digest, self.index_signature
        for chain in self.images:
            if chain.first_broken:
                return chain.digest, chain.first_broken
        return None

    def to_dict(self) -> dict[str, Any]:
        broken = self.first_broken
        return asdict(self) | {
            "verified": broken is None,
            "first_broken": None if broken is None else {"digest": broken[0], **asdict(broken[1])},
        }


class BrokenLink(Exception):
    """Raised inside a check: the link is broken, for the reason given."""


class Unreached(Exception):
    """Raised inside a check: the link could not be checked from here, for the reason given."""


@dataclass
class _Walk:
    registry: RegistryClient
    repository: str
    digest: str
    key: PublicKey
    lakefs: LakeFSStore | None
    manifest: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None

    @property
    def proven(self) -> Provenance:
        assert self.provenance is not None
        return self.provenance


def verify_chain(
    registry: RegistryClient, repository: str, reference: str, key: PublicKey, lakefs: LakeFSStore | None = None
) -> ChainReport:
    """Walk the chain of `repository:reference` (a tag or a digest; an image or an index)."""
    shown = f"{registry.repository_reference(repository)}{'@' if reference.startswith('sha256:') else ':'}{reference}"
    if registry.manifest_digest(repository, reference) is None:
        raise NotFoundError(f"{shown} is not in the registry: check the repository and the tag or digest")
    top = registry.get_manifest(repository, reference)
    if top.media_type not in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        return ChainReport(shown, top.digest, None, [_walk(registry, repository, top.digest, "", key, lakefs)])
    index_link = _signature_link(registry, repository, top.digest, key)
    images = [
        _walk(registry, repository, entry["digest"], _platform(entry.get("platform") or {}), key, lakefs)
        for entry in top.document.get("manifests") or []
        if (entry.get("platform") or {}).get("os") != "unknown"  # build attestations pushed by buildx
    ]
    return ChainReport(shown, top.digest, index_link, images)


def _walk(
    registry: RegistryClient, repository: str, digest: str, platform: str, key: PublicKey, lakefs: LakeFSStore | None
) -> ImageChain:
    walk = _Walk(registry, repository, digest, key, lakefs)
    walk.manifest = registry.get_manifest(repository, digest).document
    chain = ImageChain(digest, platform)
    checks: tuple[Callable[[_Walk], str], ...] = (
        _check_signature,
        _check_provenance,
        _check_labels,
        _check_sbom,
        _check_sealed_model,
        _check_report,
        _check_source,
    )
    for name, check in zip(LINKS, checks, strict=True):
        if chain.first_broken:
            chain.links.append(Link(name, SKIPPED, f"not checked: the {chain.first_broken.name} link is broken"))
            continue
        try:
            chain.links.append(Link(name, OK, check(walk)))
        except BrokenLink as exc:
            chain.links.append(Link(name, BROKEN, str(exc)))
        except Unreached as exc:
            chain.links.append(Link(name, UNREACHED, str(exc)))
    return chain


# -- the registry's links --------------------------------------------------------------------------------------


def _signature_link(registry: RegistryClient, repository: str, digest: str, key: PublicKey) -> Link:
    try:
        found = verify_image(registry, repository, digest, key, identity=registry.repository_reference(repository))
    except SignatureError as exc:
        return Link("signature", BROKEN, str(exc))
    return Link("signature", OK, f"signed by key {key.fingerprint()[:16]} (signature {found.signature_digest})")


def _check_signature(walk: _Walk) -> str:
    link = _signature_link(walk.registry, walk.repository, walk.digest, walk.key)
    if link.status == BROKEN:
        raise BrokenLink(link.detail)
    return link.detail


def _check_provenance(walk: _Walk) -> str:
    found, rejected = verified_statements(walk.registry, walk.repository, walk.digest, SLSA_PROVENANCE, walk.key)
    for statement in found:
        try:
            provenance = Provenance.parse(statement.payload)
        except (ValueError, KeyError, TypeError):
            rejected.append(f"{statement.manifest_digest}: not an SLSA provenance statement")
            continue
        if walk.digest not in provenance.subject_digests:
            rejected.append(f"{statement.manifest_digest}: its subject is {', '.join(provenance.subject_digests)}")
            continue
        walk.provenance = provenance
        return f"SLSA provenance {statement.manifest_digest} (run {provenance.run_id})"
    reasons = f" ({'; '.join(rejected)})" if rejected else ""
    raise BrokenLink(f"no SLSA provenance about {walk.digest} signed by key {walk.key.fingerprint()[:16]}{reasons}")


def _check_labels(walk: _Walk) -> str:
    labels = walk.registry.image_labels(walk.repository, walk.digest)
    expected = _expected_labels(walk.proven)
    differ = [
        f"{name} is {labels.get(name)!r}, the provenance says {value!r}"
        for name, value in expected.items()
        if labels.get(name, "") != value
    ]
    if differ:
        raise BrokenLink("; ".join(differ))
    return f"{len(expected)} labels agree with the provenance"


def _expected_labels(provenance: Provenance) -> dict[str, str]:
    parameters = provenance.predicate["buildDefinition"]["externalParameters"]
    source = provenance.material("source-model")
    report = provenance.material("validation-report") or {}
    acceptance = provenance.material("acceptance") or {}
    expected = {
        f"{LABEL}.model.sha256": provenance.sha256_of("onnx-model") or "",
        f"{LABEL}.model.key-id": ((provenance.material("sealed-model") or {}).get("annotations") or {}).get(
            "keyId", ""
        ),
        f"{LABEL}.validation.status": (report.get("annotations") or {}).get("status", ""),
        f"{LABEL}.acceptance.status": str((acceptance.get("annotations") or {}).get("status", "")),
        f"{LABEL}.device-class": parameters.get("deviceClass", ""),
        f"{LABEL}.platform": parameters.get("platform", ""),
    }
    if source:
        repository, commit = _lakefs_source(source)
        expected |= {f"{LABEL}.lakefs.repository": repository, f"{LABEL}.lakefs.commit": commit}
    return expected


def _check_sbom(walk: _Walk) -> str:
    named = walk.proven.sbom_digest
    if named is None:
        raise Unreached("the provenance names no SBOM")
    attached = attached_sbom(walk.registry, walk.repository, walk.digest)
    if attached != named:
        raise BrokenLink(f"the provenance names SBOM {named}; the image has {attached or 'none'} attached")
    document = json.loads(walk.registry.get_blob(walk.repository, named))  # checked against its digest
    return f"CycloneDX {document.get('specVersion')} SBOM {named} ({len(document.get('components') or [])} components)"


def _check_sealed_model(walk: _Walk) -> str:
    expected = walk.proven.sha256_of("sealed-model")
    for layer in reversed(walk.manifest.get("layers") or []):  # the model is the last layer
        found = _file_sha256_in_layer(walk, layer["digest"], SEALED_MODEL_PATH)
        if found is None:
            continue
        if found != expected:
            raise BrokenLink(f"/{SEALED_MODEL_PATH} in the image has sha256 {found}, the provenance says {expected}")
        return f"/{SEALED_MODEL_PATH} has the provenance's sha256 {found[:16]}"
    raise BrokenLink(f"the image has no /{SEALED_MODEL_PATH}")


def _file_sha256_in_layer(walk: _Walk, layer_digest: str, path: str) -> str | None:
    with tempfile.TemporaryFile() as spool:
        walk.registry.download_blob(walk.repository, layer_digest, spool)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:*") as archive:
            for member in archive:
                if member.name.lstrip("./") == path and member.isfile():
                    return _sha256_of(archive.extractfile(member))
    return None


def _sha256_of(stream: IO[bytes] | None) -> str:
    assert stream is not None
    hasher = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        hasher.update(chunk)
    return hasher.hexdigest()


# -- lakeFS's links -----------------------------------------------------------------------------------------------


def _lakefs_source(source: dict[str, Any]) -> tuple[str, str]:
    """(repository, commit) of the source-model material (lakefs://repo/commit/prefix)."""
    return source["uri"].removeprefix("lakefs://").split("/")[0], source["digest"]["lakefsCommit"]


def _lakefs(walk: _Walk) -> tuple[LakeFSStore, str, str, str]:
    """(store, repository, commit, prefix) of the model's source; Unreached when there is none."""
    source = walk.proven.material("source-model")
    if source is None:
        raise Unreached("the model came from a local directory: there is nothing in lakeFS to check")
    if walk.lakefs is None:
        raise Unreached("no lakeFS access (set EDGE_LAKEFS_ENDPOINT and its keys to check this link)")
    repository, commit = _lakefs_source(source)
    prefix = source["uri"].removeprefix("lakefs://").split("/", 2)[2]
    return walk.lakefs, repository, commit, prefix


def _check_report(walk: _Walk) -> str:
    store, repository, commit, _ = _lakefs(walk)
    material = walk.proven.material("validation-report") or {}
    path = (material.get("annotations") or {}).get("path", "")
    parameters = walk.proven.predicate["buildDefinition"]["externalParameters"]
    ref = parameters.get("publishBranch") or parameters.get("ref") or commit
    published = _publish_commit(store, repository, ref, walk.proven.run_id, commit)
    where = f"lakefs://{repository}/{published}/{path}"
    data = store.read_object(repository, published, path)
    try:
        report = json.loads(data)
    except ValueError:
        raise BrokenLink(f"{where} is not JSON") from None
    if report.get("passed") is not True:
        raise BrokenLink(f"{where} says the model failed validation: {report.get('failure') or 'no reason given'}")
    onnx = walk.proven.sha256_of("onnx-model")
    if report.get("shipped_sha256") != onnx:
        raise BrokenLink(f"{where} names ONNX sha256 {report.get('shipped_sha256')}, the provenance says {onnx}")
    found, expected = hashlib.sha256(data).hexdigest(), (material.get("digest") or {}).get("sha256")
    if found != expected:
        raise BrokenLink(f"{where} has sha256 {found}, the provenance says {expected}")
    return f"{where} says passed for ONNX {onnx[:16]} and has the provenance's sha256"


def _publish_commit(store: LakeFSStore, repository: str, ref: str, run_id: str, source_commit: str) -> str:
    """The commit on `ref` that the run published (its metadata names the run and the source commit)."""
    for count, (commit_id, metadata) in enumerate(store.log_commits(repository, ref)):
        if metadata.get("run_id") == run_id and metadata.get("source_commit") == source_commit:
            return commit_id
        if count >= MAX_LOG_COMMITS:
            break
    raise BrokenLink(f"no commit on lakefs://{repository}/{ref} was published by run {run_id} from {source_commit}")


def _check_source(walk: _Walk) -> str:
    store, repository, commit, prefix = _lakefs(walk)
    expected = {
        entry["name"].removeprefix("source-model/"): entry["digest"]["sha256"]
        for entry in walk.proven.materials_under("source-model/")
    }
    from edge_deploy.storage.paths import LakeFSLocation  # with the lakeFS client, only when it is used

    with tempfile.TemporaryDirectory(prefix="verify-source-") as scratch:
        downloaded = store.download(LakeFSLocation(repository, commit, prefix), Path(scratch) / "model", lambda _: None)
    found = {entry.path: entry.sha256 for entry in downloaded.files}
    differ = [
        f"{path}: {'missing' if path not in found else 'sha256 ' + found[path]}, the provenance says {sha}"
        for path, sha in sorted(expected.items())
        if found.get(path) != sha
    ] + [f"{path}: at the commit, not in the provenance" for path in sorted(set(found) - set(expected))]
    if differ:
        raise BrokenLink(f"lakefs://{repository}/{commit}/{prefix}: " + "; ".join(differ))
    return f"{len(found)} files at lakefs://{repository}/{commit}/{prefix} have the provenance's sha256s"


def _platform(platform: dict[str, str]) -> str:
    return "/".join(
        part for part in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if part
    )
