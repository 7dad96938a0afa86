"""`edge-deploy download`, `publish` and `publish-cleanup`: the lakeFS storage stage from a shell."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_deploy.config import Settings
from edge_deploy.storage import LakeFSLocation

if TYPE_CHECKING:
    from edge_deploy.storage.store import LakeFSStore

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _store() -> LakeFSStore:
    from edge_deploy.storage.store import LakeFSStore  # lakefs-sdk and boto3 load only when a command runs

    return LakeFSStore(Settings.from_env(dotenv=Path(".env")).require_lakefs())


def _seconds(_ctx, _param, value: str) -> float:
    unit = value[-1:].lower()
    if unit not in DURATION_UNITS or not value[:-1].isdigit():
        raise click.BadParameter(f"{value!r}: give a number with a unit, like 90m, 24h or 7d")
    return int(value[:-1]) * DURATION_UNITS[unit]


@click.command()
@click.argument("uri")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the provenance as JSON.")
def download(uri: str, dest: Path, as_json: bool) -> None:
    """Download lakefs://REPO/REF/PREFIX into DEST (a new directory), pinned to one commit."""
    provenance = _store().download(LakeFSLocation.parse(uri), dest)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(provenance), indent=2))
    else:
        click.echo(f"{provenance.uri}: {len(provenance.files)} files, {provenance.total_bytes} bytes -> {dest}")


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("uri")
@click.option("--message", default="", help="Commit message.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Commit metadata (repeatable).")
@click.option("--create-from", default=None, metavar="REF", help="Create the branch from REF if missing.")
@click.option("--run-id", default=None, help="Names the work branch, so a rerun resumes it (default: from content).")
@click.option("--json", "as_json", is_flag=True, help="Print the upload result as JSON.")
def publish(
    source: Path,
    uri: str,
    message: str,
    meta: tuple[str, ...],
    create_from: str | None,
    run_id: str | None,
    as_json: bool,
) -> None:
    """Make lakefs://REPO/BRANCH/[PREFIX, default edge/] hold exactly the files of SOURCE.

    Write-audit-publish: the files are committed on a work branch, the commit is checked, and
    it is merged into BRANCH as one commit; nothing is committed when BRANCH holds them already.
    """
    location = LakeFSLocation.parse(uri, default_prefix="edge/")
    metadata = dict(item.split("=", 1) for item in meta if "=" in item)
    result = _store().upload(
        source,
        location.repo,
        location.ref,
        location.prefix,
        message,
        metadata,
        create_branch_from=create_from,
        run_id=run_id,
    )
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
    elif result.committed:
        click.echo(f"published {result.commit_id} ({len(result.uploaded)} changed, {len(result.deleted)} deleted)")
    else:
        click.echo(f"unchanged: lakefs://{result.repo}/{result.branch}/{result.prefix} already holds these files")


@click.command("publish-cleanup")
@click.argument("repo")
@click.option("--run-id", default=None, help="Delete this run's work branches, whatever their age.")
@click.option(
    "--older-than",
    default="24h",
    callback=_seconds,
    show_default=True,
    help="Delete work branches older than this (30m, 24h, 7d); a live publish is never that old.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
def publish_cleanup(repo: str, run_id: str | None, older_than: float, dry_run: bool) -> None:
    """Delete work branches that crashed publishes left in lakeFS repository REPO."""
    from edge_deploy.storage.work_branches import remove_work_branches

    removed = remove_work_branches(_store(), repo, run_id=run_id, older_than=older_than, dry_run=dry_run)
    for name in removed:
        click.echo(f"{'would delete' if dry_run else 'deleted'} lakefs://{repo}/{name}")
    click.echo(f"{len(removed)} abandoned work branch(es) {'to delete' if dry_run else 'deleted'}")


commands = [download, publish, publish_cleanup]
