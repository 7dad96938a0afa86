"""The image stage's fan-out: one `build_image` per target, then the release index over all of them."""

from typing import NamedTuple

from flytekit import Resources, dynamic
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from edge_deploy.crypto import SealedFile
from edge_deploy.images.push import ReleaseResult
from edge_deploy.storage import Provenance
from edge_deploy.validation.report import ValidationReport
from tasks.cluster import BUILDER_IMAGE, STANDARD_POD
from tasks.images import build_image, push_release_index
from tasks.options import DeployOptions


class ReleaseOutputs(NamedTuple):
    release: ReleaseResult
    acceptance_pages: list[FlyteDirectory]  # one directory per target, for publish_deployment


# No timeout: for a dynamic node it would also bound the image builds it launches (each has its own).
@dynamic(
    requests=Resources(cpu="500m", mem="512Mi"),
    container_image=BUILDER_IMAGE,
    pod_template=STANDARD_POD,
)
def build_release(
    targets: list[str],
    sealed_model: FlyteFile,
    seal: SealedFile,
    serving: FlyteDirectory,
    photo_reference: FlyteDirectory,
    report: ValidationReport,
    provenance: Provenance,
    repository: str,
    options: DeployOptions,
    publish_branch: str = "",
) -> ReleaseOutputs:
    """Build and accept every target in parallel (one node each); push the index only when all succeeded."""
    if not options.build_images:
        return ReleaseOutputs(ReleaseResult([], None, None, False), [])
    repository = repository or provenance.repo
    release_tag = options.release_tag or provenance.commit_id[:12]
    built = [
        build_image(
            target=target,
            sealed_model=sealed_model,
            seal=seal,
            serving=serving,
            photo_reference=photo_reference,
            report=report,
            provenance=provenance,
            repository=repository,
            release_tag=release_tag,
            base_images=options.base_images,
            publish_branch=publish_branch,
        )
        for target in targets
    ]
    release = push_release_index(repository=repository, release_tag=release_tag, results=[b.result for b in built])
    return ReleaseOutputs(release, [b.acceptance_page for b in built])
