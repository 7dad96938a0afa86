"""`edge-deploy serve`, `edge-deploy worker` and `edge-deploy api-token`: the deployment service.

    edge-deploy serve [--host H] [--port P]   the API (app/main.py); without REDIS_URL it also runs
                                              the queue and one worker in its own process
    edge-deploy worker                        takes jobs from the Redis queue, one at a time, each
                                              in a child process (needs REDIS_URL)
    edge-deploy worker-alive [--max-age S]    exit 0 when this pod's worker loop turned lately (its
                                              container's liveness and readiness probe)
    edge-deploy api-token --name N --scope S  a new static API token and its line for the tokens file

The service lives in `app/`, outside this library; these commands import it only when run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import click

from edge_deploy.errors import ConfigError, EdgeDeployError

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default=None, help="Address to listen on.  [default: EDGE_API_HOST or 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port.  [default: EDGE_API_PORT or 8000]")
def serve(host: str | None, port: int | None) -> None:
    """Run the deployment API (and, without REDIS_URL, its queue and one worker)."""
    import uvicorn

    from app.core.config import ServiceSettings
    from app.main import create_app

    settings = ServiceSettings.from_env()
    _let_job_processes_import_app()
    host = host or settings.host
    port = settings.port if port is None else port
    settings.check_bind(host)
    if settings.base.redis_url is None:
        log.info("no REDIS_URL: the queue, the live status and one worker run inside this process")
    # uvicorn's access log prints query strings; the service logs one line per request itself.
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")


@click.command()
def worker() -> None:
    """Take deployment jobs from the Redis queue and run each in a process of its own."""
    from app.core.config import ServiceSettings
    from app.run.executors import JOB_COMMAND, executor_health
    from edge_deploy.jobs.liveness import alive_file
    from edge_deploy.jobs.redis_queue import RedisJobQueue
    from edge_deploy.jobs.worker import Worker, WorkerConfig
    from edge_deploy.records import open_record_store
    from edge_deploy.status.redis_status import RedisStatus

    settings = ServiceSettings.from_env()
    _let_job_processes_import_app()
    if settings.base.redis_url is None:
        raise ConfigError(
            "edge-deploy worker takes jobs from Redis: set REDIS_URL "
            "(without it, `edge-deploy serve` runs its own worker)"
        )
    queue = RedisJobQueue.from_url(settings.base.redis_url, settings.lease_seconds, settings.max_attempts)
    records = open_record_store(settings.base)
    config = WorkerConfig(
        child_command=JOB_COMMAND,
        executor=settings.executor,
        lease_seconds=settings.lease_seconds,
        alive_file=alive_file(settings.base.work_dir),
    )
    job_worker = Worker(
        queue, records, RedisStatus.from_url(settings.base.redis_url), config, lambda: executor_health(settings)
    )

    def stop(signum: int, frame) -> None:
        log.info(
            "worker %s: %s received; stopping (a running job goes back to the queue)",
            config.name,
            signal.Signals(signum).name,
        )
        job_worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        job_worker.run()
    finally:
        queue.close()
        records.close()


@click.command("worker-alive")
@click.option(
    "--max-age",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds the worker's loop may go without a turn.  [default: twice EDGE_JOB_LEASE_SECONDS]",
)
def worker_alive(max_age: float | None) -> None:
    """Exit 0 when the worker in this container renewed its liveness file lately, else 1 naming why."""
    from app.core.config import ServiceSettings
    from edge_deploy.jobs.liveness import alive_file, staleness

    settings = ServiceSettings.from_env()
    # A worker past two leases without a turn has lost its job to another worker anyway.
    problem = staleness(alive_file(settings.base.work_dir), max_age or 2 * settings.lease_seconds)
    if problem:
        raise EdgeDeployError(problem)
    click.echo("alive")


def _let_job_processes_import_app() -> None:
    """Job processes run `python -m app.run.job`: make `app` importable wherever they start."""
    import app

    root = str(Path(app.__file__).resolve().parents[1])
    paths = [item for item in os.environ.get("PYTHONPATH", "").split(os.pathsep) if item]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


@click.command("api-token")
@click.option("--name", required=True, help="Who holds it (shown in logs and in the runs it queues).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "deploy", "policy"]),
    help="Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def api_token(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Make a static API token: print it once, and the entry to add to the tokens file."""
    from app.core.auth import new_token, token_digest

    token = new_token()
    entry = {"name": name, "sha256": token_digest(token), "scopes": sorted(set(scopes))}
    if as_json:
        click.echo(json.dumps({"token": token, "entry": entry}))
        return
    click.echo("token (hand it to its holder; only its sha256 is kept):")
    click.echo(f"  {token}")
    click.echo("entry for the tokens file (EDGE_API_TOKENS_FILE), under `tokens:`:")
    click.echo(f"  - name: {name}\n    sha256: {entry['sha256']}\n    scopes: [{', '.join(entry['scopes'])}]")
