"""Task `publish_deployment`: the edge artifacts published to `{branch}/{prefix}` in lakeFS.

Write-audit-publish (edge_deploy.storage.publish): the artifacts are committed on a work branch
named after the run, the commit is audited, and it is merged into the branch as one commit, which
the deployment record names. A retry of the task resumes the run's work branch.
For a local source (the embedded default) there is no lakeFS: the artifacts stay in
EDGE_WORK_DIR/runs/{run_id}/edge and the task says where.
"""

import logging
from pathlib import Path
from typing import NamedTuple

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from edge_deploy import __version__
from edge_deploy.config import Settings
from edge_deploy.conversion import ConversionResult
from edge_deploy.crypto import DirectoryFile
from edge_deploy.images.push import ReleaseResult
from edge_deploy.publish import assemble_artifacts
from edge_deploy.records.assemble import assemble_record
from edge_deploy.status import open_status
from edge_deploy.status.timings import stage_timings
from edge_deploy.storage import Provenance, UploadResult
from edge_deploy.validation.report import ValidationReport
from tasks.cluster import BUILDER_IMAGE, LAKEFS_SECRETS, STANDARD_POD
from tasks.stage import current_run_id, reported_stage

log = logging.getLogger(__name__)


class PublishOutputs(NamedTuple):
    artifacts: FlyteDirectory
    upload: UploadResult | None


@task(
    retries=3,
    timeout=3600,
    requests=Resources(cpu="1", mem="1Gi"),
    container_image=BUILDER_IMAGE,
    pod_template=STANDARD_POD,
    secret_requests=LAKEFS_SECRETS,
)
def publish_deployment(
    validated_dir: FlyteDirectory,
    sealed_model: FlyteFile,
    report: ValidationReport,
    provenance: Provenance,
    conversion: ConversionResult,
    release: ReleaseResult,
    decrypted_files: list[DirectoryFile],
    acceptance_pages: list[FlyteDirectory] | None = None,
    branch: str = "",
    prefix: str = "edge/",
) -> PublishOutputs:
    """Assemble the artifacts (model, SDK metadata, reports, acceptance pages, images.json, record.json)
    and publish them.

    `branch` defaults to the source ref and is created from the source commit when it does not
    exist; the published commit carries the source repo/ref/commit, the producer version and the
    run id.
    """
    with reported_stage("publish"):
        run_id, settings = current_run_id(), Settings.from_env()
        record = assemble_record(
            run_id, provenance, conversion, report, release, timings=stage_timings(open_status(settings), run_id)
        ).succeeded()
        out_dir = settings.work_dir / "runs" / run_id / "edge"
        assemble_artifacts(
            Path(validated_dir.download()),
            Path(sealed_model.download()),
            report.shipped_onnx,
            out_dir,
            record,
            release,
            source_was_encrypted=any(f.encrypted for f in decrypted_files),
            acceptance_pages=[Path(pages.download()) for pages in acceptance_pages or []],
        )
        if provenance.local:
            log.info("local source: artifacts are in %s (nothing published to lakeFS)", out_dir)
            return PublishOutputs(FlyteDirectory(str(out_dir)), None)
        from edge_deploy.storage.store import LakeFSStore  # lakefs-sdk and boto3 load only when publishing

        upload = LakeFSStore(settings.require_lakefs()).upload(
            source=out_dir,
            repo=provenance.repo,
            branch=branch or provenance.ref,
            prefix=prefix,
            # a new publish branch starts at the commit the model came from
            create_branch_from=provenance.commit_id,
            message=f"edge artifacts for {provenance.uri} (run {run_id})",
            metadata={
                "source_repo": provenance.repo,
                "source_ref": provenance.ref,
                "source_commit": provenance.commit_id,
                "source_prefix": provenance.prefix,
                "producer": f"edge-deploy {__version__}",
                "run_id": run_id,
            },
            run_id=run_id,
        )
        return PublishOutputs(FlyteDirectory(str(out_dir)), upload)
