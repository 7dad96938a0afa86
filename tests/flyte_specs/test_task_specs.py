"""What each task asks of a cluster, read from the specs `pyflyte package` produced."""

import pytest
from flytekit.configuration import SerializationSettings
from google.protobuf.json_format import MessageToDict

from edge_deploy.config import Settings
from tasks.cluster import KEY_DIR, SECRET_KEYS
from tests.flyte_specs.conftest import BUILDER_IMAGE, CONFIGURED, CONVERSION_IMAGE

CONVERSION_TASKS = {
    "tasks.convert.identify_model",
    "tasks.convert.convert_model",
    "tasks.validate.validate_onnx",
    "tasks.platforms.plan_targets",
}
BUILDER_TASKS = {
    "tasks.download.download_model",
    "tasks.decrypt.decrypt_model",
    "tasks.seal.seal_model",
    "tasks.release.build_release",
    "tasks.images.build_image",
    "tasks.images.push_release_index",
    "tasks.publish.publish_deployment",
    "tasks.record.record_deployment",
    "tasks.record.record_failure",
}
# task -> (retries, timeout); None: no timeout.
RETRIES_AND_TIMEOUTS = {
    "tasks.download.download_model": (3, "3600s"),
    "tasks.decrypt.decrypt_model": (1, "1800s"),
    "tasks.convert.identify_model": (0, "1800s"),
    "tasks.convert.convert_model": (0, "3600s"),
    "tasks.validate.validate_onnx": (0, "3600s"),
    "tasks.platforms.plan_targets": (0, "300s"),
    "tasks.seal.seal_model": (1, "1800s"),
    "tasks.release.build_release": (0, None),
    "tasks.images.build_image": (2, "3600s"),
    "tasks.images.push_release_index": (3, "600s"),
    "tasks.publish.publish_deployment": (3, "3600s"),
    "tasks.record.record_deployment": (3, "600s"),
    "tasks.record.record_failure": (3, "600s"),
}
# task -> the secret variables Flyte injects into its pod.
SECRETS = {
    "tasks.download.download_model": {"REDIS_URL", "LAKEFS_SECRET_ACCESS_KEY"},
    "tasks.decrypt.decrypt_model": {"REDIS_URL"},
    "tasks.convert.identify_model": set(),
    "tasks.convert.convert_model": {"REDIS_URL"},
    "tasks.validate.validate_onnx": {"REDIS_URL"},
    "tasks.platforms.plan_targets": {"REDIS_URL"},
    "tasks.seal.seal_model": {"REDIS_URL"},
    "tasks.release.build_release": set(),
    "tasks.images.build_image": {"REDIS_URL", "EDGE_REGISTRY_PASSWORD"},
    "tasks.images.push_release_index": {"REDIS_URL", "EDGE_REGISTRY_PASSWORD"},
    "tasks.publish.publish_deployment": {"REDIS_URL", "LAKEFS_SECRET_ACCESS_KEY"},
    "tasks.record.record_deployment": {"REDIS_URL", "MONGODB_URI"},
    "tasks.record.record_failure": {"REDIS_URL", "MONGODB_URI"},
}


def test_every_task_of_the_workflow_is_serialized(specs):
    assert set(specs.tasks) == CONVERSION_TASKS | BUILDER_TASKS


@pytest.mark.parametrize("task", sorted(CONVERSION_TASKS | BUILDER_TASKS))
def test_each_task_runs_in_its_named_image(specs, task):
    expected = CONVERSION_IMAGE if task in CONVERSION_TASKS else BUILDER_IMAGE
    assert specs.primary(task)["image"] == expected
    assert not specs.tasks[task].template.HasField("container")  # the pod template carries the container


def test_identify_and_convert_share_the_conversion_image(specs):
    # The identity holds the converter package versions; convert_model rejects one made elsewhere.
    identify, convert = specs.primary("tasks.convert.identify_model"), specs.primary("tasks.convert.convert_model")
    assert identify["image"] == convert["image"]


@pytest.mark.parametrize("task", ["tasks.convert.convert_model", "tasks.validate.validate_onnx"])
def test_conversion_and_validation_ask_for_memory_and_no_gpu_by_default(specs, task):
    resources = specs.primary(task)["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert resources["limits"] == {"memory": "8Gi"}
    pod = specs.pod_spec(task)
    assert "nodeSelector" not in pod and "tolerations" not in pod


@pytest.mark.parametrize("task", ["tasks.convert.convert_model", "tasks.validate.validate_onnx"])
def test_a_configured_gpu_node_selector_puts_conversion_on_gpu_nodes(configured_specs, task):
    pod = configured_specs.pod_spec(task)
    assert pod["nodeSelector"] == {"accelerator": "nvidia-l4", "pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    resources = configured_specs.primary(task)["resources"]
    assert resources["requests"]["gpu"] == "1" and resources["limits"]["gpu"] == "1"
    assert resources["limits"]["memory"] == "8Gi"


def test_the_gpu_selector_applies_to_conversion_and_validation_only(configured_specs):
    on_gpu = {task for task in configured_specs.tasks if "nodeSelector" in configured_specs.pod_spec(task)}
    assert on_gpu == {"tasks.convert.convert_model", "tasks.validate.validate_onnx"}


def test_the_build_task_gets_a_privileged_dind_sidecar(specs):
    pod = specs.pod_spec("tasks.images.build_image")
    (sidecar,) = pod["initContainers"]
    assert sidecar["image"] == "docker:27-dind"
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: started first, stopped with the task
    assert sidecar["securityContext"] == {"privileged": True}
    assert "--host=tcp://127.0.0.1:2375" in sidecar["args"] and "--tls=false" in sidecar["args"]
    assert sidecar["startupProbe"]["exec"]["command"] == ["docker", "info"]
    assert {"name": "DOCKER_TLS_CERTDIR", "value": ""} in sidecar["env"]
    assert {"mountPath": "/var/lib/docker", "name": "dind-storage"} in sidecar["volumeMounts"]
    assert {"name": "dind-storage", "emptyDir": {}} in pod["volumes"]
    assert {"name": "DOCKER_HOST", "value": "tcp://localhost:2375"} in specs.primary("tasks.images.build_image")["env"]


def test_only_the_build_task_runs_a_docker_engine(specs):
    with_sidecar = {task for task in specs.tasks if "initContainers" in specs.pod_spec(task)}
    assert with_sidecar == {"tasks.images.build_image"}


def test_a_configured_docker_host_replaces_the_sidecar(configured_specs):
    pod = configured_specs.pod_spec("tasks.images.build_image")
    assert "initContainers" not in pod and "volumes" not in pod
    env = configured_specs.primary("tasks.images.build_image")["env"]
    assert {"name": "DOCKER_HOST", "value": CONFIGURED["EDGE_DOCKER_HOST"]} in env


@pytest.mark.parametrize("task", sorted(RETRIES_AND_TIMEOUTS))
def test_retries_and_timeouts(specs, task):
    metadata = specs.tasks[task].template.metadata
    retries, timeout = RETRIES_AND_TIMEOUTS[task]
    assert metadata.retries.retries == retries
    assert (MessageToDict(metadata).get("timeout")) == timeout


def test_conversion_and_validation_are_cached_on_content_not_on_paths(specs):
    convert = specs.tasks["tasks.convert.convert_model"].template.metadata
    assert convert.discoverable and convert.discovery_version == "1"
    assert list(convert.cache_ignore_input_vars) == ["model_dir"]
    validate = specs.tasks["tasks.validate.validate_onnx"].template.metadata
    assert validate.discoverable and validate.discovery_version == "1"
    assert sorted(validate.cache_ignore_input_vars) == ["model_dir", "onnx_dir"]


def test_nothing_else_is_cached(specs):
    # download above all: a branch ref moves, so the same inputs can name new content.
    cached = {task for task, spec in specs.tasks.items() if spec.template.metadata.discoverable}
    assert cached == {"tasks.convert.convert_model", "tasks.validate.validate_onnx"}


@pytest.mark.parametrize("task", sorted(SECRETS))
def test_each_task_requests_only_the_secrets_it_uses(specs, task):
    requested = specs.tasks[task].template.security_context.secrets
    assert {secret.env_var for secret in requested} == SECRETS[task]
    for secret in requested:
        assert secret.group == "edge-deploy" and secret.key == SECRET_KEYS[secret.env_var]
        assert secret.mount_requirement == secret.ENV_VAR


def test_injected_secret_variables_are_the_ones_the_settings_read():
    values = {
        "LAKEFS_SECRET_ACCESS_KEY": "lakefs-secret",
        "MONGODB_URI": "mongodb://user:pw@mongo:27017",
        "REDIS_URL": "redis://redis:6379/0",
        "EDGE_REGISTRY_PASSWORD": "registry-secret",
    }
    assert set(values) == set(SECRET_KEYS)
    settings = Settings.from_env({**values, "EDGE_REGISTRY_USERNAME": "bot"})
    assert settings.lakefs_secret_access_key.reveal() == values["LAKEFS_SECRET_ACCESS_KEY"]
    assert settings.mongodb_uri.reveal() == values["MONGODB_URI"]
    assert settings.redis_url.reveal() == values["REDIS_URL"]
    assert settings.registry_password.reveal() == values["EDGE_REGISTRY_PASSWORD"]


@pytest.mark.parametrize("task", sorted(CONVERSION_TASKS | BUILDER_TASKS))
def test_every_pod_reads_the_settings_config_map_if_present(specs, task):
    assert specs.primary(task)["envFrom"] == [{"configMapRef": {"name": "edge-deploy-config", "optional": True}}]
    assert specs.tasks[task].template.k8s_pod.metadata.labels["app.kubernetes.io/part-of"] == "edge-deploy"


def test_keys_are_mounted_only_where_models_are_decrypted_or_sealed(specs):
    def mounts_keys(task):
        volumes = specs.pod_spec(task).get("volumes", [])
        return any(volume.get("secret", {}).get("secretName") == "edge-deploy-keys" for volume in volumes)

    with_keys = {task for task in specs.tasks if mounts_keys(task)}
    assert with_keys == {"tasks.decrypt.decrypt_model", "tasks.seal.seal_model"}
    for task in with_keys:
        primary = specs.primary(task)
        assert {"name": "EDGE_KEY_DIR", "value": KEY_DIR} in primary["env"]
        assert {"name": "edge-keys", "mountPath": KEY_DIR, "readOnly": True} in primary["volumeMounts"]
        (volume,) = specs.pod_spec(task)["volumes"]
        assert volume["secret"] == {"secretName": "edge-deploy-keys", "optional": True}


def test_the_dynamic_build_node_carries_the_image_names_for_the_builds_it_creates(specs):
    env = {e["name"]: e["value"] for e in specs.primary("tasks.release.build_release")["env"]}
    settings = SerializationSettings.from_transport(env["_F_SS_C"])
    images = {image.name: image.full for image in settings.image_config.images}
    assert images["builder"] == BUILDER_IMAGE and images["conversion"] == CONVERSION_IMAGE
