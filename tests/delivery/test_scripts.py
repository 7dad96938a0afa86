"""The Azure, Flyte and cluster steps through the pipeline's own scripts with their dry-run switch: what each
would call, with which credentials path, and that no credential is ever printed. No Azure, Flyte or
Kubernetes API server is reachable here; pyflyte's own offline dry run does run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.delivery.conftest import EXAMPLE_DIGEST, ROOT, VENV_BIN, run_script

AZURE = {"AZURE_CLIENT_ID": "0b0e7c2a-app", "AZURE_TENANT_ID": "72f988bf-tenant", "ACR_NAME": "edgeacr",
         "AKS_RESOURCE_GROUP": "edge-rg", "AKS_CLUSTER_NAME": "edge-aks", "KUBECONFIG": "/tmp/kubeconfig"}  # fmt: skip
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.job-oidc-token.signature"
CLIENT_SECRET = "sp~secret~value~1234"
IMAGES = {
    "CONVERSION_IMAGE": f"edgeacr.azurecr.io/edge-deploy/conversion@{EXAMPLE_DIGEST}",
    "BUILDER_IMAGE": f"edgeacr.azurecr.io/edge-deploy/builder@{EXAMPLE_DIGEST}",
}


def path_without_venv() -> str:
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)


def calls(done) -> list[str]:
    assert done.returncode == 0, done.stdout + done.stderr
    return [line.removeprefix("dry-run: ") for line in done.stdout.splitlines() if line.startswith("dry-run: ")]


def test_oidc_sign_in_exchanges_the_jobs_token_and_never_prints_it():
    done = run_script("ci/azure-login.sh", "--dry-run", "--acr", "--aks", **AZURE, AZURE_ID_TOKEN=ID_TOKEN,
                      AZURE_CLIENT_SECRET=CLIENT_SECRET, AZURE_SUBSCRIPTION_ID="sub-1")  # fmt: skip
    made = [call for call in calls(done) if call.startswith(("az ", "kubelogin "))]
    assert made == [
        "az login --service-principal --username 0b0e7c2a-app --tenant 72f988bf-tenant --federated-token "
        "*** --output none",
        "az account set --subscription sub-1",
        "az acr login --name edgeacr",
        *[call for call in made if call.startswith("az aks install-cli")],  # only where kubelogin is missing
        "az aks get-credentials --resource-group edge-rg --name edge-aks --file /tmp/kubeconfig --overwrite-existing",
        "kubelogin convert-kubeconfig --login azurecli --kubeconfig /tmp/kubeconfig",
    ]
    assert "OIDC" in done.stderr
    assert ID_TOKEN not in done.stdout + done.stderr and CLIENT_SECRET not in done.stdout + done.stderr


def test_without_an_oidc_token_the_service_principal_secret_is_the_fallback():
    done = run_script("ci/azure-login.sh", "--dry-run", "--acr", **AZURE, AZURE_CLIENT_SECRET=CLIENT_SECRET)
    assert calls(done)[-2:] == [
        "az login --service-principal --username 0b0e7c2a-app --tenant 72f988bf-tenant --password *** --output none",
        "az acr login --name edgeacr",
    ]
    assert CLIENT_SECRET not in done.stdout + done.stderr


def test_without_azure_credentials_a_registry_token_logs_docker_in():
    done = run_script("ci/azure-login.sh", "--dry-run", "--acr", ACR_NAME="edgeacr", REGISTRY_USERNAME="ci-push",
                      REGISTRY_PASSWORD=CLIENT_SECRET)  # fmt: skip
    assert calls(done) == ["docker login edgeacr.azurecr.io --username ci-push --password-stdin"]
    assert CLIENT_SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--aks"], AZURE, "no Azure credentials: give the job an OIDC token (id_tokens: AZURE_ID_TOKEN)"),
        (["--acr"], {"AZURE_ID_TOKEN": ID_TOKEN}, "set AZURE_CLIENT_ID AZURE_TENANT_ID"),
        (["--aks"], {**AZURE, "AZURE_ID_TOKEN": ID_TOKEN, "AKS_CLUSTER_NAME": ""}, "set AKS_CLUSTER_NAME"),
        (["--bogus"], {}, "unknown argument --bogus"),
    ],
)
def test_sign_in_stops_naming_what_is_missing(arguments, environment, message):
    done = run_script("ci/azure-login.sh", "--dry-run", *arguments, **environment)
    assert done.returncode == 1 and message in done.stderr
    assert ID_TOKEN not in done.stdout + done.stderr


def test_registration_pins_the_task_images_by_digest_and_activates_schedules_on_request():
    # Without pyflyte on PATH: the command alone (the next test runs pyflyte's offline dry run).
    done = run_script("ci/flyte-register.sh", "--dry-run", "staging", **IMAGES, ACTIVATE_SCHEDULES="true",
                      CI_COMMIT_SHORT_SHA="0a1b2c3d", FLYTE_CONFIG="/etc/flyte/config.yaml",
                      PATH=path_without_venv())  # fmt: skip
    assert calls(done) == [
        "pyflyte --config /etc/flyte/config.yaml register --project edge-deploy --domain staging --version 0a1b2c3d "
        f"--image conversion={IMAGES['CONVERSION_IMAGE']} --image builder={IMAGES['BUILDER_IMAGE']} "
        "--activate-launchplans workflows"
    ]


def test_a_registration_without_activation_leaves_schedules_off_and_pyflyte_serializes_it_offline(tmp_path):
    done = run_script("ci/flyte-register.sh", "--dry-run", "development", **IMAGES, CI_COMMIT_TAG="v1.2.0",
                      TMPDIR=str(tmp_path), FLYTE_LOCAL_CACHE_ENABLED="false")  # fmt: skip
    [call] = calls(done)
    assert "--activate-launchplans" not in call and "--version v1.2.0" in call
    assert "schedules stay inactive" in done.stderr
    # pyflyte's own --dry-run imported every task and serialized every entity with these images.
    assert "Launch Plan: deploy_model_on_demand (Dry run Mode)" in done.stdout
    assert "Successfully registered" in done.stdout


@pytest.mark.parametrize("variable", ["CONVERSION_IMAGE", "BUILDER_IMAGE"])
def test_registration_refuses_an_image_by_tag(variable):
    images = {**IMAGES, variable: "edgeacr.azurecr.io/edge-deploy/x:latest"}
    done = run_script("ci/flyte-register.sh", "--dry-run", "staging", **images)
    assert done.returncode == 1 and f"{variable} must be an image by digest" in done.stderr


def test_deploy_applies_the_rendered_environment_and_waits_for_both_rollouts(tmp_path):
    for name in ("ci", "deploy"):
        shutil.copytree(ROOT / name, tmp_path / name)
    image = f"edgeacr.azurecr.io/edge-deploy/service@{EXAMPLE_DIGEST}"
    done = run_script("ci/deploy.sh", "--dry-run", "apply", "production", cwd=tmp_path, SERVICE_IMAGE=image,
                      ROLLOUT_TIMEOUT="5m", CI_COMMIT_TAG="v1.2.0")  # fmt: skip
    assert calls(done) == [
        "kubectl apply --namespace edge-deploy --filename dist/deploy/production.yaml",
        "kubectl --namespace edge-deploy rollout status deployment/edge-deploy-api --timeout 5m",
        "kubectl --namespace edge-deploy rollout status deployment/edge-deploy-worker --timeout 5m",
    ]
    rendered = (tmp_path / "dist" / "deploy" / "production.yaml").read_text()
    assert EXAMPLE_DIGEST in rendered and "EDGE_FLYTE_LAUNCH_PLAN_VERSION: v1.2.0" in rendered


def test_rollback_undoes_both_deployments_and_waits():
    done = run_script("ci/deploy.sh", "--dry-run", "rollback", "staging")
    assert calls(done) == [
        "kubectl --namespace edge-deploy-staging rollout undo deployment/edge-deploy-api deployment/edge-deploy-worker",
        "kubectl --namespace edge-deploy-staging rollout status deployment/edge-deploy-api --timeout 10m",
        "kubectl --namespace edge-deploy-staging rollout status deployment/edge-deploy-worker --timeout 10m",
    ]


PINNED_BASE = f"docker.io/library/python:3.11-slim-bookworm@{EXAMPLE_DIGEST}"


def test_an_image_build_passes_the_commit_time_and_tags_by_commit_and_version():
    done = run_script("ci/build-image.sh", "--dry-run", "builder", IMAGE_REGISTRY="edgeacr.azurecr.io",
                      CI_COMMIT_SHA="0a1b2c3d" * 5, CI_COMMIT_SHORT_SHA="0a1b2c3d", CI_COMMIT_TAG="v1.2.0",
                      SOURCE_DATE_EPOCH="1767225600", PYTHON_BASE=PINNED_BASE)  # fmt: skip
    build, *pushes = calls(done)
    repository = "edgeacr.azurecr.io/edge-deploy/builder"
    assert build.startswith("docker build -f images/builder/Dockerfile --build-arg SOURCE_DATE_EPOCH=1767225600 ")
    assert f"--build-arg PYTHON_BASE={PINNED_BASE} " in build
    assert f"--label org.opencontainers.image.base.name={PINNED_BASE} " in build
    assert f"-t {repository}:0a1b2c3d -t {repository}:v1.2.0" in build and build.endswith(" .")
    assert pushes == [f"docker push {repository}:0a1b2c3d", f"docker push {repository}:v1.2.0"]
    assert "no digest is recorded for builder" in done.stderr


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["edge"], {"IMAGE_REGISTRY": "r.example"}, "name the image: conversion, builder, service or ci-tools"),
        (["service"], {}, "set IMAGE_REGISTRY (the registry to push to"),
    ],
)
def test_an_image_build_stops_naming_what_to_fix(arguments, environment, message):
    done = run_script("ci/build-image.sh", "--dry-run", *arguments, **environment)
    assert done.returncode == 1 and message in done.stderr


@pytest.mark.parametrize("release", [{"CI_COMMIT_TAG": "v1.2.0"}, {"REQUIRE_PINNED_BASES": "true"}])
def test_a_release_is_never_built_on_a_base_that_is_not_pinned(release):
    done = run_script("ci/build-image.sh", "--dry-run", "service", IMAGE_REGISTRY="r.example",
                      PYTHON_BASE="docker.io/library/python:3.11-slim-bookworm", **release)  # fmt: skip
    assert done.returncode == 1 and "dry-run: docker" not in done.stdout
    assert "is not pinned by digest, and a release is built only on pinned bases" in done.stderr
    assert "run ci/pin-base-images.py" in done.stderr


def test_a_branch_build_on_an_unpinned_base_says_so_and_builds():
    done = run_script("ci/build-image.sh", "--dry-run", "--no-push", "service", IMAGE_REGISTRY="r.example",
                      CI_COMMIT_SHORT_SHA="0a1b2c3d")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: PYTHON_BASE (docker.io/library/python:3.11-slim-bookworm) is not pinned" in done.stderr
    [build] = [call for call in calls(done) if call.startswith("docker ")]  # --no-push: a build, no push
    assert build.startswith("docker build -f images/service/Dockerfile")
