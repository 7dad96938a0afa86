"""The build, accept and push stages: one image per target, content-addressed, then a multi-platform index.

For each target (`build_target`, or its three steps one by one):
- `build_candidate`: resolve the base (in the engine, or pulled), prepare the runtime layer
  (cached), compute the content tag; if the registry already has that tag, nothing is built or
  pushed and its digest is returned (only accepted images are ever pushed); else build (COPY-only)
  without the validation labels;
- `accept_candidate`: run it as a device on the gate's photos (`edge_deploy.acceptance`); a
  difference from PyTorch raises `AcceptanceFailed` and removes the candidate;
- `release_candidate`: add the validation and acceptance labels (a LABEL-only build: the layers
  stay those that were run), tag, and push with the SDK, capturing the manifest digest.
Last, an index over all targets goes under the release tag (skipped when it already holds it), so
`docker pull --platform linux/arm64 <repo>:<release tag>` gets the arm64 image.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import docker
import docker.errors

from edge_deploy.acceptance.accept import (
    FAILED,
    AcceptanceFailed,
    TargetAcceptance,
    accept_image,
)
from edge_deploy.config import RegistrySettings, Secret, Settings
from edge_deploy.errors import TransientError
from edge_deploy.images import build as engine
from edge_deploy.images.context import (
    DOCKERFILE,
    SealedModel,
    model_metadata,
    prepare_runtime_layer,
    render_dockerfile,
    runtime_code_digest,
    write_build_context,
)
from edge_deploy.images.errors import RegistryAuthError, RegistryError, RegistryUnavailableError
from edge_deploy.images.operators import operator_library
from edge_deploy.images.registry import IndexEntry, RegistryClient
from edge_deploy.images.tags import TagInputs, check_tag, content_tag, dockerfile_sha256
from edge_deploy.platforms import BuildTarget, OciPlatform, build_mode
from edge_deploy.policy import loosened_base_images
from edge_deploy.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from edge_deploy.sbom import Inventory, Package, cyclonedx
from edge_deploy.signing.attach import sign_image
from edge_deploy.signing.attest import attach_sbom, attached_sbom, attest, verified_statements
from edge_deploy.signing.keys import Signer
from edge_deploy.signing.provenance import SLSA_PROVENANCE, ImageEvidence, provenance_statement
from edge_deploy.signing.release_signer import release_signer
from edge_deploy.signing.verify import SignatureError, verify_image

log = logging.getLogger(__name__)

LABEL_PREFIX = "io.edge-deploy"
# Labels only an image that passed acceptance carries (added after it, with the acceptance's own).
RELEASE_LABELS = (f"{LABEL_PREFIX}.validation.status",)
_TRANSIENT_PUSH_ERRORS = ("connection refused", "i/o timeout", "no such host", "connection reset", "eof", "503", "502")
# what the provenance says of the acceptance run (the rest is timing)
ACCEPTANCE_FIELDS = ("status", "mode", "photos", "compared", "detail", "open_inference_protocol")
_AUTH_PUSH_ERRORS = ("unauthorized", "authentication required", "denied", "forbidden")


@dataclass(frozen=True)
class ImageProvenance:
    source: str  # org.opencontainers.image.source: where the pipeline's code lives
    revision: str  # org.opencontainers.image.revision: its commit
    lakefs_repository: str | None = None
    lakefs_commit: str | None = None
    validation_status: str = "not-validated"  # passed | failed | not-validated
    loosened: tuple[str, ...] = ()  # the gate's settings that weakened it (edge_deploy.policy), as the report says


@dataclass(frozen=True)
class ReleaseRequest:
    model: SealedModel
    targets: Sequence[BuildTarget]
    repository: str  # under EDGE_REGISTRY, e.g. "models/resnet18"
    release_tag: str  # the index's tag, e.g. the model version
    provenance: ImageProvenance
    base_images: Mapping[str, str] = field(default_factory=dict)  # device class -> base reference (overrides)
    dockerfile: Path = DOCKERFILE
    acceptance: AcceptanceInputs | None = None  # None: images are released without being run (tests of the build)
    evidence: ImageEvidence | None = None  # what the images are made from: their signed provenance says it


@dataclass(frozen=True)
class AcceptanceInputs:
    """What the acceptance stage needs: the gate's photo reference and the key that opens the model."""

    reference_dir: Path  # the gate's photo-reference/
    keys: Mapping[str, Secret]  # key id -> base64 KEK, handed to the image as a file while it runs
    report_dir: Path | None = None  # where acceptance-<device class>.html goes (photos side by side)

    def report_path(self, device_class: str) -> Path | None:
        return self.report_dir / f"acceptance-{device_class}.html" if self.report_dir else None


@dataclass(frozen=True)
class TargetResult:
    device_class: str
    platform: str
    reference: str  # registry/repository:content-tag
    digest: str | None  # manifest digest in the registry (None when not pushed)
    size: int  # bytes in the registry (config + compressed layers); local uncompressed size when not pushed
    built: bool
    pushed: bool
    image_id: str | None = None
    build_mode: str = "native"
    seconds: float = 0.0  # the whole target, including the registry check
    build_seconds: float = 0.0
    push_seconds: float = 0.0
    acceptance: TargetAcceptance | None = None  # how the image answered when run as a device
    loosened: list[str] = field(default_factory=list)  # safety checks weakened for it (edge_deploy.policy)
    evidence: ImageEvidence | None = None  # the provenance's materials, signed with the release
    sbom_digest: str | None = None  # the CycloneDX document attached to the image in the registry

    @property
    def pinned_reference(self) -> str:
        return f"{self.reference.rsplit(':', 1)[0]}@{self.digest}" if self.digest else self.reference


@dataclass(frozen=True)
class ReleaseResult:
    targets: list[TargetResult]
    index_reference: str | None
    index_digest: str | None
    index_pushed: bool
    # manifest digest (each target's and the index's) -> the digest of its signature (EDGE_SIGNING_KEY)
    signatures: dict[str, str] = field(default_factory=dict)
    # image digest -> the digest of its signed provenance attestation (EDGE_SIGNING_KEY)
    attestations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def build_and_push(
    request: ReleaseRequest,
    settings: Settings,
    client: docker.DockerClient | None = None,
    *,
    push: bool = True,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
) -> ReleaseResult:
    """Build every target (unless its content tag is already in the registry), push, and push the index."""
    if not request.targets:
        raise ValueError("a release needs at least one build target")
    results = [
        build_target(request, target, settings, client, push=push, retry_policy=retry_policy)
        for target in request.targets
    ]
    return push_index(request.repository, request.release_tag, results, settings, push=push, retry_policy=retry_policy)


def build_target(
    request: ReleaseRequest,
    target: BuildTarget,
    settings: Settings,
    client: docker.DockerClient | None = None,
    *,
    push: bool | None = None,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
) -> TargetResult:
    """Build (unless its content tag is already in the registry), accept and push the image of one target:
    `build_candidate`, `accept_candidate`, `release_candidate` in a row (the Flyte task reports each as
    its own stage). `push=None` pushes when a registry is configured (EDGE_REGISTRY)."""
    candidate = build_candidate(request, target, settings, client, push=push, retry_policy=retry_policy)
    acceptance = accept_candidate(candidate, request)
    return release_candidate(candidate, acceptance, request, retry_policy=retry_policy)


@dataclass
class Candidate:
    """A target's image built but not yet accepted, labelled or pushed."""

    target: BuildTarget
    reference: str  # where it goes: registry/repository:content-tag (edge/<repository>:tag without a registry)
    labels: dict[str, str]  # the labels it gets once accepted
    client: docker.DockerClient
    registry: RegistryClient | None
    host: OciPlatform
    mode: str
    started: float
    image_id: str | None = None  # None when the registry already holds the tag
    existing_digest: str | None = None
    built: bool = False
    build_seconds: float = 0.0
    loosened: list[str] = field(default_factory=list)
    evidence: ImageEvidence | None = None
    inventory_cache: Path | None = None  # per base image + runtime layer: what decides the packages in the image


def build_candidate(
    request: ReleaseRequest,
    target: BuildTarget,
    settings: Settings,
    client: docker.DockerClient | None = None,
    *,
    push: bool | None = None,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
) -> Candidate:
    """The image of one target, built without its validation labels (or found in the registry: then
    it was accepted when it was pushed, and nothing is built)."""
    check_tag(request.release_tag)
    registry = _registry(settings, push, retry_policy)
    if registry is not None:
        registry.check_access(request.repository)  # wrong password or registry down: fail before building
    client = client or engine.engine_client()
    host = engine.engine_platform(client)
    started = time.monotonic()
    mode = build_mode(target, host)
    base = engine.resolve_base(client, request.base_images.get(target.name, target.spec.base_image), target.platform)
    # before anything is built: a platform that cannot have the model's operators is refused here
    operators = operator_library(request.model.custom_ops, target.spec.runtime, str(target.platform), settings.work_dir)
    layer = prepare_runtime_layer(target.spec.runtime, str(target.platform), settings.work_dir)
    dockerfile = render_dockerfile(target, request.dockerfile)
    metadata = model_metadata(target, request.model, _provenance_metadata(request.provenance), operators)
    labels = image_labels(request, target)
    loosening = _loosening(request, target, settings)
    if loosening:  # the trace a weakened check leaves on what it produced
        labels[f"{LABEL_PREFIX}.policy.loosened"] = "; ".join(loosening)
    inputs = TagInputs(
        device_class=target.name,
        platform=str(target.platform),
        base_image_id=base.image_id,
        runtime_layer_digest=layer.digest,
        model_sha256=request.model.model_sha256,
        key_id=request.model.key_id,
        runtime_code_digest=runtime_code_digest(),
        dockerfile_sha256=dockerfile_sha256(dockerfile),
        model_metadata=metadata,
        labels=labels,
    )
    tag = content_tag(inputs)
    labels[f"{LABEL_PREFIX}.content-digest"] = inputs.digest()
    local_repository = (
        registry.reference(request.repository, tag).rsplit(":", 1)[0] if registry else f"edge/{request.repository}"
    )
    candidate = Candidate(target, f"{local_repository}:{tag}", labels, client, registry, host, mode, started)
    candidate.loosened = loosening
    inventory_key = f"{base.image_id.removeprefix('sha256:')[:24]}-{layer.digest.removeprefix('sha256:')[:24]}"
    candidate.inventory_cache = settings.work_dir / "sbom-inventories" / f"{inventory_key}.json"
    if request.evidence is not None:
        candidate.evidence = replace(
            request.evidence, base_image=base.reference, base_image_id=base.image_id, runtime_layer_digest=layer.digest
        )
    if registry is not None:
        existing = registry.manifest_digest(request.repository, tag)
        if existing:
            log.info("%s: %s is already in the registry (%s): nothing to build or push", target.name, tag, existing)
            candidate.existing_digest = existing
            return candidate
    build_started = time.monotonic()
    unlabelled = {k: v for k, v in labels.items() if k not in RELEASE_LABELS}
    candidate.image_id, candidate.built = _local_or_built(
        client, request, target, layer, base, unlabelled, candidate.reference, settings, operators
    )
    candidate.build_seconds = time.monotonic() - build_started
    return candidate


def accept_candidate(candidate: Candidate, request: ReleaseRequest) -> TargetAcceptance | None:
    """Run the candidate as a device and compare its answers with the gate's photo reference; raise
    `AcceptanceFailed`, naming the target and the difference, when it does not answer alike. None when
    there is nothing to run (already in the registry) or the request asks for no acceptance."""
    if request.acceptance is None or candidate.image_id is None:
        return None
    target = candidate.target
    keys = {key_id: secret.reveal() for key_id, secret in request.acceptance.keys.items()}
    signature = request.model.shipped_signature()
    # a signed model is run as a device that requires its signature: the image must start that way too
    device_env = (
        {"EDGE_REQUIRE_SIGNED_MODEL": "true", "EDGE_SIGNING_PUBLIC_KEY": signature.public_pem}
        if signature is not None and signature.public_pem
        else {}
    )
    acceptance = accept_image(
        candidate.client,
        candidate.image_id,
        target.name,
        str(target.platform),
        candidate.host,
        request.acceptance.reference_dir,
        keys,
        report_path=request.acceptance.report_path(target.name),
        environment=device_env,
    )
    log.info("%s: acceptance %s (%s)", target.name, acceptance.status, acceptance.detail)
    if acceptance.status == FAILED:
        _discard(candidate)
        raise AcceptanceFailed(f"target {target.name} ({target.platform}) failed acceptance: {acceptance.detail}")
    return acceptance


def release_candidate(
    candidate: Candidate,
    acceptance: TargetAcceptance | None,
    request: ReleaseRequest,
    *,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
) -> TargetResult:
    """Label the accepted image (validation status, acceptance) and push it where a registry is set."""
    target, client, registry = candidate.target, candidate.client, candidate.registry

    def result(digest: str | None, size: int, **outcome) -> TargetResult:
        return TargetResult(
            target.name,
            str(target.platform),
            candidate.reference,
            digest,
            size,
            build_mode=candidate.mode,
            seconds=time.monotonic() - candidate.started,
            build_seconds=candidate.build_seconds,
            acceptance=acceptance,
            loosened=candidate.loosened,
            evidence=candidate.evidence,
            **outcome,
        )

    if candidate.existing_digest is not None:
        assert registry is not None
        manifest = registry.get_manifest(request.repository, candidate.existing_digest)
        sbom = attached_sbom(registry, request.repository, candidate.existing_digest)
        return result(candidate.existing_digest, manifest.image_size, built=False, pushed=False, sbom_digest=sbom)
    assert candidate.image_id is not None
    added = {k: v for k, v in candidate.labels.items() if k in RELEASE_LABELS} | acceptance_labels(acceptance)
    image_id = candidate.image_id
    if any(client.images.get(image_id).labels.get(k) != v for k, v in added.items()):
        image_id = engine.label_image(client, image_id, {**candidate.labels, **added})
    repository, tag = candidate.reference.rsplit(":", 1)
    engine.tag_image(client, image_id, repository, tag)
    if registry is None:
        size = int(client.images.get(image_id).attrs.get("Size", 0))
        return result(None, size, built=candidate.built, pushed=False, image_id=image_id)
    push_started = time.monotonic()
    digest = push_image(client, candidate.reference, registry.settings, retry_policy)
    push_seconds = time.monotonic() - push_started
    manifest = registry.get_manifest(request.repository, digest)
    log.info("%s: pushed %s (%s, %d bytes)", target.name, candidate.reference, digest, manifest.image_size)
    sbom = attach_sbom(registry, request.repository, digest, _sbom_document(candidate, image_id, digest))
    return result(
        digest,
        manifest.image_size,
        built=candidate.built,
        pushed=True,
        image_id=image_id,
        push_seconds=push_seconds,
        sbom_digest=sbom,
    )


def _sbom_document(candidate: Candidate, image_id: str, digest: str) -> bytes:
    """The image's CycloneDX SBOM. Its packages come from the base and the runtime layer only (the
    model and code layers hold no package), so they are read once per pair and kept in EDGE_WORK_DIR."""
    cache = candidate.inventory_cache
    try:
        cached = json.loads(cache.read_text()) if cache else {}
        inventory = Inventory([Package(**p) for p in cached["packages"]], cached["os_release"])
    except (OSError, ValueError, KeyError, TypeError):
        inventory = engine.image_inventory(candidate.client, image_id)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(asdict(inventory)))
            partial.replace(cache)
    labels = candidate.client.images.get(image_id).labels or {}
    name = candidate.reference.rsplit(":", 1)[0]
    return json.dumps(cyclonedx(inventory, name, digest, labels), indent=1).encode()


def acceptance_labels(acceptance: TargetAcceptance | None) -> dict[str, str]:
    if acceptance is None:
        return {f"{LABEL_PREFIX}.acceptance.status": "not-run", f"{LABEL_PREFIX}.acceptance.detail": "not asked"}
    return {
        f"{LABEL_PREFIX}.acceptance.status": acceptance.status,
        f"{LABEL_PREFIX}.acceptance.photos": str(acceptance.photos),
        f"{LABEL_PREFIX}.acceptance.detail": acceptance.detail[:500],
    }


def _discard(candidate: Candidate) -> None:
    """A candidate that failed acceptance is removed, so no later step or run can ship it."""
    with contextlib.suppress(docker.errors.DockerException):
        candidate.client.images.remove(candidate.image_id, force=True)


def push_index(
    repository: str,
    release_tag: str,
    results: Sequence[TargetResult],
    settings: Settings,
    *,
    push: bool | None = None,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
) -> ReleaseResult:
    """Push the multi-platform index over `results` under `release_tag` (nothing to push without a registry)."""
    check_tag(release_tag)
    registry = _registry(settings, push, retry_policy)
    if registry is None or not results:
        return ReleaseResult(list(results), None, None, False)
    entries = [_index_entry(registry, repository, r) for r in results]
    index_digest, index_pushed = registry.put_index(repository, release_tag, entries)
    index_reference = registry.reference(repository, release_tag)
    log.info("index %s -> %s (%s)", index_reference, index_digest, "pushed" if index_pushed else "unchanged")
    signatures, attestations = {}, {}
    if settings.signs:
        signatures, attestations = sign_release(registry, repository, results, index_digest, settings)
    return ReleaseResult(list(results), index_reference, index_digest, index_pushed, signatures, attestations)


def sign_release(
    registry: RegistryClient,
    repository: str,
    results: Sequence[TargetResult],
    index_digest: str,
    settings: Settings,
) -> tuple[dict[str, str], dict[str, str]]:
    """Sign each image and the index with EDGE_SIGNING_KEY, and attach each image's signed provenance.
    What a signature or a provenance by that key already covers is not signed again (a re-run adds
    nothing). Returns (digest -> signature manifest digest, image digest -> attestation manifest digest)."""
    key = release_signer(settings)
    assert key is not None, "push_index signs only when settings.signs"
    identity = registry.repository_reference(repository)  # what the payloads name, without a tag
    signatures, attestations = {}, {}
    for result in results:
        if result.digest is None:
            continue
        signatures[result.digest] = _signature(registry, repository, result.digest, key, identity)
        if result.evidence is not None:
            attestations[result.digest] = _provenance(registry, repository, result, key, identity)
    signatures[index_digest] = _signature(registry, repository, index_digest, key, identity)
    return signatures, attestations


def _signature(registry: RegistryClient, repository: str, digest: str, key: Signer, identity: str) -> str:
    try:
        return verify_image(registry, repository, digest, key.public, identity=identity).signature_digest
    except SignatureError:
        return sign_image(registry, repository, digest, key, identity=identity).signature_digest


def _provenance(registry: RegistryClient, repository: str, result: TargetResult, key: Signer, identity: str) -> str:
    assert result.digest is not None and result.evidence is not None
    existing, _ = verified_statements(registry, repository, result.digest, SLSA_PROVENANCE, key.public)
    if existing:
        return existing[0].manifest_digest
    if result.acceptance is not None:
        acceptance = {k: v for k, v in asdict(result.acceptance).items() if k in ACCEPTANCE_FIELDS}
    else:  # already in the registry from an earlier run: what its labels say of the run that pushed it
        acceptance = _acceptance_labelled(registry, repository, result.digest)
    evidence = replace(result.evidence, task_image_digest=task_image_digest(registry, result.evidence.task_image))
    statement = provenance_statement(
        identity, result.digest, evidence, acceptance, result.sbom_digest, result.device_class, result.platform
    )
    return attest(registry, repository, result.digest, statement, SLSA_PROVENANCE, key).signature_digest


def task_image_digest(registry: RegistryClient, reference: str) -> str:
    """The manifest digest of the task image `reference` when it is on the release's registry (ACR holds
    both); "" otherwise, or when it is not there."""
    name, _, tag = reference.rpartition(":")
    prefix = registry.settings.server.rstrip("/") + "/"
    if not reference.startswith(prefix) or "/" in tag or not tag:
        return ""
    try:
        return registry.manifest_digest(name.removeprefix(prefix), tag) or ""
    except RegistryError:
        return ""


def _acceptance_labelled(registry: RegistryClient, repository: str, digest: str) -> dict[str, str] | None:
    labels = registry.image_labels(repository, digest)
    prefix = f"{LABEL_PREFIX}.acceptance."
    found = {name.removeprefix(prefix): value for name, value in labels.items() if name.startswith(prefix)}
    return found or None


def _registry(settings: Settings, push: bool | None, retry_policy: RetryPolicy) -> RegistryClient | None:
    if push is False or (push is None and not settings.registry):
        return None
    return RegistryClient(settings.require_registry(), retry_policy)


def _local_or_built(client, request, target, layer, base, labels, reference, settings, operators) -> tuple[str, bool]:
    """The image already tagged `reference` in the engine (same content tag: same content), else a new build."""
    try:
        return client.images.get(reference).id, False
    except docker.errors.ImageNotFound:
        pass
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="edge-build-", dir=settings.work_dir))
    try:
        context = write_build_context(
            scratch / "context",
            target,
            layer,
            request.model,
            dockerfile=render_dockerfile(target, request.dockerfile),
            extra_metadata=_provenance_metadata(request.provenance),
            operators=operators,
        )
        build_args = {"EDGE_PROVIDERS": ",".join(target.spec.execution_providers)}
        built = engine.build_image(client, context, base, labels, build_args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    repository, tag = reference.rsplit(":", 1)
    engine.tag_image(client, built.image_id, repository, tag)
    log.info("%s: built %s (%d bytes)", target.name, reference, built.size)
    return built.image_id, True


def push_image(
    client: docker.DockerClient, reference: str, registry: RegistrySettings, policy: RetryPolicy = DEFAULT_POLICY
) -> str:
    """Push with the engine; returns the manifest digest. Transient failures are retried (bounded)."""
    repository, tag = reference.rsplit(":", 1)
    auth = {"username": registry.username, "password": registry.password.reveal()} if registry.password else None

    def attempt() -> str:
        digest = None
        for chunk in client.api.push(repository, tag, stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                raise _push_error(chunk["error"], reference, registry)
            digest = (chunk.get("aux") or {}).get("Digest", digest)
        if not digest:
            raise RegistryError(f"pushing {reference}: the engine reported no digest")
        return digest

    try:
        return call_with_retry(attempt, f"push {reference}", policy)
    except RegistryUnavailableError:
        raise
    except TransientError as exc:
        raise RegistryUnavailableError(f"pushing {reference} failed: {exc}") from None


def _loosening(request: ReleaseRequest, target: BuildTarget, settings: Settings) -> list[str]:
    """What weakens this image's proof: the gate's settings, and its base image when it is an override
    outside EDGE_ALLOWED_BASE_IMAGES."""
    overridden = {target.name: request.base_images[target.name]} if target.name in request.base_images else {}
    bases = loosened_base_images(overridden, settings.allowed_base_images)
    return [*request.provenance.loosened, *(str(item) for item in bases)]


def image_labels(request: ReleaseRequest, target: BuildTarget) -> dict[str, str]:
    provenance = request.provenance
    return {
        "org.opencontainers.image.source": provenance.source,
        "org.opencontainers.image.revision": provenance.revision,
        "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.title": request.model.name,
        f"{LABEL_PREFIX}.model.sha256": request.model.model_sha256,
        f"{LABEL_PREFIX}.model.key-id": request.model.key_id,
        f"{LABEL_PREFIX}.lakefs.repository": provenance.lakefs_repository or "",
        f"{LABEL_PREFIX}.lakefs.commit": provenance.lakefs_commit or "",
        f"{LABEL_PREFIX}.validation.status": provenance.validation_status,
        f"{LABEL_PREFIX}.platform": str(target.platform),
        f"{LABEL_PREFIX}.device-class": target.name,
    }


def _provenance_metadata(provenance: ImageProvenance) -> dict[str, object]:
    return {
        "lakefs_repository": provenance.lakefs_repository,
        "lakefs_commit": provenance.lakefs_commit,
        "validation_status": provenance.validation_status,
        "source_revision": provenance.revision,
    }


def _index_entry(registry: RegistryClient, repository: str, result: TargetResult) -> IndexEntry:
    assert result.digest is not None
    manifest = registry.get_manifest(repository, result.digest)
    return IndexEntry(
        manifest.media_type, manifest.digest, len(manifest.body), OciPlatform.parse(result.platform).to_oci()
    )


def _push_error(message: str, reference: str, registry: RegistrySettings) -> Exception:
    lowered = message.lower()
    if any(marker in lowered for marker in _AUTH_PUSH_ERRORS):
        who = f"user {registry.username!r}" if registry.username else "anonymous access"
        return RegistryAuthError(
            f"registry {registry.host} refused the push of {reference} for {who}; "
            "check EDGE_REGISTRY_USERNAME and EDGE_REGISTRY_PASSWORD"
        )
    if any(marker in lowered for marker in _TRANSIENT_PUSH_ERRORS):
        return TransientError(message.strip()[:300])
    return RegistryError(f"pushing {reference}: {message.strip()[:300]}")
