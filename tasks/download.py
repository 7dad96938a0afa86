"""Task `download_model`: the model directory, from lakeFS pinned to a commit, or a local directory."""

import tempfile
from pathlib import Path
from typing import NamedTuple

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy.config import Settings
from edge_deploy.errors import StorageError
from edge_deploy.storage import LakeFSLocation, Provenance, describe_local_directory
from tasks.cluster import BUILDER_IMAGE, LAKEFS_SECRETS, STANDARD_POD
from tasks.stage import reported_stage


class DownloadOutputs(NamedTuple):
    model_dir: FlyteDirectory
    provenance: Provenance


# Not cached: a branch ref moves, so the same inputs can name new content. Downstream stages are
# cached on the content (sha256) this task reports instead.
@task(
    retries=3,
    timeout=3600,
    requests=Resources(cpu="1", mem="1Gi"),
    container_image=BUILDER_IMAGE,
    pod_template=STANDARD_POD,
    secret_requests=LAKEFS_SECRETS,
)
def download_model(
    repo: str = "", ref: str = "main", prefix: str = "model/", local_dir: FlyteDirectory | None = None
) -> DownloadOutputs:
    """Download `lakefs://{repo}/{ref}/{prefix}` at the commit `ref` resolves to now.

    With `local_dir` (the embedded default, no lakeFS), that directory is the source instead.
    """
    with reported_stage("download"):
        if local_dir is not None:
            return DownloadOutputs(local_dir, describe_local_directory(Path(local_dir.download())))
        if not repo:
            raise StorageError("no model source: give repo (with ref and prefix) for lakeFS, or local_dir")
        from edge_deploy.storage.store import LakeFSStore  # lakefs-sdk and boto3 load only for a lakeFS source

        location = LakeFSLocation(repo, ref, prefix)
        target = Path(tempfile.mkdtemp(prefix="model-")) / "model"
        provenance = LakeFSStore(Settings.from_env().require_lakefs()).download(location, target)
        return DownloadOutputs(FlyteDirectory(str(target)), provenance)
