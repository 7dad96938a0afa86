"""The pipeline's build jobs, run by gitlab-ci-local with its shell executor on this machine's Docker engine,
pushing to a registry that authenticates the way ACR does (bearer tokens from a token service, given basic
credentials). What GitLab adds and this machine cannot have is left out of the local run and said so: the
docker:dind service (the engine here is the machine's own) and the OIDC token (the jobs log in to the registry
with REGISTRY_USERNAME / REGISTRY_PASSWORD, the scripts' fallback for registries without Azure sign-in)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from edge_deploy.images.registry import RegistryClient
from tests.delivery.conftest import GITLAB_CI_LOCAL_HINT, require_tool, snapshot_repository
from tests.fixtures.docker_engine import TEST_IMAGE_LABEL, build_scratch_image, remove_image
from tests.fixtures.processes import free_port
from tests.images.conftest import FAST_RETRIES
from tests.images.test_registry_bearer import TokenRegistry, token_registry  # noqa: F401  (the registry fixture)

pytestmark = pytest.mark.docker

BUILD_JOBS = ["build:conversion", "build:builder", "build:service", "build:ci-tools"]
PREBUILT = ("conversion", "builder", "ci-tools")  # built elsewhere: they install from PyPI and the internet


@dataclass
class LocalPipeline:
    repository: Path
    commit: str
    registry: TokenRegistry
    python_base: str
    variables: list[str]

    def run(self, *jobs: str) -> subprocess.CompletedProcess[str]:
        command = [shutil.which("gitlab-ci-local"), "--file", ".gitlab-ci-local.yml", "--force-shell-executor",
                   "--no-color", "--ignore-predefined-vars", "DOCKER_HOST", *self.variables, *jobs]  # fmt: skip
        return subprocess.run(command, cwd=self.repository, capture_output=True, text=True, timeout=600)

    def record(self, image: str) -> dict:
        return json.loads((self.repository / "dist" / "images" / f"{image}.json").read_text())

    def image(self, name: str) -> str:
        return f"{self.registry.host}/edge-deploy/{name}"

    def registry_digest(self, name: str) -> str | None:
        return RegistryClient(self.registry.settings(), FAST_RETRIES).manifest_digest(
            f"edge-deploy/{name}", self.commit
        )


def local_pipeline_file(repository: Path) -> None:
    """The pipeline as it is, less the docker:dind service: here the jobs use the machine's engine."""
    pipeline = yaml.safe_load((repository / ".gitlab-ci.yml").read_text())
    assert [s["name"] for s in pipeline[".build-image"].pop("services")] == ["$DIND_IMAGE"]
    (repository / ".gitlab-ci-local.yml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, token_registry, docker_engine, debian_python_base):  # noqa: F811
    require_tool("gitlab-ci-local", GITLAB_CI_LOCAL_HINT)
    require_tool("rsync", GITLAB_CI_LOCAL_HINT)
    work = tmp_path_factory.mktemp("image-jobs")
    repository = work / "repository"
    commit = snapshot_repository(repository)
    local_pipeline_file(repository)
    variables = {
        "IMAGE_REGISTRY": token_registry.host,
        "IMAGE_REGISTRY_INSECURE": "true",
        "REGISTRY_USERNAME": token_registry.username,
        "REGISTRY_PASSWORD": token_registry.password,
        "PYTHON_BASE": debian_python_base.reference,  # no base image can be pulled here
        "BUILD_NO_CACHE": "true",  # from nothing, as on GitLab's fresh dind engine
        "DOCKER_HOST": "unix:///var/run/docker.sock",
        "DOCKER_TLS_VERIFY": "",
        "DOCKER_CONFIG": str(work / "docker-config"),  # the jobs' docker login stays in this test
    }
    arguments = [f"--variable={name}={value}" for name, value in variables.items()]
    local = LocalPipeline(repository, commit, token_registry, debian_python_base.reference, arguments)
    # The task and tools images cannot be built here (their Dockerfiles install from PyPI and the internet inside
    # the build). Their commit tags are pushed beforehand, as a first run of this commit's pipeline would have
    # done; the jobs then take the re-run path: nothing is built, the digest in the registry is recorded.
    pushed = {}
    for name in PREBUILT:
        image = build_scratch_image(docker_engine, work / name, f"{local.image(name)}:{commit}")
        auth = {"username": token_registry.username, "password": token_registry.password}
        for line in docker_engine.images.push(local.image(name), commit, auth_config=auth, stream=True, decode=True):
            assert "error" not in line, line
        pushed[name] = RegistryClient(token_registry.settings(), FAST_RETRIES).manifest_digest(
            f"edge-deploy/{name}", commit
        )
        remove_image(docker_engine, image)
    done = local.run(*BUILD_JOBS)
    try:
        yield local, pushed, done
    finally:
        for image in docker_engine.images.list(name=local.image("service")):
            remove_image(docker_engine, image)


def test_the_build_jobs_pass(pipeline):
    _, _, done = pipeline
    for job in BUILD_JOBS:
        assert f"PASS  {job}" in done.stdout, done.stdout[-6000:] + done.stderr[-2000:]


def test_the_service_image_is_pushed_by_commit_and_its_digest_recorded_for_later_jobs(pipeline):
    local, _, _ = pipeline
    record = local.record("service")
    digest = RegistryClient(local.registry.settings(), FAST_RETRIES).manifest_digest(
        "edge-deploy/service", local.commit
    )
    assert record["built"] is True and record["digest"] == digest and record["tags"] == [local.commit]
    dotenv = (local.repository / "dist" / "images" / "service.env").read_text()
    assert dotenv == f"SERVICE_IMAGE={local.image('service')}@{digest}\n"


def test_a_commit_already_in_the_registry_is_not_rebuilt_and_keeps_its_digest(pipeline):
    local, pushed, _ = pipeline
    for name in PREBUILT:
        record = local.record(name)
        assert record["built"] is False and record["digest"] == pushed[name]
    first = local.record("service")
    done = local.run("build:service")  # a retried job, or the pipeline run again for the same commit
    assert "PASS  build:service" in done.stdout, done.stdout[-4000:]
    assert "is already in the registry" in done.stdout + done.stderr
    again = local.record("service")
    assert again["built"] is False and again["digest"] == first["digest"]


def test_every_job_leaves_a_valid_cyclonedx_sbom_of_the_image_it_pushed(pipeline):
    local, _, _ = pipeline
    for name in ("conversion", "builder", "service", "ci-tools"):
        text = (local.repository / "dist" / "images" / f"{name}.cdx.json").read_text()
        assert_valid_cyclonedx(text)
        subject = json.loads(text)["metadata"]["component"]
        assert (subject["name"], subject["version"]) == (local.image(name), local.record(name)["digest"])
    service = json.loads((local.repository / "dist" / "images" / "service.cdx.json").read_text())
    purls = {c.get("purl", "").split("@")[0] for c in service["components"]}
    assert {"pkg:pypi/fastapi", "pkg:pypi/uvicorn", "pkg:pypi/redis", "pkg:deb/debian/python3.11"} <= purls
    assert {"type": "container", "bom-ref": f"base:{local.python_base}", "name": local.python_base} in service[
        "components"
    ]  # the base it was built on (a local base here: no registry digest to record)
    assert local.record("service")["base"] == {"name": local.python_base, "digest": None}


def assert_valid_cyclonedx(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, str(error).splitlines()[0]


def test_a_merge_request_builds_without_pushing_or_signing_in(pipeline):
    local, _, _ = pipeline
    before = local.registry_digest("service")
    (local.repository / "dist" / "images" / "service.cdx.json").unlink()
    done = local.run("build:service", "--variable", "CI_PIPELINE_SOURCE=merge_request_event",
                     "--variable", "CI_MERGE_REQUEST_IID=7", "--unset-variable", "CI_COMMIT_BRANCH")  # fmt: skip
    assert "PASS  build:service" in done.stdout, done.stdout[-4000:]
    assert "installing images/service/requirements.in" in done.stdout + done.stderr  # it did build
    assert "docker login" not in done.stdout + done.stderr and "docker push" not in done.stdout + done.stderr
    assert local.registry_digest("service") == before  # the pushed image is untouched
    assert_valid_cyclonedx((local.repository / "dist" / "images" / "service.cdx.json").read_text())


def test_a_build_from_nothing_gives_the_same_layers(pipeline, docker_engine):
    """The legacy builder here stamps each step's time into the image config, so only the layers can repeat:
    they do, because the context holds nothing but the commit's files at the commit's time."""
    local, _, _ = pipeline
    pushed = docker_engine.images.get(f"{local.image('service')}:{local.commit}")
    epoch = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=local.repository, capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    rebuilt, _ = docker_engine.images.build(
        path=str(local.repository / "build" / "service-image"),
        dockerfile=str(local.repository / "images" / "service" / "Dockerfile"),
        buildargs={"SOURCE_DATE_EPOCH": epoch, "PYTHON_BASE": local.python_base},
        nocache=True,
        rm=True,
        labels={TEST_IMAGE_LABEL: "1"},
    )
    try:
        assert rebuilt.attrs["RootFS"]["Layers"] == pushed.attrs["RootFS"]["Layers"]
        assert rebuilt.id != pushed.id  # the config's `created` times differ: what the legacy builder allows
    finally:
        remove_image(docker_engine, rebuilt)


def test_the_service_image_runs_as_a_non_root_user_on_a_read_only_root(pipeline, docker_engine):
    local, _, _ = pipeline
    reference = f"{local.image('service')}:{local.commit}"
    confined = {"read_only": True, "network_mode": "none", "tmpfs": {"/tmp": ""}, "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges"], "remove": True}  # fmt: skip
    assert docker_engine.containers.run(reference, entrypoint="id", command="-u", **confined).strip() == b"10001"
    help_text = docker_engine.containers.run(reference, command="--help", **confined).decode()
    assert "Usage: edge-deploy" in help_text
    if " serve " not in help_text:
        return  # the service's commands are not in this tree yet; the next check runs once they are
    port = free_port()
    server = docker_engine.containers.run(
        reference, command=["serve", "--host", "127.0.0.1", "--port", str(port)], detach=True,
        **{**confined, "network_mode": "host", "remove": False},
    )  # fmt: skip
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}/healthz"), server.logs()[-3000:].decode()
    finally:
        server.remove(force=True)


def wait_for_health(url: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    return False
