"""The Kubernetes objects of both environments, rendered as ci/deploy.sh renders them: valid for the versions
AKS runs, and holding to the policy (non-root, read-only, no capabilities, limits, probes, digests, no secret
in a ConfigMap, workload identity, PDBs, queue-driven workers, network policies, the route to the platform's
Gateway)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.delivery.conftest import (
    COMMIT,
    ENVIRONMENTS,
    EXAMPLE_DIGEST,
    REPOSITORY,
    ROOT,
    render,
    rendered_objects,
    run_script,
)

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|TOKENS|PRIVATE|CREDENTIAL)(_|$)|(^|_)(KEY|URI|URL)$")
# Names that look secret but hold no secret: where a secret file is, an id, the service's non-secret URLs.
NOT_SECRET = re.compile(r"_FILE$|_LOCATION$|_ID$|^EDGE_API_OIDC_JWKS_URL$|^FLYTE_PLATFORM_URL$")


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def objects(request, tmp_path_factory) -> dict[tuple[str, str], dict]:
    rendered = render(request.param, tmp_path_factory.mktemp("render"))
    return {(item["kind"], item["metadata"]["name"]): item for item in rendered}


def deployments(objects) -> list[dict]:
    return [item for (kind, _), item in objects.items() if kind == "Deployment"]


def test_every_container_is_the_pipelines_image_by_digest(objects):
    images = {c["image"] for d in deployments(objects) for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {f"{REPOSITORY}@{EXAMPLE_DIGEST}"}


def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(objects):
    for deployment in deployments(objects):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            # The only writable place is /tmp, an emptyDir.
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
            assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")


def test_every_container_has_requests_and_limits(objects):
    for deployment in deployments(objects):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_the_api_is_probed_on_healthz_and_readyz_and_listens_where_the_service_points(objects):
    api = objects[("Deployment", "edge-deploy-api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["args"][0] == "serve" and api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    port = api["ports"][0]
    assert api["args"][api["args"].index("--port") + 1] == str(port["containerPort"])
    service = objects[("Service", "edge-deploy-api")]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert objects[("Deployment", "edge-deploy-worker")]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "worker"
    ]


def test_settings_come_from_the_configmap_and_secrets_only_from_mounted_files(objects):
    [config] = [item for (kind, _), item in objects.items() if kind == "ConfigMap"]
    for key, value in config["data"].items():
        assert not SECRET_NAME.search(key) or NOT_SECRET.search(key), f"{key} looks like a secret in a ConfigMap"
        assert not re.search(r"://[^/\s]*:[^/\s]*@", value), f"{key} carries credentials in its URL"
    secret_files = {value for key, value in config["data"].items() if key.endswith(("_FILE", "_LOCATION"))}
    assert secret_files and all(path.startswith("/var/run/secrets/edge-deploy/") for path in secret_files)
    assert config["data"]["EDGE_EXECUTOR"] == "flyte"  # the service image has no torch
    for deployment in deployments(objects):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        assert {v["name"]: v for v in pod["volumes"]}["secrets"]["secret"]["secretName"] == "edge-deploy-secrets"
    assert not [kind for kind, _ in objects if kind == "Secret"]  # created in the cluster, never in git


def test_every_configmap_key_is_a_documented_setting(objects):
    [config] = [item for (kind, _), item in objects.items() if kind == "ConfigMap"]
    documented = "\n".join(
        path.read_text() for path in (ROOT / "README.md", ROOT / "edge_deploy" / "config.py", ROOT / "app" / "core"
                                      / "config.py") if path.exists()
    )  # fmt: skip
    flytekit_names = flytekit_variables()
    for key in config["data"]:
        base = key.removesuffix("_FILE")
        assert base in documented or key in flytekit_names, f"{key} is not a setting the service or flytekit reads"


def flytekit_variables() -> set[str]:
    from flytekit.configuration import internal

    names = set()
    for section in vars(internal).values():
        for entry in vars(section).values() if isinstance(section, type) else ():
            legacy = getattr(entry, "legacy", None)
            if legacy is not None and hasattr(legacy, "get_env_name"):
                names.add(legacy.get_env_name())
    return names


def test_the_service_account_carries_the_workload_identity(objects):
    account = objects[("ServiceAccount", "edge-deploy")]
    assert account["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert re.fullmatch(r"[0-9a-f-]{36}", account["metadata"]["annotations"]["azure.workload.identity/client-id"])
    for deployment in deployments(objects):
        template = deployment["spec"]["template"]
        assert template["spec"]["serviceAccountName"] == "edge-deploy"
        assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_disruption_budgets_and_network_policies_select_their_pods(objects):
    for name in ("edge-deploy-api", "edge-deploy-worker"):
        budget = objects[("PodDisruptionBudget", name)]
        selected = objects[("Deployment", name)]["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["selector"]["matchLabels"] == selected
        policy = objects[("NetworkPolicy", name)]
        assert policy["spec"]["podSelector"]["matchLabels"] == selected
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert objects[("NetworkPolicy", "edge-deploy-worker")]["spec"]["ingress"] == []
    assert objects[("PodDisruptionBudget", "edge-deploy-api")]["spec"]["minAvailable"] >= 1


def test_workers_scale_on_the_queues_consumer_group_and_production_never_drops_to_zero(objects):
    from edge_deploy.jobs.redis_queue import GROUP, STREAM

    assert not [kind for kind, _ in objects if kind == "HorizontalPodAutoscaler"]  # KEDA makes its own
    assert "replicas" not in objects[("Deployment", "edge-deploy-worker")]["spec"]  # the ScaledObject owns it
    scaled = objects[("ScaledObject", "edge-deploy-worker")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "edge-deploy-worker"
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    assert all(t["metadata"]["stream"] == STREAM and t["metadata"]["consumerGroup"] == GROUP for t in triggers)
    modes = {key for t in triggers for key in t["metadata"] if key in ("lagCount", "pendingEntriesCount")}
    assert modes == {"lagCount", "pendingEntriesCount"}  # queued jobs start workers; running jobs keep theirs
    authentication = objects[("TriggerAuthentication", triggers[0]["authenticationRef"]["name"])]["spec"]
    assert {ref["name"] for ref in authentication["secretTargetRef"]} == {"edge-deploy-secrets"}
    budget = objects[("PodDisruptionBudget", "edge-deploy-worker")]["spec"]
    if objects[("ConfigMap", config_name(objects))]["data"]["EDGE_FLYTE_DOMAIN"] == "production":
        assert scaled["minReplicaCount"] >= 2 and budget["minAvailable"] >= 1 and "maxUnavailable" not in budget
    else:
        assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 1)


def config_name(objects) -> str:
    return next(name for kind, name in objects if kind == "ConfigMap")


def test_workers_are_probed_on_their_loop_and_pods_spread_over_zones(objects):
    from edge_deploy.cli import COMMANDS

    worker = objects[("Deployment", "edge-deploy-worker")]["spec"]
    container = worker["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[0] == "edge-deploy" and command[1] in COMMANDS and command[1] == "worker-alive"
    for deployment in deployments(objects):
        assert deployment["spec"]["minReadySeconds"] > 0  # a pod that dies at once never counts as available
        keys = {c["topologyKey"] for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys


def test_the_route_attaches_to_the_platforms_gateway_listener_for_this_environment(objects):
    route = objects[("HTTPRoute", "edge-deploy-api")]
    namespace = route["metadata"]["namespace"]
    [parent] = route["spec"]["parentRefs"]
    gateway = platform_object("Gateway", parent["name"], parent["namespace"])
    [listener] = [item for item in gateway["spec"]["listeners"] if item["name"] == parent["sectionName"]]
    assert listener["hostname"] in route["spec"]["hostnames"] and listener["protocol"] == "HTTPS"
    assert listener["allowedRoutes"]["namespaces"]["selector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": namespace
    }  # no other namespace can take this host
    assert set(listener["tls"]["options"]) == {
        "kubernetes.azure.com/tls-cert-keyvault-uri",
        "kubernetes.azure.com/tls-cert-service-account",
    }  # TLS from Key Vault, rotated by the add-on
    [backend] = route["spec"]["rules"][0]["backendRefs"]
    service = objects[("Service", backend["name"])]
    assert backend["port"] == service["spec"]["ports"][0]["port"]
    # Only the gateway's pods reach the API.
    [source] = objects[("NetworkPolicy", "edge-deploy-api")]["spec"]["ingress"][0]["from"]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": parent["namespace"]}
    assert source["podSelector"]["matchLabels"] == {"gateway.networking.k8s.io/gateway-name": parent["name"]}


def test_egress_reaches_the_managed_redis_and_mongodb_ports_of_the_overlay(objects):
    for name in ("edge-deploy-api", "edge-deploy-worker"):
        ports = {p["port"] for rule in objects[("NetworkPolicy", name)]["spec"]["egress"] for p in rule["ports"]}
        assert {443, 53, 10000, 10260} <= ports  # HTTPS, DNS, Azure Managed Redis, Cosmos DB for MongoDB vCore


def test_the_namespace_is_the_platform_teams_and_enforces_restricted_pod_security(objects):
    namespace = objects[("Deployment", "edge-deploy-api")]["metadata"]["namespace"]
    labels = platform_object("Namespace", namespace)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert not [kind for kind, _ in objects if kind == "Namespace"]  # the deploy identities cannot make one


def platform_object(kind: str, name: str, namespace: str | None = None) -> dict:
    for path in sorted((ROOT / "deploy" / "platform").glob("*.yaml")):
        for item in rendered_objects(path):
            same_namespace = namespace is None or item["metadata"].get("namespace") == namespace
            if item["kind"] == kind and item["metadata"]["name"] == name and same_namespace:
                return item
    raise AssertionError(f"deploy/platform/ has no {kind} {name}")


def test_the_environments_differ_where_they_should(tmp_path):
    staging, production = ({(i["kind"], i["metadata"]["name"]): i for i in render(e, tmp_path)} for e in ENVIRONMENTS)
    namespaces = [{i["metadata"].get("namespace") for i in objects.values()} for objects in (staging, production)]
    assert namespaces == [{"edge-deploy-staging"}, {"edge-deploy"}]
    hosts = [o[("HTTPRoute", "edge-deploy-api")]["spec"]["hostnames"][0] for o in (staging, production)]
    assert hosts[0] != hosts[1]
    configs = [next(i for k, i in o.items() if k[0] == "ConfigMap") for o in (staging, production)]
    domains = [config["data"]["EDGE_FLYTE_DOMAIN"] for config in configs]
    assert domains == ["staging", "production"]


@pytest.mark.parametrize("image", [f"{REPOSITORY}:latest", REPOSITORY, f"{REPOSITORY}@sha256:abc", ""])
def test_rendering_refuses_anything_but_a_digest(image, tmp_path):
    repository = tmp_path / "repo"
    shutil.copytree(ROOT / "ci", repository / "ci")
    shutil.copytree(ROOT / "deploy", repository / "deploy")
    done = run_script(
        "ci/deploy.sh", "render", "staging", cwd=repository, SERVICE_IMAGE=image, CI_COMMIT_SHORT_SHA=COMMIT
    )
    assert done.returncode == 1 and "SERVICE_IMAGE must be the service image by digest" in done.stderr
    assert not (repository / "dist" / "deploy" / "staging.yaml").exists()


def test_workers_launch_the_launch_plan_version_this_release_registered(objects):
    data = objects[("ConfigMap", config_name(objects))]["data"]
    assert data["EDGE_FLYTE_LAUNCH_PLAN_VERSION"] == COMMIT  # what ci/flyte-register.sh registers, never "latest"


def test_rendering_without_a_release_version_refuses(tmp_path):
    repository = tmp_path / "repo"  # not a git checkout, and no CI_COMMIT_* variables
    shutil.copytree(ROOT / "ci", repository / "ci")
    shutil.copytree(ROOT / "deploy", repository / "deploy")
    done = run_script(
        "ci/deploy.sh", "render", "staging", cwd=repository, SERVICE_IMAGE=f"{REPOSITORY}@{EXAMPLE_DIGEST}"
    )
    assert done.returncode == 1 and "no release version: set CI_COMMIT_TAG or CI_COMMIT_SHORT_SHA" in done.stderr
    assert not (repository / "dist" / "deploy" / "staging.yaml").exists()


def test_an_unknown_environment_is_named_with_the_choices(tmp_path):
    done = run_script("ci/deploy.sh", "render", "qa", SERVICE_IMAGE=f"{REPOSITORY}@{EXAMPLE_DIGEST}")
    assert done.returncode == 1 and "no overlay 'qa': choose one of production staging" in done.stderr


def delivery_files(tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    for name in ("ci", "deploy", "images"):
        shutil.copytree(ROOT / name, repository / name)
    shutil.copy(ROOT / ".gitlab-ci.yml", repository)
    return repository


def test_both_overlays_validate_against_the_kubernetes_schemas_aks_runs_and_checkov_passes(tmp_path):
    repository = delivery_files(tmp_path)
    done = run_script("ci/check-delivery.sh", cwd=repository)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "staging: valid for Kubernetes 1.33.0 1.34.0 1.35.0" in done.stderr
    assert "checkov: no failed check in 10 files" in done.stderr  # pipeline, 2 overlays, 2 platform, 5 Dockerfiles
    # The same check fails on an object Kubernetes would refuse: an unknown field in a pod's security context.
    api = repository / "deploy" / "base" / "api.yaml"
    api.write_text(api.read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"))
    done = run_script("ci/check-delivery.sh", cwd=repository)
    assert done.returncode == 1
    assert "readOnlyRootFileSystem" in done.stdout + done.stderr
    assert "does not validate against Kubernetes 1.33.0" in done.stderr


def without_block(text: str, first: str, next_line: str) -> str:
    """`text` without the lines from `first` up to (not including) `next_line`."""
    start, end = text.index(first), text.index(next_line)
    return text[:start] + text[end:]


@pytest.mark.parametrize(
    ("path", "edit", "check"),
    [
        # a worker without a liveness probe
        ("deploy/base/worker.yaml", lambda t: without_block(t, "          livenessProbe:", "          readinessProbe:"),
         "CKV_K8S_8"),
        # a task image that runs as root
        ("images/builder/Dockerfile", lambda t: t.replace("USER 10001:10001", ""), "CKV_DOCKER_3"),
    ],
)  # fmt: skip
def test_checkov_fails_on_a_broken_policy(tmp_path, path, edit, check):
    repository = delivery_files(tmp_path)
    target = repository / path
    target.write_text(edit(target.read_text()))
    done = run_script("ci/check-delivery.sh", cwd=repository)
    assert done.returncode == 1 and check in done.stdout and "checkov found failed checks" in done.stderr


def test_every_checkov_skip_says_why():
    skip = re.compile(r"checkov:skip=(CKV\w*_\d+)(.*)")
    found = []
    for path in [ROOT / ".gitlab-ci.yml", *(ROOT / "images").glob("*/Dockerfile"), *(ROOT / "deploy").rglob("*.yaml")]:
        for line in path.read_text().splitlines():
            for check, reason in skip.findall(line):
                assert re.fullmatch(r":\s*\S.{15,}", reason), (
                    f"{path.relative_to(ROOT)}: skip of {check} without a reason"
                )
                found.append(check)
    assert found  # the Dockerfiles' HEALTHCHECK and base-argument skips
