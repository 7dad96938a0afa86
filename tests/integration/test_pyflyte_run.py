"""`pyflyte run workflows/deploy.py deploy_model` exactly as a user runs it, against the test services.

A detection model whose weights are encrypted in lakeFS goes through the whole workflow for x86_64
and ARM64; then every place a user looks is checked: the edge commit in lakeFS and its files, the
record in MongoDB, the run's events in Redis, the images and the index in the registry. A run whose
validation fails must leave exactly that failure behind and nothing published.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import docker.errors
import lakefs_sdk
import onnx
import pytest
import requests

from edge_deploy.crypto import ENCRYPTED_SUFFIX, Keyring, decrypt_file_to_bytes
from edge_deploy.crypto.errors import UnknownKeyIdError
from edge_deploy.status import PIPELINE_STAGES
from edge_deploy.status.redis_status import events_key, run_key
from tests.integration.conftest import (
    EDGE_KEY,
    EDGE_KEY_ID,
    SOURCE_KEY,
    SOURCE_KEY_ID,
    TARGETS,
    SeededModel,
    base_images_option,
    output_tail,
    run_pyflyte,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
IMAGE_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
PLATFORMS = {"x86_64-cpu": "linux/amd64", "arm64-cpu": "linux/arm64/v8"}
EDGE_PREFIX = "edge/"
SDK_FILES = {"deploy.json", "pipeline.json", "detail.json"}


def pyflyte_args(model: SeededModel, repository: str, options: dict) -> list[str]:
    return [
        "--repo", model.repo,
        "--ref", "main",
        "--targets", json.dumps(TARGETS),
        "--repository", repository,
        "--publish_branch", model.publish_branch,
        "--options", json.dumps(options),
    ]  # fmt: skip


@pytest.fixture
def image_cleanup(docker_engine):
    """Images a run built are removed from the engine after the test (the registry keeps its copies)."""
    references: list[str] = []
    yield references
    for reference in references:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_engine.images.remove(reference, force=True)


# -- reading what a run left behind ------------------------------------------------------------------


def stored_record(mongo_server, env: dict[str, str]) -> dict | None:
    with mongo_server.client() as client:
        return client[env["MONGODB_DATABASE"]]["deployments"].find_one({"run_id": env["EDGE_RUN_ID"]}, {"_id": False})


def run_events(redis_server, run_id: str) -> list[dict[str, str]]:
    with redis_server.client() as client:
        return [fields for _entry_id, fields in client.xrange(events_key(run_id))]


def run_progress(redis_server, run_id: str) -> dict[str, str]:
    with redis_server.client() as client:
        return client.hgetall(run_key(run_id))


def branch_head(api: lakefs_sdk.ApiClient, repo: str, branch: str) -> str:
    return lakefs_sdk.BranchesApi(api).get_branch(repo, branch).commit_id


def listed_paths(api: lakefs_sdk.ApiClient, repo: str, ref: str, prefix: str) -> set[str]:
    listing = lakefs_sdk.ObjectsApi(api).list_objects(repo, ref, prefix=prefix, amount=1000)
    return {item.path[len(prefix) :] for item in listing.results}


def read_object(api: lakefs_sdk.ApiClient, repo: str, ref: str, path: str) -> bytes:
    return bytes(lakefs_sdk.ObjectsApi(api).get_object(repo, ref, path))


def registry_manifest(registry, repository: str, reference: str, accept: tuple[str, ...]) -> requests.Response:
    return requests.get(
        f"{registry.url}/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(accept)}, timeout=30
    )


def registry_blob_json(registry, repository: str, digest: str) -> dict:
    response = requests.get(f"{registry.url}/v2/{repository}/blobs/{digest}", timeout=30)
    response.raise_for_status()
    return response.json()


def oci_platform(fields: dict) -> str:
    """os/architecture[/variant] of an index entry's platform or an image config."""
    return "/".join(fields[key] for key in ("os", "architecture", "variant") if fields.get(key))


def event_pairs(events: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(event["kind"], event["stage"]) for event in events]


# -- the checks ----------------------------------------------------------------------------------------


def check_record(record: dict | None, model: SeededModel, run_id: str) -> dict[str, dict]:
    """The succeeded record in MongoDB; returns its images by platform."""
    assert record is not None, f"no record for run {run_id} in MongoDB"
    assert record["status"] == {"state": "succeeded", "failed_stage": None, "error": None}
    assert (record["model"]["repo"], record["model"]["ref"]) == (model.repo, "main")
    assert record["model"]["commit_id"] == model.source_commit
    conversion = record["conversion"]
    assert conversion["onnx_sha256"] and conversion["onnx_size"] > 0 and conversion["deploy_profile"]
    assert record["validation"]["passed"] is True
    images = {image["platform"]: image for image in record["images"]["platforms"]}
    assert set(images) == set(PLATFORMS.values())
    for image in images.values():
        assert image["digest"].startswith("sha256:") and image["size"] > 0
    # each image was run as a device (arm64 under qemu-user) and answered the photos as PyTorch did
    modes = {platform: (i["acceptance"]["status"], i["acceptance"]["mode"]) for platform, i in images.items()}
    assert modes == {"linux/amd64": ("accepted", "native"), "linux/arm64/v8": ("accepted", "emulated")}, modes
    assert record["images"]["index_digest"].startswith("sha256:")
    # the test bases override the platform matrix without an allow-list: the record names each
    assert [item.split("=")[0] for item in record["loosened"]] == [f"base_images.{t}" for t in TARGETS]
    assert record["published"]["repo"] == model.repo and record["published"]["branch"] == model.publish_branch
    return images


def check_lakefs_commit(api, model: SeededModel, record: dict, run_id: str) -> None:
    """One new commit on the publish branch, with the artifacts and the metadata that trace it back."""
    head = branch_head(api, model.repo, model.publish_branch)
    assert head == record["published"]["commit_id"]
    commit = lakefs_sdk.CommitsApi(api).get_commit(model.repo, head)
    assert commit.parents == [model.source_commit], "the publish branch should gain exactly one commit"
    assert commit.metadata["source_commit"] == model.source_commit
    assert commit.metadata["run_id"] == run_id
    assert branch_head(api, model.repo, "main") == model.source_commit, "the source branch must not move"

    files = listed_paths(api, model.repo, head, EDGE_PREFIX)
    shipped = json.loads(read_object(api, model.repo, head, EDGE_PREFIX + "validation.json"))["shipped_onnx"]
    sealed_name = shipped + ENCRYPTED_SUFFIX
    pages = {f"acceptance/{target}.html" for target in TARGETS}
    reports = {"record.json", "images.json", "validation.json", "validation.html"}
    assert reports | {sealed_name} | SDK_FILES | pages <= files
    # The source was encrypted, so only the sealed model may be published.
    assert not any(name.endswith(".onnx") for name in files), f"plaintext model published: {sorted(files)}"

    published_record = json.loads(read_object(api, model.repo, head, EDGE_PREFIX + "record.json"))
    assert published_record["run_id"] == run_id and published_record["status"]["state"] == "succeeded"
    assert published_record["conversion"] == record["conversion"]
    published_images = json.loads(read_object(api, model.repo, head, EDGE_PREFIX + "images.json"))
    assert {t["platform"]: t["digest"] for t in published_images["targets"]} == {
        image["platform"]: image["digest"] for image in record["images"]["platforms"]
    }
    report = json.loads(read_object(api, model.repo, head, EDGE_PREFIX + "validation.json"))
    assert report["passed"] is True
    # The published report shows the gate's photos with PyTorch's answers, then each target's image
    # answering them beside PyTorch: per photo two drawings per target, plus the gate's one.
    report_page = read_object(api, model.repo, head, EDGE_PREFIX + "validation.html").decode()
    assert report["photos"]["photos"], report["photos"]
    assert report_page.count("<img ") >= len(report["photos"]["photos"]) + 2 * len(TARGETS)
    for target in TARGETS:
        assert f"Acceptance of {target}" in report_page
    for name in SDK_FILES:
        assert json.loads(read_object(api, model.repo, head, EDGE_PREFIX + name)), f"{name} is empty"
    check_sealed_model(read_object(api, model.repo, head, EDGE_PREFIX + sealed_name))


def check_sealed_model(sealed: bytes) -> None:
    """The sealed model opens with the edge key, into an ONNX model; the source key cannot open it."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx.enc"
        path.write_bytes(sealed)
        plaintext = decrypt_file_to_bytes(path, Keyring({EDGE_KEY_ID: EDGE_KEY}))
        with pytest.raises(UnknownKeyIdError, match=EDGE_KEY_ID):
            decrypt_file_to_bytes(path, Keyring({SOURCE_KEY_ID: SOURCE_KEY}))
    graph = onnx.load_model_from_string(plaintext).graph
    assert [i.name for i in graph.input] == ["input"] and len(graph.output) >= 2


def check_success_events(events: list[dict[str, str]], progress: dict[str, str]) -> None:
    """Every stage started and finished, one after the other, in pipeline order; then run-succeeded."""
    pairs = event_pairs(events)
    assert pairs[-1][0] == "run-succeeded", pairs
    stage_events = pairs[:-1]
    assert not [pair for pair in stage_events if pair[0] not in ("stage-started", "stage-finished")], pairs
    starts, finishes = stage_events[0::2], stage_events[1::2]
    assert [kind for kind, _ in starts] == ["stage-started"] * len(starts), pairs
    assert [(kind, stage) for kind, stage in finishes] == [("stage-finished", stage) for _, stage in starts], pairs
    stages = [stage for _, stage in starts]
    assert list(dict.fromkeys(stages)) == list(PIPELINE_STAGES), stages
    assert stages.count("build") >= len(TARGETS), "one build per target at least"
    assert progress["state"] == "succeeded" and float(progress["progress"]) == 1.0


def check_registry(registry, repository: str, record: dict, images: dict[str, dict]) -> None:
    """The index under the release tag lists an amd64 and an arm64 manifest: the record's digests."""
    index_reference = record["images"]["index_reference"]
    assert index_reference == f"{registry.host}/{repository}:{record['model']['commit_id'][:12]}"
    tag = index_reference.rsplit(":", 1)[1]
    response = registry_manifest(registry, repository, tag, INDEX_TYPES)
    assert response.status_code == 200, f"no index under {tag}: {response.status_code} {response.text[:200]}"
    assert response.headers["Docker-Content-Digest"] == record["images"]["index_digest"]
    index = response.json()
    assert index["mediaType"] in INDEX_TYPES
    listed = {oci_platform(m["platform"]): m["digest"] for m in index["manifests"]}
    assert listed == {platform: image["digest"] for platform, image in images.items()}
    for platform, image in images.items():
        manifest = registry_manifest(registry, repository, image["digest"], IMAGE_TYPES)
        assert manifest.status_code == 200, f"{platform} image {image['digest']} is not in the registry"
        config = registry_blob_json(registry, repository, manifest.json()["config"]["digest"])
        assert oci_platform(config) == platform  # the image itself says it is for that platform


def check_verified(record: dict, env: dict[str, str]) -> None:
    """`edge-deploy verify` on the release: every link holds, lakeFS's included (the report the run
    published on its publish branch, the source files at the commit it was built from)."""
    edge_deploy = Path(sys.executable).with_name("edge-deploy")
    index = record["images"]["index_reference"]
    done = subprocess.run([str(edge_deploy), "verify", index, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, output_tail(done)
    report = json.loads(done.stdout)
    assert report["verified"] and report["index_signature"]["status"] == "ok"
    assert len(report["images"]) == len(TARGETS)
    for chain in report["images"]:
        assert {link["status"] for link in chain["links"]} == {"ok"}, chain
    for image in record["images"]["platforms"]:
        assert image["signature"] and image["provenance"], "the record names each image's signature"


# -- the tests -----------------------------------------------------------------------------------------


def test_pyflyte_run_deploys_an_encrypted_detector_for_x86_64_and_arm64(
    seeded_model,
    deploy_env,
    lakefs_server,
    mongo_server,
    redis_server,
    registry,
    debian_python_base,
    arm64_python_base,
    image_cleanup,
):
    run_id, repository = deploy_env["EDGE_RUN_ID"], f"it/{seeded_model.repo}"
    options = {"base_images": base_images_option(debian_python_base, arm64_python_base)}

    done = run_pyflyte(pyflyte_args(seeded_model, repository, options), deploy_env)

    record = stored_record(mongo_server, deploy_env)
    image_cleanup.extend(image["reference"] for image in (record or {}).get("images", {}).get("platforms", []))
    assert done.returncode == 0, output_tail(done)
    images = check_record(record, seeded_model, run_id)
    with lakefs_server.api() as api:
        check_lakefs_commit(api, seeded_model, record, run_id)
    check_success_events(run_events(redis_server, run_id), run_progress(redis_server, run_id))
    check_registry(registry, repository, record, images)
    check_verified(record, deploy_env)


def test_pyflyte_run_whose_validation_fails_records_it_and_publishes_nothing(
    seeded_model,
    deploy_env,
    lakefs_server,
    mongo_server,
    redis_server,
    registry,
    debian_python_base,
    arm64_base,
):
    run_id, repository = deploy_env["EDGE_RUN_ID"], f"it/{seeded_model.repo}"
    # No tolerance at all: ONNX Runtime and PyTorch never agree to the last bit on a detector.
    options = {
        "base_images": base_images_option(debian_python_base, arm64_base),
        "validation": {"atol": 0.0, "rtol": 0.0, "optimize": False},
    }

    done = run_pyflyte(pyflyte_args(seeded_model, repository, options), deploy_env)

    assert done.returncode != 0, "a run whose validation fails must exit non-zero\n" + output_tail(done)
    record = stored_record(mongo_server, deploy_env)
    assert record is not None, f"no failed record for run {run_id} in MongoDB\n" + output_tail(done)
    assert record["status"]["state"] == "failed" and record["status"]["failed_stage"] == "validate"
    assert "max abs error" in record["status"]["error"]
    assert record["images"] is None and record["published"] is None

    with lakefs_server.api() as api:
        assert branch_head(api, seeded_model.repo, seeded_model.publish_branch) == seeded_model.source_commit
        assert branch_head(api, seeded_model.repo, "main") == seeded_model.source_commit
        assert listed_paths(api, seeded_model.repo, seeded_model.publish_branch, EDGE_PREFIX) == set()

    release_tag = seeded_model.source_commit[:12]
    index = registry_manifest(registry, repository, release_tag, INDEX_TYPES)
    assert index.status_code == 404, f"an index was pushed under {release_tag} for a failed run"
    tags = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=30)
    assert tags.status_code == 404 or not tags.json().get("tags"), f"images were pushed: {tags.text[:200]}"

    pairs = event_pairs(run_events(redis_server, run_id))
    assert pairs[-1] == ("run-failed", "validate"), pairs
    assert ("stage-failed", "validate") in pairs
    assert not {stage for _, stage in pairs} & {"platforms", "encrypt", "build", "publish"}, pairs
    progress = run_progress(redis_server, run_id)
    assert progress["state"] == "failed" and "max abs error" in progress["error"]
