"""`.gitlab-ci.yml`: valid for GitLab, and the jobs each kind of pipeline gets (read by gitlab-ci-local, which
evaluates `workflow`, `rules`, `extends` and `needs` as GitLab does)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.delivery.conftest import GITLAB_CI_LOCAL_HINT, ROOT, VENV_BIN, require_tool, snapshot_repository


def check_gitlab_schema(path) -> subprocess.CompletedProcess[str]:
    command = [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_pipeline_is_valid_for_gitlabs_ci_schema():
    done = check_gitlab_schema(ROOT / ".gitlab-ci.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_refuses_a_misspelt_keyword(tmp_path):
    broken = tmp_path / ".gitlab-ci.yml"
    text = (ROOT / ".gitlab-ci.yml").read_text()
    assert "    DEPLOY_ENV: staging\n  environment:" in text
    broken.write_text(text.replace("    DEPLOY_ENV: staging\n  environment:", "    DEPLOY_ENV: staging\n  enviroment:"))
    done = check_gitlab_schema(broken)
    assert done.returncode != 0 and "deploy:staging" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    require_tool("gitlab-ci-local", GITLAB_CI_LOCAL_HINT)
    path = tmp_path_factory.mktemp("pipeline-repo")
    snapshot_repository(path)
    return path


# The refs a pipeline runs for, set the way GitLab sets them (the snapshot's default branch is main).
PREDEFINED = "CI_COMMIT_BRANCH,CI_COMMIT_TAG"


def jobs(repository, *options: str) -> dict[str, dict]:
    command = [shutil.which("gitlab-ci-local"), "--list-json", "--no-color", "--ignore-predefined-vars", PREDEFINED]
    done = subprocess.run(
        [*command, *options],
        cwd=repository,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(done.stdout)
    return {job["name"]: job for job in listed if job["when"] != "never"}


def needed(job: dict) -> set[str]:
    return {need["job"] for need in job["needs"] if need["artifacts"]}


def test_a_feature_branch_is_linted_and_tested_and_nothing_more(repository):
    found = jobs(repository, "--variable", "CI_COMMIT_BRANCH=feature/x")
    assert set(found) == {"lint", "test"}


def test_the_default_branch_builds_registers_with_schedules_and_deploys_staging(repository):
    found = jobs(repository)
    assert {"build:conversion", "build:builder", "build:service", "register:staging", "deploy:staging"} <= set(found)
    assert not [name for name in found if name.endswith(":production")]
    assert found["deploy:staging"]["when"] == "on_success" and found["rollback:staging"]["when"] == "manual"
    # The digests reach later jobs through the needed build jobs' artifacts (their dotenv reports).
    assert needed(found["deploy:staging"]) == {"test", "build:service"}
    assert needed(found["register:staging"]) == {"test", "build:conversion", "build:builder"}


def test_a_tag_offers_production_by_hand_and_does_not_touch_staging(repository):
    found = jobs(repository, "--unset-variable", "CI_COMMIT_BRANCH", "--variable", "CI_COMMIT_TAG=v1.2.0")
    assert {"build:service", "register:production", "deploy:production", "rollback:production"} <= set(found)
    assert {found[name]["when"] for name in ("register:production", "deploy:production", "rollback:production")} == {
        "manual"
    }
    assert not [name for name in found if name.endswith(":staging")]
