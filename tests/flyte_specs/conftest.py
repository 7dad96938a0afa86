"""The serialized Flyte specs, made once per session the way a cluster would receive them.

`pyflyte package` writes the protobuf specs that `pyflyte register` sends (`*_1.pb` TaskSpec, `*_2.pb`
WorkflowSpec, `*_3.pb` LaunchPlan); they are loaded with flyteidl. Two packagings run side by side: one
with a clean registration environment (the defaults), one with every registration-time setting given.
`pyflyte register --dry-run` runs beside them to check the registration path itself, offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from flyteidl.admin import launch_plan_pb2, task_pb2, workflow_pb2
from google.protobuf.json_format import MessageToDict

ROOT = Path(__file__).resolve().parents[2]
PYFLYTE = Path(sys.executable).with_name("pyflyte")
CONVERSION_IMAGE = "registry.example.com/edge-deploy-conversion:spec-test"
BUILDER_IMAGE = "registry.example.com/edge-deploy-builder:spec-test"
IMAGE_FLAGS = ["-i", f"conversion={CONVERSION_IMAGE}", "-i", f"builder={BUILDER_IMAGE}"]
REGISTRATION_VARIABLES = (
    "EDGE_GPU_NODE_SELECTOR",
    "EDGE_DOCKER_HOST",
    "EDGE_DIND_IMAGE",
    "EDGE_NOTIFY_EMAILS",
    "EDGE_NOTIFY_SLACK",
    "EDGE_SCHEDULES_FILE",
)
CONFIGURED = {
    "EDGE_GPU_NODE_SELECTOR": "accelerator=nvidia-l4,pool=gpu",
    "EDGE_DOCKER_HOST": "tcp://docker-engine.build.svc:2375",
    "EDGE_NOTIFY_EMAILS": "ml-oncall@corp.example, edge-team@corp.example",
    "EDGE_NOTIFY_SLACK": "edge-alerts-aaaa@corp.slack.com",
}
TIMEOUT_SECONDS = 300


@dataclass
class Specs:
    """One packaging's specs, by entity name."""

    tasks: dict[str, task_pb2.TaskSpec]
    workflows: dict[str, workflow_pb2.WorkflowSpec]
    launch_plans: dict[str, launch_plan_pb2.LaunchPlan]

    def pod_spec(self, task: str) -> dict:
        return MessageToDict(self.tasks[task].template.k8s_pod.pod_spec)

    def primary(self, task: str) -> dict:
        (primary,) = [c for c in self.pod_spec(task)["containers"] if c["name"] == "primary"]
        return primary


@dataclass
class Serialized:
    default: Specs
    configured: Specs
    register_output: str


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REGISTRATION_VARIABLES and k != "FLYTE_IMG_FAST_FAIL"}
    env["FLYTE_LOCAL_CACHE_ENABLED"] = "false"
    env.pop("FLYTECTL_CONFIG", None)  # the dry run must not pick up a developer's cluster
    return {**env, **(extra or {})}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path, what: str) -> str:
    try:
        code = process.wait(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{what} did not finish in {TIMEOUT_SECONDS} s", pytrace=False)
    output = log.read_text()
    if code != 0:
        pytest.fail(f"{what} failed (exit {code}):\n{output[-4000:]}", pytrace=False)
    return output


def load_specs(archive: Path) -> Specs:
    specs = Specs({}, {}, {})
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""
            if member.name.endswith("_1.pb"):
                spec = task_pb2.TaskSpec.FromString(data)
                specs.tasks[spec.template.id.name] = spec
            elif member.name.endswith("_2.pb"):
                spec = workflow_pb2.WorkflowSpec.FromString(data)
                specs.workflows[spec.template.id.name] = spec
            elif member.name.endswith("_3.pb"):
                plan = launch_plan_pb2.LaunchPlan.FromString(data)
                specs.launch_plans[plan.id.name] = plan
    return specs


@pytest.fixture(scope="session")
def serialized(tmp_path_factory) -> Serialized:
    work = tmp_path_factory.mktemp("flyte-specs")
    package = [str(PYFLYTE), "--pkgs", "workflows", "package", "--force", *IMAGE_FLAGS]
    default_tgz, configured_tgz = work / "default.tgz", work / "configured.tgz"
    register = [str(PYFLYTE), "-c", "flyte.config", "register", "--dry-run", "--copy", "none"]
    register += ["-v", "spec-test", "-p", "edge-deploy", "-d", "development", *IMAGE_FLAGS]
    register += ["--activate-launchplans", "workflows"]
    jobs = {
        "pyflyte package (defaults)": ([*package, "-o", str(default_tgz)], clean_env()),
        "pyflyte package (configured)": ([*package, "-o", str(configured_tgz)], clean_env(CONFIGURED)),
        "pyflyte register --dry-run": (register, clean_env()),
    }
    running = {
        what: (start(args, env, work / f"{index}.log"), work / f"{index}.log")
        for index, (what, (args, env)) in enumerate(jobs.items())
    }
    outputs = {what: finish(process, log, what) for what, (process, log) in running.items()}
    return Serialized(load_specs(default_tgz), load_specs(configured_tgz), outputs["pyflyte register --dry-run"])


@pytest.fixture(scope="session")
def specs(serialized) -> Specs:
    return serialized.default


@pytest.fixture(scope="session")
def configured_specs(serialized) -> Specs:
    return serialized.configured
