"""How the tasks run on a Flyte cluster: their images, pod templates and secret requests, in one place.

Two task images (Dockerfiles in images/):
- `conversion`: torch, mmcv with ops, MMDeploy and the codebases. It runs every task that loads a model
  config or reports converter versions: `identify_model` and `convert_model` must share it, since the
  identity holds the package versions and `convert_model` checks it against its own.
- `builder`: the project without torch, plus what images, lakeFS, MongoDB and Redis need. It runs the
  tasks that never import torch (checked by tests/flyte_specs/test_builder_image.py).

Tasks name an image as `{{.image.NAME.fqn}}:{{.image.NAME.version}}`, so registration chooses it:
`pyflyte register|package -i conversion=REGISTRY/edge-deploy-conversion:TAG -i builder=...`.

Settings are read once, when `pyflyte register` / `package` imports the tasks, from the registering
shell's environment (local `pyflyte run` ignores images and pod templates):

| variable               | effect                                                                           |
|------------------------|----------------------------------------------------------------------------------|
| EDGE_GPU_NODE_SELECTOR | `key=value[,key=value]`: convert and validate ask for one GPU on such nodes      |
| EDGE_DOCKER_HOST       | Docker engine for `build_image` (e.g. tcp://docker.build.svc:2375); unset: a dind sidecar |
| EDGE_DIND_IMAGE        | the sidecar's image, default docker:27-dind (a mirror, in an air-gapped cluster) |

In the pods, the settings of edge_deploy.config come from Kubernetes objects in the execution namespace
(`{project}-{domain}`), all optional so that a missing one reads as an unset variable:
- ConfigMap `edge-deploy-config`: every non-secret variable (LAKEFS_ENDPOINT, EDGE_REGISTRY, ...) via envFrom;
- Secret `edge-deploy`: one key per secret variable, requested through Flyte (`SECRET_KEYS` below);
- Secret `edge-deploy-keys`: one file per key id, mounted as EDGE_KEY_DIR for `decrypt_model` and `seal_model`.
"""

from __future__ import annotations

import os

from flytekit import PodTemplate, Resources, Secret
from kubernetes.client import (
    V1ConfigMapEnvSource,
    V1Container,
    V1EmptyDirVolumeSource,
    V1EnvFromSource,
    V1EnvVar,
    V1ExecAction,
    V1PodSpec,
    V1Probe,
    V1ResourceRequirements,
    V1SecretVolumeSource,
    V1SecurityContext,
    V1Toleration,
    V1Volume,
    V1VolumeMount,
)

from edge_deploy.errors import ConfigError

CONVERSION_IMAGE = "{{.image.conversion.fqn}}:{{.image.conversion.version}}"
BUILDER_IMAGE = "{{.image.builder.fqn}}:{{.image.builder.version}}"

PRIMARY_CONTAINER = "primary"
CONFIG_MAP = "edge-deploy-config"
SECRET_GROUP = "edge-deploy"
KEYS_SECRET = "edge-deploy-keys"
KEY_DIR = "/etc/edge-deploy/keys"
DIND_PORT = 2375
DEFAULT_DIND_IMAGE = "docker:27-dind"
GPU_TOLERATION_KEY = "nvidia.com/gpu"

# Secret variable -> key in the Kubernetes Secret `edge-deploy`. Flyte injects each as that variable
# (Secret.env_var; the backend's secretKeyRef is optional, so an absent key leaves it unset).
SECRET_KEYS = {
    "LAKEFS_SECRET_ACCESS_KEY": "lakefs-secret-access-key",
    "MONGODB_URI": "mongodb-uri",
    "REDIS_URL": "redis-url",
    "EDGE_REGISTRY_PASSWORD": "registry-password",
    "EDGE_SIGNING_KEY": "signing-key",  # absent: the release and its sealed model are not signed
}


def secret(variable: str) -> Secret:
    return Secret(
        group=SECRET_GROUP, key=SECRET_KEYS[variable], mount_requirement=Secret.MountType.ENV_VAR, env_var=variable
    )


# Every stage reports to the live status (Redis) and the failure handler reads it back.
STATUS_SECRETS = [secret("REDIS_URL")]
LAKEFS_SECRETS = [*STATUS_SECRETS, secret("LAKEFS_SECRET_ACCESS_KEY")]
REGISTRY_SECRETS = [*STATUS_SECRETS, secret("EDGE_REGISTRY_PASSWORD")]
SIGNING_SECRETS = [*REGISTRY_SECRETS, secret("EDGE_SIGNING_KEY")]
SEAL_SECRETS = [*STATUS_SECRETS, secret("EDGE_SIGNING_KEY")]  # the sealed model's detached signature
RECORD_SECRETS = [*STATUS_SECRETS, secret("MONGODB_URI")]


def gpu_node_selector(value: str | None) -> dict[str, str]:
    """`key=value[,key=value]` (EDGE_GPU_NODE_SELECTOR) as a node selector; empty or unset: none."""
    selector: dict[str, str] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        key, sep, label = item.strip().partition("=")
        if not sep or not key.strip() or not label.strip():
            raise ConfigError(f"EDGE_GPU_NODE_SELECTOR: expected key=value[,key=value], got {item.strip()!r}")
        selector[key.strip()] = label.strip()
    return selector


GPU_NODE_SELECTOR = gpu_node_selector(os.environ.get("EDGE_GPU_NODE_SELECTOR"))
DOCKER_HOST = os.environ.get("EDGE_DOCKER_HOST", "").strip()
DIND_IMAGE = os.environ.get("EDGE_DIND_IMAGE", "").strip() or DEFAULT_DIND_IMAGE

# Conversion and validation hold the PyTorch model, the traced graph and ONNX Runtime sessions at once.
CONVERSION_REQUESTS = Resources(cpu="2", mem="4Gi", gpu="1" if GPU_NODE_SELECTOR else None)
CONVERSION_LIMITS = Resources(mem="8Gi", gpu="1" if GPU_NODE_SELECTOR else None)


def _primary(env: list[V1EnvVar] | None = None, mounts: list[V1VolumeMount] | None = None) -> V1Container:
    # Image, command and resources of the primary container come from the task itself.
    return V1Container(
        name=PRIMARY_CONTAINER,
        env_from=[V1EnvFromSource(config_map_ref=V1ConfigMapEnvSource(name=CONFIG_MAP, optional=True))],
        env=env or None,
        volume_mounts=mounts or None,
    )


def _pod(primary: V1Container, **spec) -> PodTemplate:
    return PodTemplate(
        primary_container_name=PRIMARY_CONTAINER,
        pod_spec=V1PodSpec(containers=[primary], **spec),
        labels={"app.kubernetes.io/part-of": "edge-deploy"},
    )


def standard_pod() -> PodTemplate:
    return _pod(_primary())


def _key_volume() -> tuple[V1EnvVar, V1VolumeMount, V1Volume]:
    # an absent Secret mounts as an empty directory
    volume = V1Volume(name="edge-keys", secret=V1SecretVolumeSource(secret_name=KEYS_SECRET, optional=True))
    mount = V1VolumeMount(name="edge-keys", mount_path=KEY_DIR, read_only=True)
    return V1EnvVar(name="EDGE_KEY_DIR", value=KEY_DIR), mount, volume


def key_pod() -> PodTemplate:
    """The key-encryption keys mounted read-only as EDGE_KEY_DIR."""
    env, mount, volume = _key_volume()
    return _pod(_primary([env], [mount]), volumes=[volume])


def conversion_pod(node_selector: dict[str, str] | None = None) -> PodTemplate:
    """Conversion and validation; on the configured GPU nodes (tolerating their taint) when there are any."""
    if not node_selector:
        return _pod(_primary())
    toleration = V1Toleration(key=GPU_TOLERATION_KEY, operator="Exists", effect="NoSchedule")
    return _pod(_primary(), node_selector=dict(node_selector), tolerations=[toleration])


def docker_pod(docker_host: str = "", dind_image: str = DEFAULT_DIND_IMAGE, *, keys: bool = False) -> PodTemplate:
    """`build_image` with a Docker engine: `docker_host` when given, else a docker:dind sidecar in the pod;
    with `keys`, also the key-encryption keys (the acceptance stage hands the image its key).

    The sidecar is a native sidecar (an init container that keeps running, Kubernetes >= 1.29): its startup
    probe holds the task back until the engine answers, and it stops when the task's container exits, so
    the pod completes. It is privileged (dockerd needs it) and listens on localhost only, without TLS.
    """
    key_env, key_mount, key_volume = _key_volume()
    env, mounts, volumes = ([key_env], [key_mount], [key_volume]) if keys else ([], [], [])
    if docker_host:
        return _pod(_primary([V1EnvVar(name="DOCKER_HOST", value=docker_host), *env], mounts), volumes=volumes or None)
    sidecar = V1Container(
        name="dind",
        image=dind_image,
        restart_policy="Always",
        # --tls=false says the plain-TCP listener is meant (loopback, inside the pod); without it dockerd >= 26
        # delays its start to warn about it, and later releases refuse to start.
        args=["dockerd", f"--host=tcp://127.0.0.1:{DIND_PORT}", "--host=unix:///var/run/docker.sock", "--tls=false"],
        env=[V1EnvVar(name="DOCKER_TLS_CERTDIR", value="")],
        security_context=V1SecurityContext(privileged=True),
        startup_probe=V1Probe(
            _exec=V1ExecAction(command=["docker", "info"]), period_seconds=2, failure_threshold=60, timeout_seconds=5
        ),
        resources=V1ResourceRequirements(requests={"cpu": "500m", "memory": "1Gi"}, limits={"memory": "4Gi"}),
        volume_mounts=[V1VolumeMount(name="dind-storage", mount_path="/var/lib/docker")],
    )
    primary = _primary([V1EnvVar(name="DOCKER_HOST", value=f"tcp://localhost:{DIND_PORT}"), *env], mounts)
    return _pod(
        primary,
        init_containers=[sidecar],
        volumes=[V1Volume(name="dind-storage", empty_dir=V1EmptyDirVolumeSource()), *volumes],
    )


STANDARD_POD = standard_pod()
KEY_POD = key_pod()
CONVERSION_POD = conversion_pod(GPU_NODE_SELECTOR)
DOCKER_KEY_POD = docker_pod(DOCKER_HOST, DIND_IMAGE, keys=True)
