"""Shared pieces of the edge-image tests: the sealed test model, settings for a registry fixture, and
one release (x86_64 on the debootstrap base + arm64 on the arm64-labelled base) built and pushed once
per test session to the plain `registry` fixture."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from edge_deploy.config import Secret, Settings
from edge_deploy.images.context import SealedModel
from edge_deploy.images.push import ImageProvenance, ReleaseRequest, ReleaseResult, build_and_push
from edge_deploy.platforms import detect_targets
from edge_deploy.retry import RetryPolicy
from tests.fixtures.base_images import BaseImage
from tests.runtime.conftest import edge_key, sealed_model  # noqa: F401 - fixtures shared with the runtime tests
from tests.runtime.onnx_models import SealedTestModel

# Runtime layers (~150 MB of wheels per platform) are kept between test runs, like pip's own cache.
LAYER_CACHE = Path.home() / ".cache" / "edge-deploy-tests"
FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)
REPOSITORY = "edge-tests/conv"


@dataclass(frozen=True)
class Release:
    request: ReleaseRequest
    result: ReleaseResult
    settings: Settings


def registry_settings(host: str, **overrides) -> Settings:
    fields = {"registry": host, "registry_insecure": True, "work_dir": LAYER_CACHE, **overrides}
    if isinstance(fields.get("registry_password"), str):
        fields["registry_password"] = Secret(fields["registry_password"])
    return Settings(**fields)


def release_request(
    sealed: SealedTestModel, bases: dict[str, BaseImage], release_tag: str = "v1", **overrides
) -> ReleaseRequest:
    return ReleaseRequest(
        model=SealedModel("edge-test-conv", sealed.model_dir / "model.onnx.enc", sealed.model_sha256, sealed.key_id),
        targets=detect_targets(list(bases), "onnxruntime"),
        repository=REPOSITORY,
        release_tag=release_tag,
        provenance=ImageProvenance(
            source="https://example.com/edge-deploy.git",
            revision="0123456789abcdef0123456789abcdef01234567",
            lakefs_repository="models",
            lakefs_commit="c0ffee",
            validation_status="passed",
        ),
        base_images={name: base.reference for name, base in bases.items()},
        **overrides,
    )


@pytest.fixture(scope="session")
def release(
    docker_engine: docker.DockerClient,
    registry,
    debian_python_base: BaseImage,
    arm64_base: BaseImage,
    sealed_model: SealedTestModel,  # noqa: F811
) -> Iterator[Release]:
    request = release_request(sealed_model, {"x86_64-cpu": debian_python_base, "arm64-cpu": arm64_base})
    settings = registry_settings(registry.host)
    result = build_and_push(request, settings, docker_engine, retry_policy=FAST_RETRIES)
    yield Release(request, result, settings)
    # the registry (and its port) is per session: its tags would pile up in the engine run after run
    for built in result.targets:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_engine.images.remove(built.reference, force=True)
