"""`deployments list|show|latest`, `status RUN_ID [--follow]`, `sync`: what was shipped, and how a run goes.

Records come from MongoDB when MONGODB_URI is set, else from the embedded SQLite file in
EDGE_WORK_DIR; live status from REDIS_URL. `--json` prints what a script should read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from edge_deploy.config import Settings
from edge_deploy.errors import ConfigError, EdgeDeployError
from edge_deploy.records.model import RUN_STATES, DeploymentRecord
from edge_deploy.records.store import RecordQuery, RecordStore, open_record_store
from edge_deploy.records.sync import DirectorySource, RecordSource, SyncReport, lakefs_source, sync_records
from edge_deploy.status.events import STAGE_FAILED, STAGE_FINISHED, STAGE_STARTED, RunProgress, StageEvent

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@contextmanager
def _record_store() -> Iterator[RecordStore]:
    store = open_record_store(Settings.from_env())
    try:
        yield store
    finally:
        store.close()


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


RECORD_COLUMNS = ("RUN", "MODEL", "COMMIT", "STATUS", "PLATFORMS", "CREATED")


def _record_rows(records: list[DeploymentRecord]) -> list[tuple[str, ...]]:
    rows = []
    for record in records:
        platforms = ",".join(image.platform for image in record.images.platforms) if record.images else "-"
        state = record.status.state
        if record.status.failed_stage:
            state += f" ({record.status.failed_stage})"
        rows.append(
            (record.run_id, record.model.repo, record.model.commit_id[:12], state, platforms, record.created_at[:19])
        )
    return rows


def _records_table(records: list[DeploymentRecord]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in RECORD_COLUMNS:
        table.add_column(column, no_wrap=column != "PLATFORMS")
    for row in _record_rows(records):
        table.add_row(*row)
    return table


def _describe(record: DeploymentRecord) -> str:
    model = record.model
    lines = [
        f"run        {record.run_id}",
        f"model      lakefs://{model.repo}/{model.commit_id}/{model.prefix} (ref {model.ref})",
        f"status     {record.status.state}"
        + (f" at stage {record.status.failed_stage}: {record.status.error}" if record.status.failed_stage else ""),
        f"created    {record.created_at}   updated {record.updated_at}",
    ]
    if record.conversion:
        conversion = record.conversion
        lines.append(
            f"onnx       sha256:{conversion.onnx_sha256} ({conversion.onnx_size} bytes), opset {conversion.opset}, "
            f"{conversion.deploy_profile}, mmdeploy {conversion.mmdeploy_version}, torch {conversion.torch_version}"
        )
    if record.validation:
        validation = record.validation
        worst = ", ".join(f"{item.output} {item.max_abs_error:.3g}" for item in validation.worst_errors) or "-"
        lines.append(
            f"validation {'passed' if validation.passed else 'FAILED'}; worst abs error: {worst}; "
            f"latency p50 {validation.latency_p50_ms:.2f} ms, p95 {validation.latency_p95_ms:.2f} ms"
        )
    for item in record.loosened:  # a weakened check is shown before what it produced
        lines.append(f"LOOSENED   {item}")
    if record.images:
        lines.append(f"index      {record.images.index_reference}@{record.images.index_digest}")
        for image in record.images.platforms:
            lines.append(f"  {image.platform:<14} {image.reference}@{image.digest}")
            if image.acceptance:
                lines.append(f"  {'':<14} acceptance {image.acceptance.summary()}")
    if record.published:
        published = record.published
        lines.append(
            f"published  lakefs://{published.repo}/{published.branch}/{published.prefix} (commit {published.commit_id})"
        )
    if record.timings:
        lines.append("timings    " + ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in record.timings.items()))
    return "\n".join(lines)


# -- deployments --------------------------------------------------------------------------------


@click.group("deployments")
def deployments() -> None:
    """Deployment records: what was shipped for which model version, and where."""


@deployments.command("list")
@click.option("--model", "model_repo", help="Only this model's lakeFS repository.")
@click.option("--status", "state", type=click.Choice(RUN_STATES), help="Only runs in this state.")
@click.option("--since", help="Only runs updated at or after this UTC time (ISO 8601).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def list_command(model_repo: str | None, state: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """List deployment records, newest first."""
    with _record_store() as store:
        records = store.find(RecordQuery(model_repo=model_repo, state=state, since=since, limit=limit))
    if as_json:
        _print_json([record.to_dict() for record in records])
    elif records and sys.stdout.isatty():
        Console().print(_records_table(records))
    elif records:  # a pipe or a file: whole values, tab-separated, never cut to a terminal's width
        for row in [RECORD_COLUMNS, *_record_rows(records)]:
            click.echo("\t".join(row))
    else:
        click.echo("no deployment records match", err=True)


@deployments.command("show")
@click.argument("run_id")
@json_option
def show_command(run_id: str, as_json: bool) -> None:
    """Show one run's deployment record."""
    with _record_store() as store:
        record = store.get(run_id)
        if record is None:
            raise EdgeDeployError(f"no deployment record for run {run_id!r} in {store.where}")
    click.echo(record.to_json().rstrip() if as_json else _describe(record))


@deployments.command("latest")
@click.argument("model_repo")
@click.option("--platform", help="Only runs with an image for this OCI platform, e.g. linux/arm64.")
@click.option("--prefix", help="Only models under this lakeFS prefix, e.g. model/.")
@json_option
def latest_command(model_repo: str, platform: str | None, prefix: str | None, as_json: bool) -> None:
    """The latest successful deployment of MODEL_REPO (and its image for --platform)."""
    with _record_store() as store:
        record = store.latest_successful(model_repo, prefix=prefix, platform=platform)
        if record is None:
            for_platform = f" with an image for {platform}" if platform else ""
            raise EdgeDeployError(f"no successful deployment of {model_repo!r}{for_platform} in {store.where}")
    image = record.image_for(platform) if platform else None
    if as_json:
        _print_json({"image": asdict(image) if image else None, "record": record.to_dict()})
    elif image:
        click.echo(f"{image.reference}@{image.digest}")
        click.echo(f"run {record.run_id}, commit {record.model.commit_id}, updated {record.updated_at}", err=True)
    else:
        click.echo(_describe(record))


# -- status -------------------------------------------------------------------------------------


def _event_line(event: StageEvent) -> str:
    took = f" in {event.seconds:.2f}s" if event.seconds is not None else ""
    error = f": {event.error}" if event.error else ""
    return f"{event.at[11:19]} {event.kind:<14} {event.stage}{took}{error}"


class FollowView:
    """The live display of `status --follow`: a progress bar and one row per stage."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.stages: dict[str, tuple[str, str]] = {}  # stage -> (state, time)
        self.progress = 0.0
        self.state = "running"

    def update(self, event: StageEvent, progress: RunProgress | None) -> None:
        if progress is not None:
            self.progress, self.state = progress.progress, progress.state
        took = f"{event.seconds:.2f}s" if event.seconds is not None else ""
        if event.kind == STAGE_STARTED:
            self.stages[event.stage] = ("running", "")
        elif event.kind == STAGE_FINISHED:
            self.stages[event.stage] = ("done", took)
        elif event.kind == STAGE_FAILED:
            self.stages[event.stage] = (f"failed: {event.error}", took)
        elif event.ends_run:
            self.state = "succeeded" if event.kind == "run-succeeded" else "failed"
            self.progress = 1.0 if self.state == "succeeded" else self.progress

    def render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        table.add_column("STAGE")
        table.add_column("STATE")
        table.add_column("TIME", justify="right")
        for stage, (state, took) in self.stages.items():
            style = "green" if state == "done" else "red" if state.startswith("failed") else "yellow"
            table.add_row(stage, Text(state, style=style), took)
        header = Table.grid(padding=(0, 2))
        header.add_row(
            ProgressBar(total=1.0, completed=self.progress, width=30),
            Text(f"run {self.run_id}: {self.state}, {self.progress:.0%}"),
        )
        return Group(header, table)


def _progress_json(progress: RunProgress, source: str) -> dict[str, Any]:
    return {**asdict(progress), "source": source}


def _show_status(settings: Settings, run_id: str, as_json: bool) -> None:
    from edge_deploy.status import open_status

    progress = open_status(settings).progress(run_id)
    source = "live"
    if progress is None:
        with _record_store() as store:
            record = store.get(run_id)
            if record is None:
                raise EdgeDeployError(f"no live status and no deployment record for run {run_id!r}")
        status = record.status
        last_stage = status.failed_stage or next(reversed(record.timings), "")
        done = 1.0 if status.state == "succeeded" else 0.0
        progress = RunProgress(run_id, last_stage, status.state, done, record.updated_at, status.error)
        source = "record"
    if as_json:
        _print_json(_progress_json(progress, source))
    else:
        error = f": {progress.error}" if progress.error else ""
        click.echo(
            f"run {run_id}: {progress.state}, stage {progress.stage or '-'}, {progress.progress:.0%}, "
            f"updated {progress.updated_at}{error}"
        )


def _follow(settings: Settings, run_id: str, as_json: bool, idle_timeout: float | None) -> None:
    from edge_deploy.status import open_status

    if settings.redis_url is None:
        raise ConfigError(
            f"cannot follow run {run_id!r}: set REDIS_URL (without it, live status exists only inside the running "
            "process); `deployments show` has the record of finished runs"
        )
    status = open_status(settings)
    events = status.follow(run_id, idle_timeout=idle_timeout)
    if as_json:
        for event in events:
            click.echo(json.dumps(asdict(event)))
    elif sys.stdout.isatty():
        view = FollowView(run_id)
        with Live(view.render(), refresh_per_second=8, transient=False) as live:
            for event in events:
                view.update(event, status.progress(run_id))
                live.update(view.render())
    else:
        for event in events:
            click.echo(_event_line(event))


@click.command("status")
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Replay the run's stages, then show new ones live until it ends.")
@click.option("--idle-timeout", type=float, help="With --follow: stop after this many seconds without news.")
@json_option
def status_command(run_id: str, follow: bool, idle_timeout: float | None, as_json: bool) -> None:
    """Where a run is now (stage, progress), or its stages live with --follow."""
    settings = Settings.from_env()
    try:
        if follow:
            _follow(settings, run_id, as_json, idle_timeout)
        else:
            _show_status(settings, run_id, as_json)
    except KeyboardInterrupt:
        sys.exit(130)


# -- sync ---------------------------------------------------------------------------------------


def _lakefs(repo: str, ref: str, prefix: str) -> RecordSource:
    from edge_deploy.storage import LakeFSStore

    return lakefs_source(LakeFSStore(Settings.from_env().require_lakefs()), repo, ref, prefix)


def _report_text(report: SyncReport) -> str:
    lines = [
        f"synced from {report.source}: {len(report.imported)} imported, {len(report.already_current)} already "
        f"current, {len(report.newer_in_store)} newer in the store, {len(report.failed)} failed"
    ]
    lines += [f"  imported {run_id}" for run_id in report.imported]
    lines += [f"  failed   {location}: {reason}" for location, reason in report.failed]
    return "\n".join(lines)


@click.command("sync")
@click.option(
    "--from-lakefs", "lakefs_repo", metavar="REPO", help="Read record.json files from this lakeFS repository."
)
@click.option("--ref", help="With --from-lakefs: the branch (or commit) to read.")
@click.option("--prefix", default="edge/", show_default=True, help="With --from-lakefs: where the records live.")
@click.option(
    "--from-dir", "directory", type=click.Path(path_type=Path), help="Read every record.json under this directory."
)
@json_option
def sync_command(lakefs_repo: str | None, ref: str | None, prefix: str, directory: Path | None, as_json: bool) -> None:
    """Re-import record.json files into the record store (after MongoDB was down, say)."""
    if bool(lakefs_repo) == bool(directory):
        raise click.UsageError("give exactly one of --from-lakefs REPO --ref BRANCH or --from-dir DIR")
    if lakefs_repo and not ref:
        raise click.UsageError("--from-lakefs needs --ref BRANCH")
    source = _lakefs(lakefs_repo, ref, prefix) if lakefs_repo and ref else DirectorySource(Path(str(directory)))
    with _record_store() as store:
        report = sync_records(source, store)
    if as_json:
        _print_json({**asdict(report), "failed": [{"location": at, "reason": why} for at, why in report.failed]})
    else:
        click.echo(_report_text(report))
    if not report.ok:
        raise EdgeDeployError(f"{len(report.failed)} record file(s) could not be imported (listed above)")


commands = [deployments, status_command, sync_command]
