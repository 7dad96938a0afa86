"""Tasks `record_deployment` (the run's last stage) and `record_failure` (the workflow's failure handler)."""

import logging
from pathlib import Path

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.error import FlyteError

from edge_deploy.config import Settings
from edge_deploy.conversion import ConversionResult
from edge_deploy.images.push import ReleaseResult
from edge_deploy.jobs.fence import FencedOff, check_fence
from edge_deploy.records import DeploymentRecord, ModelSource, open_record_store
from edge_deploy.records.assemble import assemble_record
from edge_deploy.status import RunTracker, open_status
from edge_deploy.status.timings import stage_timings
from edge_deploy.storage import Provenance, UploadResult
from edge_deploy.storage.results import local_model_name
from edge_deploy.validation.report import ValidationReport
from tasks.cluster import BUILDER_IMAGE, RECORD_SECRETS, STANDARD_POD
from tasks.errors import retry_transient_failures
from tasks.options import DEFAULT_OPTIONS, DeployOptions
from tasks.stage import current_run_id, reported_stage

log = logging.getLogger(__name__)


@task(
    retries=3,
    timeout=600,
    requests=Resources(cpu="500m", mem="512Mi"),
    container_image=BUILDER_IMAGE,
    pod_template=STANDARD_POD,
    secret_requests=RECORD_SECRETS,
)
def record_deployment(
    provenance: Provenance,
    conversion: ConversionResult,
    report: ValidationReport,
    release: ReleaseResult,
    upload: UploadResult | None,
) -> DeploymentRecord:
    """Write the succeeded record (an idempotent upsert keyed by run id) and end the live status."""
    run_id, settings = current_run_id(), Settings.from_env()
    status = open_status(settings)
    with reported_stage("record"):
        record = assemble_record(
            run_id, provenance, conversion, report, release, upload, timings=stage_timings(status, run_id)
        ).succeeded()
        _upsert(settings, record)
    RunTracker(status, run_id).succeeded()
    return record


@task(
    retries=3,
    timeout=600,
    requests=Resources(cpu="500m", mem="512Mi"),
    container_image=BUILDER_IMAGE,
    pod_template=STANDARD_POD,
    secret_requests=RECORD_SECRETS,
)
def record_failure(
    repo: str = "",
    ref: str = "main",
    prefix: str = "model/",
    local_dir: FlyteDirectory | None = None,
    targets: list[str] | None = None,
    repository: str = "",
    publish_branch: str = "",
    options: DeployOptions = DEFAULT_OPTIONS,
    err: FlyteError | None = None,
) -> None:
    """The workflow's failure handler: the run's record says which stage failed and why.

    It takes the workflow's inputs (Flyte hands them over), so the model is known by repo/ref (the
    commit may never have been resolved); the failed stage comes from the live status.
    """
    run_id, settings = current_run_id(), Settings.from_env()
    try:
        check_fence(run_id, "recording the failure", settings)
    except FencedOff as exc:  # another attempt holds the run: its outcome is the run's, not this one
        log.warning("%s", exc)
        return
    status = open_status(settings)
    progress = status.progress(run_id)
    stage = progress.stage if progress and progress.stage else (err.failed_node_id if err else "") or "unknown"
    error = (progress.error if progress and progress.error else None) or (err.message if err else "unknown error")
    local_name = local_model_name(Path(local_dir.path)) if local_dir else "local"
    source = ModelSource(
        repo or local_name, ref if repo else (local_dir.path if local_dir else "local"), "", prefix if repo else ""
    )
    record = DeploymentRecord.new(run_id, source).updated(timings=stage_timings(status, run_id)).failed(stage, error)
    _upsert(settings, record)
    RunTracker(status, run_id).failed(stage, error)
    log.error("run %s failed in stage %s: %s", run_id, stage, error)


def _upsert(settings: Settings, record: DeploymentRecord) -> None:
    store = open_record_store(settings)
    try:
        with retry_transient_failures():
            earlier = store.get(record.run_id)
            if earlier is not None:  # keep when the run started, whatever wrote first
                record = record.updated(created_at=earlier.created_at)
            store.upsert(record)
    finally:
        store.close()
