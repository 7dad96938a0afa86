"""`LakeFSStore`: the lakeFS client with the pipeline's two stages, download and publish.

The stages live in `download` and `publish` (written against `client.LakeFSClient`); this class is
the one name callers need.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from edge_deploy.storage.client import LakeFSClient, RemoteObject
from edge_deploy.storage.download import download
from edge_deploy.storage.paths import LakeFSLocation
from edge_deploy.storage.publish import Publication, publish
from edge_deploy.storage.results import Provenance, UploadResult

log = logging.getLogger(__name__)

__all__ = ["LakeFSStore", "RemoteObject"]


class LakeFSStore(LakeFSClient):
    # -- the two stages ------------------------------------------------------------------------------------------

    def download(self, location: LakeFSLocation, dest: Path, show: Callable[[str], None] = log.info) -> Provenance:
        """Download `location` into `dest` (which must not exist or be empty) at a pinned commit."""
        return download(self, location, Path(dest), show)

    def upload(
        self,
        source: Path,
        repo: str,
        branch: str,
        prefix: str = "edge/",
        message: str = "",
        metadata: dict[str, str] | None = None,
        create_branch_from: str | None = None,
        run_id: str | None = None,
        show: Callable[[str], None] = log.info,
    ) -> UploadResult:
        """Publish `source` so that `{branch}/{prefix}` holds exactly its files (write-audit-publish).

        See `edge_deploy.storage.publish`: a work branch, one commit, an audit, one merge.
        """
        publication = Publication.of(
            Path(source), repo, branch, prefix, message, dict(metadata or {}), create_branch_from, run_id
        )
        return publish(self, publication, show)
