"""`.gitlab-ci.yml`: valid for GitLab, and the jobs each kind of pipeline gets (read by gitlab-ci-local, which
evaluates `workflow`, `rules`, `extends` and `needs` as GitLab does)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

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
PREDEFINED = "CI_COMMIT_BRANCH,CI_COMMIT_TAG,CI_PIPELINE_SOURCE"


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


BUILDS = {"build:conversion", "build:builder", "build:service", "build:ci-tools"}
MERGE_REQUEST = ("--variable", "CI_PIPELINE_SOURCE=merge_request_event", "--variable", "CI_MERGE_REQUEST_IID=1")
TAG = ("--unset-variable", "CI_COMMIT_BRANCH", "--variable", "CI_COMMIT_TAG=v1.2.0")


@pytest.fixture(scope="module")
def expanded(repository) -> dict[str, dict]:
    """Every job with `extends` merged in, as GitLab sees it (gitlab-ci-local --preview)."""
    done = subprocess.run([shutil.which("gitlab-ci-local"), "--preview", "--no-color"], cwd=repository,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {name: job for name, job in yaml.safe_load(done.stdout).items() if isinstance(job, dict)}


def test_a_feature_branch_is_linted_and_tested_and_nothing_more(repository):
    found = jobs(repository, "--variable", "CI_COMMIT_BRANCH=feature/x")
    assert set(found) == {"lint", "test"}


def test_a_merge_request_builds_and_scans_every_image_and_pushes_none(repository, expanded):
    found = jobs(repository, *MERGE_REQUEST, "--unset-variable", "CI_COMMIT_BRANCH")
    assert set(found) == {"lint", "test", "scan:images"} | BUILDS
    # The rule that admits a merge request turns pushing off; the job then signs in nowhere and builds with
    # --no-push (what that does is run for real in tests/delivery/test_image_jobs.py).
    [rule] = [r for r in expanded["build:service"]["rules"] if "merge_request_event" in r["if"]]
    assert rule["variables"] == {"PUSH_IMAGES": "false"}
    script = "\n".join(expanded["build:service"]["before_script"] + expanded["build:service"]["script"])
    assert 'if [ "${PUSH_IMAGES:-true}" = true ]; then ci/azure-login.sh --acr; fi' in script
    assert 'else ci/build-image.sh --no-push "$IMAGE"' in script


def test_the_default_branch_builds_registers_with_schedules_and_deploys_staging(repository):
    found = jobs(repository)
    assert BUILDS | {"scan:images", "register:staging", "deploy:staging"} <= set(found)
    assert not [name for name in found if name.endswith(":production")]
    assert found["deploy:staging"]["when"] == "on_success" and found["rollback:staging"]["when"] == "manual"
    # The digests reach later jobs through the needed build jobs' artifacts (their dotenv reports); staging's
    # workers launch the version register:staging registered, so it deploys after it.
    assert needed(found["deploy:staging"]) == {"test", "build:service", "build:ci-tools", "register:staging"}
    assert needed(found["register:staging"]) == {"test", "build:conversion", "build:builder", "scan:images"}


def test_a_tag_reaches_production_only_by_hand_after_registration_and_touches_no_staging(repository):
    found = jobs(repository, *TAG)
    assert BUILDS | {"scan:images", "register:production", "deploy:production", "rollback:production"} <= set(found)
    assert {found[name]["when"] for name in ("register:production", "deploy:production", "rollback:production")} == {
        "manual"
    }
    assert "register:production" in needed(found["deploy:production"])  # ordered: never before registration
    assert "scan:images" in needed(found["register:production"])  # and never past a failed scan
    assert found["deploy:production"]["allow_failure"] is False  # a blocking manual job, not an optional one
    assert not [name for name in found if name.endswith(":staging")]


def test_each_step_uses_its_own_identity_and_environment(expanded):
    for name in BUILDS:  # the push identity, and no environment: build jobs never see a deploy identity
        assert expanded[name]["variables"]["AZURE_CLIENT_ID"] == "$AZURE_PUSH_CLIENT_ID"
        assert "environment" not in expanded[name]
    for environment in ("staging", "production"):
        deploy, register = expanded[f"deploy:{environment}"], expanded[f"register:{environment}"]
        # AZURE_CLIENT_ID comes from the variable scoped to this environment (GitLab settings, docs/delivery.md).
        assert deploy["environment"]["name"] == environment and "AZURE_CLIENT_ID" not in deploy.get("variables", {})
        assert register["environment"] == {"name": environment, "action": "prepare"}
        assert expanded[f"rollback:{environment}"]["environment"]["name"] == environment
        assert deploy["id_tokens"]["AZURE_ID_TOKEN"]["aud"] == "api://AzureADTokenExchange"
        assert deploy["image"]["name"] == "$CI_TOOLS_IMAGE"  # az, kubectl and kubelogin pinned in the image


def test_registrations_and_deploys_run_one_at_a_time_per_environment(expanded):
    assert expanded["register:production"]["resource_group"] == "flyte-$FLYTE_DOMAIN"
    assert expanded["register:production"]["variables"]["FLYTE_DOMAIN"] == "production"
    assert expanded["deploy:production"]["resource_group"] == "aks-$DEPLOY_ENV"
    assert expanded["deploy:production"]["interruptible"] is False


def test_the_pipelines_job_images_are_the_pinned_ones(expanded):
    pinned = dict(
        line.split("=", 1)
        for line in (ROOT / "images" / "base-images.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    variables = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())["variables"]
    for name in ("PYTHON_JOB_IMAGE", "DIND_IMAGE", "TRIVY_IMAGE"):
        assert variables[name] == pinned[name], f"{name}: .gitlab-ci.yml and images/base-images.env differ"
    assert expanded["build:service"]["services"][0]["name"] == "$DIND_IMAGE"
    assert expanded["scan:images"]["image"]["name"] == "$TRIVY_IMAGE"
