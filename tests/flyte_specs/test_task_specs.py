"""What each task asks of a cluster, read from the specs `pyflyte package` produced."""

import importlib
import inspect
import re

import pytest
from flytekit.configuration import SerializationSettings
from google.protobuf.json_format import MessageToDict

from edge_deploy.config import Settings
from tasks.cluster import KEY_DIR, SECRET_KEYS
from tasks.validate import VALIDATION_CACHE_VERSION
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
# The library calls through which a task's code reads each secret setting.
SECRET_READERS = {
    "REDIS_URL": ("reported_stage(", "open_status(", "open_locks("),
    "LAKEFS_SECRET_ACCESS_KEY": ("require_lakefs(",),
    "MONGODB_URI": ("open_record_store(",),
    "EDGE_REGISTRY_PASSWORD": ("build_target(", "build_candidate(", "push_index("),
    # push_index signs the release's images and index; the seal task signs the sealed model
    "EDGE_SIGNING_KEY": ("push_index(", "configured_signing_key("),
}
# Tasks that talk to a service over the network (lakeFS, a registry, the record store): their
# failures can be transient. The rest compute from their inputs, where a retry repeats the failure.
NETWORK_TASKS = {
    "tasks.download.download_model",
    "tasks.images.build_image",
    "tasks.images.push_release_index",
    "tasks.publish.publish_deployment",
    "tasks.record.record_deployment",
    "tasks.record.record_failure",
}
DYNAMIC_TASKS = {"tasks.release.build_release"}


def task_source(task_name: str) -> str:
    """The task function's source and that of the functions of its module it calls (one level down)."""
    module_name, _, function_name = task_name.rpartition(".")
    module = importlib.import_module(module_name)
    source = inspect.getsource(getattr(module, function_name).task_function)
    for name in set(re.findall(r"\b(_?[a-z]\w*)\(", source)):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module_name:
            source += inspect.getsource(helper)
    return source


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
    assert "initContainers" not in pod and [v["name"] for v in pod["volumes"]] == ["edge-keys"]
    env = configured_specs.primary("tasks.images.build_image")["env"]
    assert {"name": "DOCKER_HOST", "value": CONFIGURED["EDGE_DOCKER_HOST"]} in env


@pytest.mark.parametrize("task", sorted(CONVERSION_TASKS | BUILDER_TASKS))
def test_only_tasks_whose_failures_a_retry_can_cure_are_retried(specs, task):
    retries = specs.tasks[task].template.metadata.retries.retries
    if task in NETWORK_TASKS:
        assert 1 <= retries <= 3
    elif task in {"tasks.decrypt.decrypt_model", "tasks.seal.seal_model"}:
        assert retries <= 1  # local file work: one retry covers a lost pod, not a bad key
    else:
        assert retries == 0, "a conversion or a gate that failed fails again on the same input"


@pytest.mark.parametrize("task", sorted(CONVERSION_TASKS | BUILDER_TASKS))
def test_every_task_but_the_dynamic_fan_out_is_bounded_in_time(specs, task):
    timeout = MessageToDict(specs.tasks[task].template.metadata).get("timeout")
    if task in DYNAMIC_TASKS:  # its timeout would also bound the builds it launches, which have their own
        assert timeout is None
    else:
        assert timeout is not None and 0 < float(timeout.rstrip("s")) <= 3600


def test_conversion_and_validation_are_cached_on_content_not_on_paths(specs):
    convert = specs.tasks["tasks.convert.convert_model"].template.metadata
    assert convert.discoverable and convert.discovery_version == "1"
    assert list(convert.cache_ignore_input_vars) == ["model_dir"]
    validate = specs.tasks["tasks.validate.validate_onnx"].template.metadata
    assert validate.discoverable and validate.discovery_version == VALIDATION_CACHE_VERSION
    assert sorted(validate.cache_ignore_input_vars) == ["model_dir", "onnx_dir"]


def test_nothing_else_is_cached(specs):
    # download above all: a branch ref moves, so the same inputs can name new content.
    cached = {task for task, spec in specs.tasks.items() if spec.template.metadata.discoverable}
    assert cached == {"tasks.convert.convert_model", "tasks.validate.validate_onnx"}


@pytest.mark.parametrize("task", sorted(CONVERSION_TASKS | BUILDER_TASKS))
def test_each_task_requests_exactly_the_secrets_its_code_reads(specs, task):
    source = task_source(task)
    needed = {variable for variable, readers in SECRET_READERS.items() if any(r in source for r in readers)}
    requested = specs.tasks[task].template.security_context.secrets
    assert {secret.env_var for secret in requested} == needed
    for secret in requested:
        assert secret.group == "edge-deploy" and secret.key == SECRET_KEYS[secret.env_var]
        assert secret.mount_requirement == secret.ENV_VAR


def test_injected_secret_variables_are_the_ones_the_settings_read():
    values = {
        "LAKEFS_SECRET_ACCESS_KEY": "lakefs-secret",
        "MONGODB_URI": "mongodb://user:pw@mongo:27017",
        "REDIS_URL": "redis://redis:6379/0",
        "EDGE_REGISTRY_PASSWORD": "registry-secret",
        "EDGE_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\n...",
    }
    assert set(values) == set(SECRET_KEYS) == set(SECRET_READERS)
    settings = Settings.from_env({**values, "EDGE_REGISTRY_USERNAME": "bot"})
    assert settings.lakefs_secret_access_key.reveal() == values["LAKEFS_SECRET_ACCESS_KEY"]
    assert settings.mongodb_uri.reveal() == values["MONGODB_URI"]
    assert settings.redis_url.reveal() == values["REDIS_URL"]
    assert settings.registry_password.reveal() == values["EDGE_REGISTRY_PASSWORD"]
    assert settings.signing_key.reveal() == values["EDGE_SIGNING_KEY"]


@pytest.mark.parametrize("task", sorted(CONVERSION_TASKS | BUILDER_TASKS))
def test_every_pod_reads_the_settings_config_map_if_present(specs, task):
    assert specs.primary(task)["envFrom"] == [{"configMapRef": {"name": "edge-deploy-config", "optional": True}}]
    assert specs.tasks[task].template.k8s_pod.metadata.labels["app.kubernetes.io/part-of"] == "edge-deploy"


def test_keys_are_mounted_only_where_models_are_decrypted_sealed_or_run_for_acceptance(specs):
    def mounts_keys(task):
        volumes = specs.pod_spec(task).get("volumes", [])
        return any(volume.get("secret", {}).get("secretName") == "edge-deploy-keys" for volume in volumes)

    with_keys = {task for task in specs.tasks if mounts_keys(task)}
    # build_image runs each image as a device before it is pushed, and the device needs the key
    assert with_keys == {"tasks.decrypt.decrypt_model", "tasks.seal.seal_model", "tasks.images.build_image"}
    for task in with_keys:
        primary = specs.primary(task)
        assert {"name": "EDGE_KEY_DIR", "value": KEY_DIR} in primary["env"]
        assert {"name": "edge-keys", "mountPath": KEY_DIR, "readOnly": True} in primary["volumeMounts"]
        (volume,) = [v for v in specs.pod_spec(task)["volumes"] if v["name"] == "edge-keys"]
        assert volume["secret"] == {"secretName": "edge-deploy-keys", "optional": True}


def test_the_dynamic_build_node_carries_the_image_names_for_the_builds_it_creates(specs):
    env = {e["name"]: e["value"] for e in specs.primary("tasks.release.build_release")["env"]}
    settings = SerializationSettings.from_transport(env["_F_SS_C"])
    images = {image.name: image.full for image in settings.image_config.images}
    assert images["builder"] == BUILDER_IMAGE and images["conversion"] == CONVERSION_IMAGE
