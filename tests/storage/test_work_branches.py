"""Abandoned work branches: found by name, removed by the next publish or by `edge-deploy publish-cleanup`."""

import time

import lakefs_sdk
import pytest
from click.testing import CliRunner

from edge_deploy.cli import cli
from edge_deploy.storage.work_branches import WorkBranch, remove_work_branches, work_branch_name
from tests.storage.conftest import branch_names, write_tree

DAY = 24 * 3600


@pytest.fixture
def branches(lakefs_server, seed, lakefs_repo):
    """A repository with work branches: two abandoned two days ago (runs a and b), one of run c made now."""
    seed(lakefs_repo, {"model/config.py": b"x"})
    now = time.time()
    names = {
        "a-old": work_branch_name("run-a", "main", "edge/", now - 2 * DAY),
        "b-old": work_branch_name("run/b", "release", "edge/", now - 2 * DAY),
        "c-new": work_branch_name("run-c", "main", "edge/", now),
    }
    with lakefs_server.api() as api:
        for name in names.values():
            lakefs_sdk.BranchesApi(api).create_branch(lakefs_repo, lakefs_sdk.BranchCreation(name=name, source="main"))
    return names


def test_work_branch_names_carry_the_run_the_target_and_the_time():
    name = work_branch_name("flyte/exec:42", "main", "edge/", 1_800_000_000)
    parsed = WorkBranch.parse(name)
    assert name.startswith("edge-deploy-publish-flyte-exec-42-")
    assert (parsed.run, parsed.created) == ("flyte-exec-42", 1_800_000_000)
    assert parsed.target != WorkBranch.parse(work_branch_name("flyte/exec:42", "main", "other/", 0)).target
    assert WorkBranch.parse("feature-x") is None


def test_cleanup_removes_abandoned_work_branches_and_spares_young_ones(store, branches, lakefs_repo, lakefs_server):
    assert remove_work_branches(store, lakefs_repo, dry_run=True) == [branches["a-old"], branches["b-old"]]
    assert len(branch_names(lakefs_server, lakefs_repo)) == 4  # a dry run deletes nothing

    removed = remove_work_branches(store, lakefs_repo)

    assert removed == [branches["a-old"], branches["b-old"]]
    assert branch_names(lakefs_server, lakefs_repo) == sorted([branches["c-new"], "main"])
    assert remove_work_branches(store, lakefs_repo, run_id="run-c") == [branches["c-new"]]  # a run's own, any age
    assert branch_names(lakefs_server, lakefs_repo) == ["main"]


def test_the_next_publish_removes_abandoned_work_branches(store, branches, lakefs_repo, lakefs_server, tmp_path):
    result = store.upload(write_tree(tmp_path / "art", {"a.txt": b"a"}), lakefs_repo, "main", run_id="run-d")

    assert result.committed
    assert branch_names(lakefs_server, lakefs_repo) == sorted([branches["c-new"], "main"])  # c may still be live


def test_the_cleanup_command(branches, lakefs_repo, lakefs_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    runner = CliRunner()
    env = lakefs_server.env()

    listed = runner.invoke(cli, ["publish-cleanup", lakefs_repo, "--older-than", "36h", "--dry-run"], env=env)
    removed = runner.invoke(cli, ["publish-cleanup", lakefs_repo, "--run-id", "run-c"], env=env)
    refused = runner.invoke(cli, ["publish-cleanup", lakefs_repo, "--older-than", "soon"], env=env)

    assert listed.exit_code == 0, listed.output
    assert f"would delete lakefs://{lakefs_repo}/{branches['a-old']}" in listed.output
    assert "2 abandoned work branch(es) to delete" in listed.output
    assert removed.exit_code == 0 and f"deleted lakefs://{lakefs_repo}/{branches['c-new']}" in removed.output
    assert refused.exit_code == 2 and "like 90m, 24h or 7d" in refused.output
    assert branch_names(lakefs_server, lakefs_repo) == sorted([branches["a-old"], branches["b-old"], "main"])
