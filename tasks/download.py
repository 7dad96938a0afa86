"""Task `download_model`: a model directory from lakeFS, pinned to the commit its ref points at."""

import tempfile
from pathlib import Path
from typing import NamedTuple

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from edge_deploy.config import Settings
from edge_deploy.storage import LakeFSLocation, LakeFSStore, Provenance
from tasks.errors import retry_transient_failures


class DownloadOutputs(NamedTuple):
    model_dir: FlyteDirectory
    provenance: Provenance


# Not cached: a branch ref moves, so the same inputs can name new content. Downstream stages are
# cached on the content (sha256) this task reports instead.
@task(retries=3, timeout=3600, requests=Resources(cpu="1", mem="1Gi"))
def download_model(repo: str, ref: str, prefix: str = "model/") -> DownloadOutputs:
    """Download `lakefs://{repo}/{ref}/{prefix}` at the commit `ref` resolves to now."""
    location = LakeFSLocation(repo, ref, prefix)
    target = Path(tempfile.mkdtemp(prefix="model-")) / "model"
    with retry_transient_failures():
        provenance = LakeFSStore(Settings.from_env().require_lakefs()).download(location, target)
    return DownloadOutputs(FlyteDirectory(str(target)), provenance)
