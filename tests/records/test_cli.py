"""`deployments list|show|latest`, `status`, `sync` from the command line, on both stores and real Redis."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from edge_deploy.cli import cli as edge_deploy_cli
from edge_deploy.cli import deployments as deployments_cli
from edge_deploy.config import Settings
from edge_deploy.records import FAILED, RUNNING, open_record_store
from edge_deploy.status.redis_status import RedisStatus
from edge_deploy.status.tracker import RunTracker
from edge_deploy.storage import LakeFSStore
from tests.fixtures.lakefs import LakeFSServer
from tests.fixtures.mongo import MongoServer
from tests.fixtures.redis import RedisServer
from tests.records.builders import deployment

SERVICE_VARIABLES = ("MONGODB_URI", "MONGODB_URI_FILE", "MONGODB_DATABASE", "REDIS_URL", "REDIS_URL_FILE")
SERVICE_VARIABLES += ("EDGE_WORK_DIR",)


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(edge_deploy_cli, list(args), env={**self.env, **(env or {})}, catch_exceptions=True)

    def json(self, *args: str) -> object:
        result = self(*args, "--json")
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def _no_service_settings_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["mongodb", "embedded"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    env = {"EDGE_WORK_DIR": str(tmp_path / "work")}
    if request.param == "mongodb":
        mongo: MongoServer = request.getfixturevalue("mongo_server")
        env |= {"MONGODB_URI": mongo.url, "MONGODB_DATABASE": f"edge_deploy_test_{uuid.uuid4().hex[:12]}"}
    store = open_record_store(Settings.from_env(env))
    for record in (
        deployment("run-1", platforms=("linux/amd64", "linux/arm64"), minute=0),
        deployment("run-2", platforms=("linux/amd64",), minute=10),
        deployment("run-3", platforms=("linux/arm64",), state=FAILED, minute=20),
        deployment("run-4", repo="segmenter", minute=30),
    ):
        store.upsert(record)
    store.close()
    yield Cli(env)


def test_list_shows_records_newest_first_with_filters(cli: Cli) -> None:
    assert [r["run_id"] for r in cli.json("deployments", "list")] == ["run-4", "run-3", "run-2", "run-1"]
    assert [r["run_id"] for r in cli.json("deployments", "list", "--model", "detector", "--status", "failed")] == [
        "run-3"
    ]
    table = cli("deployments", "list", "--model", "detector")
    assert table.exit_code == 0
    assert "run-3" in table.stdout and "failed (build)" in table.stdout and "run-4" not in table.stdout


def test_list_in_a_pipe_prints_whole_tab_separated_values(cli: Cli) -> None:
    lines = cli("deployments", "list").stdout.splitlines()  # the test's stdout is not a terminal
    assert lines[0].split("\t") == ["RUN", "MODEL", "COMMIT", "STATUS", "PLATFORMS", "CREATED"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["run-3"][3] == "failed (build)" and rows["run-3"][4] == "linux/arm64"
    assert all(len(row) == 6 and "…" not in "".join(row) for row in rows.values())


def test_show_prints_the_whole_record(cli: Cli) -> None:
    assert cli.json("deployments", "show", "run-1") == deployment("run-1").to_dict()
    text = cli("deployments", "show", "run-1").stdout
    arm = deployment("run-1").image_for("linux/arm64")
    assert f"linux/arm64    {arm.reference}@{arm.digest}" in text
    assert "validation passed; worst abs error: dets 6.1e-05, output.1 9e-08" in text


def test_show_of_an_unknown_run_fails_naming_it(cli: Cli) -> None:
    result = cli("deployments", "show", "run-404")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no deployment record for run 'run-404' in ")


def test_latest_prints_the_digest_a_device_of_that_platform_should_run(cli: Cli) -> None:
    arm = cli("deployments", "latest", "detector", "--platform", "linux/arm64")
    image = deployment("run-1").image_for("linux/arm64")
    assert arm.exit_code == 0 and arm.stdout == f"{image.reference}@{image.digest}\n"
    answer = cli.json("deployments", "latest", "detector", "--platform", "linux/amd64")
    assert answer["record"]["run_id"] == "run-2"
    assert answer["image"]["digest"] == deployment("run-2", platforms=("linux/amd64",)).image_for("linux/amd64").digest
    missing = cli("deployments", "latest", "detector", "--platform", "linux/riscv64")
    assert missing.exit_code == 1
    assert "error: no successful deployment of 'detector' with an image for linux/riscv64" in missing.stderr


def test_status_without_live_status_falls_back_to_the_record(cli: Cli) -> None:
    answer = cli.json("status", "run-3")
    assert answer["source"] == "record" and answer["state"] == "failed" and answer["stage"] == "build"


def test_follow_needs_redis(cli: Cli) -> None:
    result = cli("status", "run-1", "--follow")
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot follow run 'run-1': set REDIS_URL")


def test_status_and_follow_read_live_status_from_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    tracker = RunTracker(RedisStatus.from_url(redis_server.url), run_id, plan=("download", "convert"))
    with tracker.stage("download"):
        pass
    tracker.start_stage("convert")
    cli = Cli({"REDIS_URL": redis_server.url, "EDGE_WORK_DIR": str(tmp_path)})

    now = cli.json("status", run_id)
    assert (now["source"], now["stage"], now["state"], now["progress"]) == ("live", "convert", "running", 0.5)

    tracker.finish_stage("convert", 2.0)
    tracker.succeeded()
    followed = cli("status", run_id, "--follow", "--json")
    assert followed.exit_code == 0, followed.output
    events = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [(e["kind"], e["stage"]) for e in events] == [
        ("stage-started", "download"),
        ("stage-finished", "download"),
        ("stage-started", "convert"),
        ("stage-finished", "convert"),
        ("run-succeeded", "convert"),
    ]
    lines = cli("status", run_id, "--follow").stdout.splitlines()
    assert len(lines) == 5 and lines[3].endswith("stage-finished convert in 2.00s")


def test_the_live_view_renders_stages_and_progress() -> None:
    view = deployments_cli.FollowView("run-7")
    tracker = RunTracker(_Collector(view), "run-7", plan=("download", "convert", "validate", "build"))
    with tracker.stage("download"):
        pass
    tracker.start_stage("convert")
    tracker.fail_stage("convert", 1.25, "ValueError: unsupported op")
    console = Console(file=io.StringIO(), width=100, force_terminal=True, record=True)
    console.print(view.render())
    text = console.export_text()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines[0].endswith("run run-7: failed, 25%")
    assert lines[1:] == ["STAGE STATE TIME", "download done 0.00s", "convert failed: ValueError: unsupported op 1.25s"]


class _Collector:
    """A status backend that feeds a FollowView directly (the view's input, without a terminal)."""

    where = "view"

    def __init__(self, view: deployments_cli.FollowView) -> None:
        self.view = view

    def publish(self, event, progress):
        self.view.update(event, progress)
        return event


def test_sync_from_a_directory_restores_records(cli: Cli, tmp_path: Path) -> None:
    published = tmp_path / "published"
    for record in (deployment("run-10", minute=50), deployment("run-1")):
        (published / record.run_id).mkdir(parents=True)
        (published / record.run_id / "record.json").write_text(record.to_json())
    report = cli.json("sync", "--from-dir", str(published))
    assert report["imported"] == ["run-10"] and report["already_current"] == ["run-1"] and report["failed"] == []
    assert cli.json("deployments", "show", "run-10")["run_id"] == "run-10"

    (published / "bad" / "record.json").parent.mkdir()
    (published / "bad" / "record.json").write_text("{}")
    result = cli("sync", "--from-dir", str(published))
    assert result.exit_code == 1 and "error: 1 record file(s) could not be imported" in result.stderr
    assert "failed   " in result.stdout and "run_id is missing" in result.stdout


def test_sync_needs_exactly_one_source(cli: Cli, tmp_path: Path) -> None:
    assert cli("sync").exit_code == 2
    assert cli("sync", "--from-dir", str(tmp_path), "--from-lakefs", "repo", "--ref", "main").exit_code == 2
    assert "--from-lakefs needs --ref" in cli("sync", "--from-lakefs", "repo").output


def test_sync_from_lakefs(lakefs_server: LakeFSServer, lakefs_repo: str, tmp_path: Path) -> None:
    published = tmp_path / "edge" / "retinanet"
    published.mkdir(parents=True)
    (published / "record.json").write_text(deployment("run-lake", state=RUNNING).to_json())
    LakeFSStore(Settings.from_env(lakefs_server.env()).require_lakefs()).upload(tmp_path / "edge", lakefs_repo, "main")
    cli = Cli({**lakefs_server.env(), "EDGE_WORK_DIR": str(tmp_path / "work")})
    report = cli.json("sync", "--from-lakefs", lakefs_repo, "--ref", "main")
    assert report["imported"] == ["run-lake"]
    assert cli.json("deployments", "show", "run-lake")["status"]["state"] == "running"
