"""What a user has before `pyflyte run`: a model version in lakeFS, keys, and the services' variables.

`seeded_model`: the detection sample under `model/` of a fresh lakeFS repository, its checkpoint
encrypted under the source key, committed with lakefs-sdk, plus a publish branch made from that commit.
`deploy_env`: the environment of edge_deploy/config.py pointing at the test lakeFS, MongoDB-wire
server, Redis and registry, with both keys and a unique run id.
`run_pyflyte(args, env)`: `pyflyte run workflows/deploy.py deploy_model ARGS` from the project root.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import lakefs_sdk
import pytest

from edge_deploy.crypto import ENCRYPTED_SUFFIX, Keyring, encrypt_file, key_env_var
from edge_deploy.signing.keys import SigningKey
from tests.fixtures.base_images import BaseImage
from tests.fixtures.s3 import PROJECT_ROOT

SOURCE_KEY_ID, EDGE_KEY_ID = "source-it", "edge-it"
# Made per session: no key lives in the code.
SOURCE_KEY, EDGE_KEY = os.urandom(32), os.urandom(32)
DETECTION_SAMPLE = "rtmdet-tiny"
TARGETS = ["x86_64-cpu", "arm64-cpu"]
PUBLISH_BRANCH = "edge-releases"
# Runtime layers (wheels per platform, keyed on their requirements) are kept between runs like pip's
# cache: the image tests keep theirs here too. Everything else of a run lives in the test's work dir.
RUNTIME_LAYER_CACHE = Path.home() / ".cache" / "edge-deploy-tests" / "runtime-layers"
PYFLYTE_TIMEOUT_SECONDS = 600
# Variables of the developer's shell that would point a run somewhere else than the test services.
FOREIGN_VARIABLES = ("EDGE_", "LAKEFS_", "MONGODB_", "REDIS_URL", "FLYTE_")


@dataclass(frozen=True)
class SeededModel:
    repo: str
    source_commit: str  # the commit `main` points at: the model version deployed
    publish_branch: str
    files: tuple[str, ...]  # paths under model/ as uploaded


def _upload_encrypted_sample(objects: lakefs_sdk.ObjectsApi, repo: str, sample: Path, staging: Path) -> list[str]:
    keyring = Keyring({SOURCE_KEY_ID: SOURCE_KEY})
    uploaded = []
    for path in sorted(sample.iterdir()):
        if path.suffix == ".pth":  # the weights are what a team protects at rest
            sealed = staging / (path.name + ENCRYPTED_SUFFIX)
            encrypt_file(path, sealed, keyring, SOURCE_KEY_ID)
            path = sealed
        objects.upload_object(repo, "main", f"model/{path.name}", content=str(path))
        uploaded.append(path.name)
    return uploaded


@pytest.fixture
def seeded_model(lakefs_server, lakefs_repo, sample_model_dir, tmp_path) -> SeededModel:
    staging = tmp_path / "seed"
    staging.mkdir()
    with lakefs_server.api() as api:
        sample = sample_model_dir(DETECTION_SAMPLE)
        files = _upload_encrypted_sample(lakefs_sdk.ObjectsApi(api), lakefs_repo, sample, staging)
        commit = lakefs_sdk.CommitsApi(api).commit(
            lakefs_repo, "main", lakefs_sdk.CommitCreation(message=f"{DETECTION_SAMPLE} sample, weights encrypted")
        )
        lakefs_sdk.BranchesApi(api).create_branch(
            lakefs_repo, lakefs_sdk.BranchCreation(name=PUBLISH_BRANCH, source=commit.id)
        )
    shutil.rmtree(staging)
    return SeededModel(lakefs_repo, commit.id, PUBLISH_BRANCH, tuple(files))


def _clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_VARIABLES)}


@pytest.fixture
def deploy_env(lakefs_server, mongo_server, redis_server, registry, tmp_path) -> dict[str, str]:
    """The variables a user sets to run the workflow against real services, for one run of this test."""
    work_dir, temp_dir = tmp_path / "work", tmp_path / "tmp"
    work_dir.mkdir()
    temp_dir.mkdir()
    RUNTIME_LAYER_CACHE.mkdir(parents=True, exist_ok=True)
    (work_dir / "runtime-layers").symlink_to(RUNTIME_LAYER_CACHE, target_is_directory=True)
    (tmp_path / "release.pem").write_bytes(SigningKey.generate().private_pem())  # a mounted key file
    return {
        **_clean_environment(),
        **lakefs_server.env(),
        "MONGODB_URI": mongo_server.url,
        "MONGODB_DATABASE": f"edge_it_{uuid.uuid4().hex[:8]}",
        "REDIS_URL": redis_server.url,
        "EDGE_REGISTRY": registry.host,
        "EDGE_REGISTRY_INSECURE": "true",
        key_env_var(SOURCE_KEY_ID): base64.b64encode(SOURCE_KEY).decode(),
        key_env_var(EDGE_KEY_ID): base64.b64encode(EDGE_KEY).decode(),
        "EDGE_SEAL_KEY_ID": EDGE_KEY_ID,
        "EDGE_SIGNING_KEY_FILE": str(tmp_path / "release.pem"),
        "EDGE_RUN_ID": f"it-{uuid.uuid4().hex[:12]}",
        "EDGE_WORK_DIR": str(work_dir),
        "FLYTE_LOCAL_CACHE_ENABLED": "false",  # every stage really runs; the cache has its own benchmark
        "TMPDIR": str(temp_dir),  # the run's scratch directories go away with the test's
    }


def base_images_option(x86_64: BaseImage, arm64: BaseImage) -> dict[str, str]:
    return {"x86_64-cpu": x86_64.reference, "arm64-cpu": arm64.reference}


def run_pyflyte(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`pyflyte run workflows/deploy.py deploy_model ARGS`, as a user types it in the project root."""
    pyflyte = Path(sys.executable).with_name("pyflyte")
    command = [str(pyflyte), "run", "workflows/deploy.py", "deploy_model", *args]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=PYFLYTE_TIMEOUT_SECONDS
    )


def output_tail(done: subprocess.CompletedProcess[str], characters: int = 4000) -> str:
    return f"exit code {done.returncode}; output ends with:\n{(done.stdout + done.stderr)[-characters:]}"
