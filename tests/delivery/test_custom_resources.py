"""The custom resources of both environments and the platform team's files (Gateway, HTTPRoute, ScaledObject,
TriggerAuthentication), checked against their API schemas as @kubernetes-models publishes them on npm
(generated from Gateway API v1.5.1 and KEDA v2.19.0's Go API types; pinned with their hashes in
crd_schemas/package-lock.json), strict about unknown fields. kubernetes-validate checks the built-in kinds."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.delivery.conftest import ENVIRONMENTS, ROOT, render, rendered_objects

CRD_SCHEMAS = Path(__file__).parent / "crd_schemas"
# What the deployment uses of Kubernetes' own APIs (kubernetes-validate's part); anything else is a custom resource.
BUILT_IN_API_VERSIONS = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1"}
EXPECTED_KINDS = {"Gateway", "HTTPRoute", "ScaledObject", "TriggerAuthentication"}


@pytest.fixture(scope="module")
def schema_check():
    """`check(objects)`: the published schemas' verdict on `objects` (crd_schemas/check.mjs), its packages
    installed with npm from the npm registry on first use."""
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "Node.js and npm are needed (Debian: apt-get install nodejs npm)"
    if not (CRD_SCHEMAS / "node_modules" / "typescript").is_dir():
        done = subprocess.run([npm, "ci", "--no-fund", "--no-audit"], cwd=CRD_SCHEMAS, capture_output=True, text=True)
        assert done.returncode == 0, f"npm ci in {CRD_SCHEMAS} failed: {done.stderr[-2000:]}"

    def check(objects: list[dict], directory: Path) -> subprocess.CompletedProcess:
        listing = directory / "objects.json"
        listing.write_text(json.dumps(objects))
        return subprocess.run(
            [node, str(CRD_SCHEMAS / "check.mjs"), str(listing)], capture_output=True, text=True, timeout=120
        )

    return check


@pytest.fixture(scope="module")
def custom_resources(tmp_path_factory) -> list[dict]:
    found = []
    for environment in ENVIRONMENTS:
        found += render(environment, tmp_path_factory.mktemp("render"))
    for path in sorted((ROOT / "deploy" / "platform").glob("*.yaml")):
        found += rendered_objects(path)
    return [item for item in found if item["apiVersion"] not in BUILT_IN_API_VERSIONS]


def test_every_custom_resource_matches_its_published_schema(custom_resources, schema_check, tmp_path):
    assert {item["kind"] for item in custom_resources} == EXPECTED_KINDS
    done = schema_check(custom_resources, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(custom_resources)} objects checked, 0 problems" in done.stderr


def first(objects: list[dict], kind: str) -> dict:
    return next(item for item in objects if item["kind"] == kind)


def rename_rules(objects):
    route = first(objects, "HTTPRoute")["spec"]
    route["rulez"] = route.pop("rules")


def replicas_as_text(objects):
    first(objects, "ScaledObject")["spec"]["minReplicaCount"] = "2"


def tls_mode_typo(objects):
    first(objects, "Gateway")["spec"]["listeners"][0]["tls"]["mode"] = "Terminat"


def hostname_with_underscore(objects):
    first(objects, "Gateway")["spec"]["listeners"][0]["hostname"] = "edge_deploy.example.com"


def trigger_metadata_typo(objects):
    trigger = first(objects, "ScaledObject")["spec"]["triggers"][0]
    trigger["metadat"] = trigger.pop("metadata")


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (rename_rules, "HTTPRoute/edge-deploy-api: Object literal may only specify known properties, and '\"rulez\"'"),
        (replicas_as_text, "ScaledObject/edge-deploy-worker: data/spec/minReplicaCount must be integer"),
        (tls_mode_typo, "Gateway/edge-deploy: data/spec/listeners/0/tls/mode must be equal to one of the allowed"),
        (hostname_with_underscore, "Gateway/edge-deploy: data/spec/listeners/0/hostname must match pattern"),
        (trigger_metadata_typo, "ScaledObject/edge-deploy-worker: data/spec/triggers/0 must have required property"),
    ],
)
def test_a_broken_custom_resource_is_named_with_what_is_wrong(custom_resources, schema_check, tmp_path, edit, named):
    broken = copy.deepcopy(custom_resources)
    edit(broken)
    done = schema_check(broken, tmp_path)
    assert done.returncode == 1
    assert named in done.stdout, done.stdout


def test_a_custom_resource_without_a_schema_here_is_refused_not_skipped(schema_check, tmp_path):
    unknown = {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "x"}}
    done = schema_check([unknown], tmp_path)
    assert done.returncode == 1
    assert "SecretProviderClass/x: no schema for secrets-store.csi.x-k8s.io/v1 SecretProviderClass" in done.stdout
