"""Tasks `build_image` (one target) and `push_release_index`, which the `@dynamic` `build_release`
(tasks/release.py) calls once per target and then once for the index.

No release index is pushed unless every target's image was built and pushed: the index task
takes all the per-target results, so it runs only when each of them succeeded.
"""

import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from flytekit import Deck, Resources, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from edge_deploy.acceptance.reference import REFERENCE_FILE
from edge_deploy.config import Secret, Settings
from edge_deploy.crypto import SealedFile
from edge_deploy.crypto.keyring import exported_key
from edge_deploy.files import sha256_file
from edge_deploy.images.context import SealedModel
from edge_deploy.images.push import (
    AcceptanceInputs,
    ImageProvenance,
    ReleaseRequest,
    ReleaseResult,
    TargetResult,
    accept_candidate,
    build_candidate,
    push_index,
    release_candidate,
)
from edge_deploy.platforms import detect_targets
from edge_deploy.signing.provenance import REPORT_NAME, ImageEvidence, now
from edge_deploy.status import LockTarget, open_locks
from edge_deploy.storage import Provenance
from edge_deploy.validation.report import ValidationReport
from tasks.cluster import BUILDER_IMAGE, DOCKER_KEY_POD, REGISTRY_SECRETS, SIGNING_SECRETS, STANDARD_POD
from tasks.platforms import BACKEND
from tasks.stage import current_run_id, reported_stage

LOCK_WAIT_SECONDS = 600.0


class BuiltImage(NamedTuple):
    result: TargetResult
    # acceptance-<device class>.html (PyTorch's answers and the image's, photo by photo), which
    # publish_deployment publishes with the validation report; empty when nothing was accepted
    acceptance_page: FlyteDirectory


@task(
    retries=2,
    timeout=3600,
    requests=Resources(cpu="1", mem="2Gi"),
    container_image=BUILDER_IMAGE,
    pod_template=DOCKER_KEY_POD,
    secret_requests=REGISTRY_SECRETS,
    enable_deck=True,
)
def build_image(
    target: str,
    sealed_model: FlyteFile,
    seal: SealedFile,
    serving: FlyteDirectory,
    photo_reference: FlyteDirectory,
    report: ValidationReport,
    provenance: Provenance,
    repository: str,
    release_tag: str,
    base_images: dict[str, str],
    publish_branch: str = "",
) -> BuiltImage:
    """Build, accept and push the image of one device class; skipped when its content tag is already pushed.

    Three stages: `build` (the image, without its validation labels), `accept` (run as a device on
    the gate's photos: a difference from PyTorch fails the run here, and nothing is pushed), `push`
    (labelled, then pushed). A lock on model + commit + target keeps two runs from building the same
    image at once.
    """
    run_id, settings = current_run_id(), Settings.from_env()
    lock = LockTarget(provenance.repo, provenance.commit_id, target)
    with open_locks(settings).hold(lock, run_id, wait=LOCK_WAIT_SECONDS):
        with reported_stage("build"):
            request = release_request(
                sealed_model, seal, serving, report, provenance, repository, release_tag, base_images, photo_reference,
                publish_branch,
            )  # fmt: skip
            candidate = build_candidate(request, detect_targets([target], BACKEND)[0], settings)
        with reported_stage("accept"):
            try:
                acceptance = accept_candidate(candidate, request)
            finally:  # the page is read most when acceptance failed
                _show_page(target, request)
        with reported_stage("push"):
            result = release_candidate(candidate, acceptance, request)
    pages = request.acceptance.report_dir if request.acceptance else Path(tempfile.mkdtemp(prefix="acceptance-"))
    return BuiltImage(result, FlyteDirectory(str(pages)))


@task(
    retries=3,
    timeout=600,
    requests=Resources(cpu="500m", mem="512Mi"),
    container_image=BUILDER_IMAGE,
    pod_template=STANDARD_POD,
    secret_requests=SIGNING_SECRETS,
)
def push_release_index(repository: str, release_tag: str, results: list[TargetResult]) -> ReleaseResult:
    """The multi-arch index over every target's image, under the release tag."""
    with reported_stage("index"):
        return push_index(repository, release_tag, results, Settings.from_env())


def release_request(
    sealed_model: FlyteFile,
    seal: SealedFile,
    serving: FlyteDirectory,
    report: ValidationReport,
    provenance: Provenance,
    repository: str,
    release_tag: str,
    base_images: dict[str, str],
    photo_reference: FlyteDirectory | None = None,
    publish_branch: str = "",
) -> ReleaseRequest:
    model = SealedModel(
        name=Path(report.shipped_onnx).name,
        sealed_path=Path(sealed_model.download()),
        model_sha256=seal.plaintext_sha256,
        key_id=seal.key_id,
        serving_dir=Path(serving.download()),
        custom_ops=tuple(report.structure.custom_ops),
    )
    # The image's source is the model version it ships: its lakeFS location, at its commit.
    image_provenance = ImageProvenance(
        source=provenance.uri,
        revision=provenance.commit_id,
        lakefs_repository=None if provenance.local else provenance.repo,
        lakefs_commit=None if provenance.local else provenance.commit_id,
        validation_status="passed" if report.passed else "failed",
        loosened=tuple(report.loosened),
    )
    return ReleaseRequest(
        model,
        [],
        repository,
        release_tag,
        image_provenance,
        base_images,
        acceptance=_acceptance(photo_reference, seal),
        evidence=_evidence(model, seal, report, provenance, publish_branch),
    )


def _evidence(
    model: SealedModel, seal: SealedFile, report: ValidationReport, provenance: Provenance, publish_branch: str
) -> ImageEvidence:
    """What the images are made from, for their provenance (signed in push_release_index)."""
    report_file = model.serving_dir / REPORT_NAME if model.serving_dir else None
    return ImageEvidence(
        model_name=model.name,
        onnx_sha256=report.shipped_sha256,
        sealed_sha256=seal.ciphertext_sha256 or sha256_file(model.sealed_path),
        key_id=seal.key_id,
        report_sha256=sha256_file(report_file) if report_file and report_file.is_file() else "",
        validation_status="passed" if report.passed else "failed",
        run_id=current_run_id(),
        lakefs_repository=None if provenance.local else provenance.repo,
        lakefs_commit=None if provenance.local else provenance.commit_id,
        lakefs_ref=None if provenance.local else provenance.ref,
        publish_branch=None if provenance.local else publish_branch or provenance.ref,
        source_prefix=provenance.prefix,
        source_files=list(provenance.files),
        started_on=now(),
        task_image=os.environ.get("EDGE_TASK_IMAGE", ""),  # baked into the task images by ci/build-image.sh
    )


def _acceptance(photo_reference: FlyteDirectory | None, seal: SealedFile) -> AcceptanceInputs | None:
    """The gate's photo reference and the sealing key, which the image under acceptance reads as a
    device would; None when the gate could not answer the photos (its report says why)."""
    if photo_reference is None:
        return None
    directory = Path(photo_reference.download())
    if not (directory / REFERENCE_FILE).is_file():
        return None
    pages = Path(tempfile.mkdtemp(prefix="acceptance-"))
    return AcceptanceInputs(directory, {seal.key_id: Secret(exported_key(seal.key_id))}, pages)


def _show_page(target: str, request: ReleaseRequest) -> None:
    """The acceptance page (PyTorch's answers and the image's, photo by photo) as a Deck."""
    page = request.acceptance.report_path(target) if request.acceptance else None
    if page is not None and page.is_file():
        Deck(f"Acceptance: {target}", page.read_text())
