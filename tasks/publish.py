"""Task `publish_artifacts`: commit an artifacts directory to `{branch}/{prefix}` in lakeFS."""

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy import __version__
from edge_deploy.config import Settings
from edge_deploy.storage import LakeFSStore, Provenance, UploadResult
from tasks.errors import retry_transient_failures


@task(retries=3, timeout=3600, requests=Resources(cpu="1", mem="1Gi"))
def publish_artifacts(
    artifacts: FlyteDirectory,
    source: Provenance,
    branch: str,
    prefix: str = "edge/",
    run_id: str = "",
    create_branch_from: str = "",
) -> UploadResult:
    """Upload `artifacts` next to the model they came from and commit with provenance metadata.

    The commit lands in the source repository; `create_branch_from` creates `branch` from that ref
    first when the branch does not exist yet.
    """
    metadata = {
        "source_repo": source.repo,
        "source_ref": source.ref,
        "source_commit": source.commit_id,
        "source_prefix": source.prefix,
        "producer": f"edge-deploy {__version__}",
        "run_id": run_id,
    }
    with retry_transient_failures():
        return LakeFSStore(Settings.from_env().require_lakefs()).upload(
            source=artifacts.download(),
            repo=source.repo,
            branch=branch,
            prefix=prefix,
            message=f"edge artifacts for {source.uri}",
            metadata=metadata,
            create_branch_from=create_branch_from or None,
        )
