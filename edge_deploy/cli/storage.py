"""`edge-deploy download` and `edge-deploy publish`: the lakeFS storage stage from a shell."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from edge_deploy.config import Settings
from edge_deploy.storage import LakeFSLocation, LakeFSStore


def _store() -> LakeFSStore:
    return LakeFSStore(Settings.from_env(dotenv=Path(".env")).require_lakefs())


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
@click.option("--json", "as_json", is_flag=True, help="Print the upload result as JSON.")
def publish(source: Path, uri: str, message: str, meta: tuple[str, ...], create_from: str | None, as_json: bool):
    """Make lakefs://REPO/BRANCH/[PREFIX, default edge/] hold exactly the files of SOURCE, and commit."""
    location = LakeFSLocation.parse(uri, default_prefix="edge/")
    metadata = dict(item.split("=", 1) for item in meta if "=" in item)
    result = _store().upload(
        source, location.repo, location.ref, location.prefix, message, metadata, create_branch_from=create_from
    )
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
    elif result.committed:
        click.echo(f"committed {result.commit_id} ({len(result.uploaded)} uploaded, {len(result.deleted)} deleted)")
    else:
        click.echo(f"unchanged: lakefs://{result.repo}/{result.branch}/{result.prefix} already holds these files")


commands = [download, publish]
