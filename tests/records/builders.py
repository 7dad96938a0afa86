"""Deployment records for tests, complete enough to exercise every field."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from edge_deploy.records import (
    FAILED,
    SUCCEEDED,
    ConversionInfo,
    DeploymentRecord,
    ImageSet,
    ModelFile,
    ModelSource,
    OutputError,
    PlatformImage,
    PublishedArtifacts,
    RecordStatus,
    ValidationSummary,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def deployment(
    run_id: str,
    *,
    repo: str = "detector",
    commit: str = "c0ffee",
    prefix: str = "model/",
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    state: str = SUCCEEDED,
    minute: int = 0,
) -> DeploymentRecord:
    """A finished run of `repo` at `commit`, created `minute` minutes after START, with one image per platform."""
    created = START + timedelta(minutes=minute)
    images = [
        PlatformImage(
            platform,
            f"registry.local/{repo}:{commit}-{platform.replace('/', '-')}",
            digest(f"{run_id}:{platform}"),
            150_000_000 + index,
        )
        for index, platform in enumerate(platforms)
    ]
    status = (
        RecordStatus(FAILED, "build", "docker build failed for linux/arm64") if state == FAILED else RecordStatus(state)
    )
    return DeploymentRecord(
        run_id=run_id,
        model=ModelSource(
            repo,
            "main",
            commit,
            prefix,
            [ModelFile("model.pth", 46_830_571, digest("weights")), ModelFile("config.py", 2_048, digest("config"))],
        ),
        status=status,
        conversion=ConversionInfo(
            "1.3.1", "2.13.0", "detection_onnxruntime_dynamic", 11, digest("onnx")[7:], 21_300_000
        ),
        validation=ValidationSummary(True, [OutputError("dets", 6.1e-5), OutputError("output.1", 9.0e-8)], 18.7, 24.2),
        images=ImageSet(f"registry.local/{repo}:{commit}", digest(f"{run_id}:index"), images) if images else None,
        published=PublishedArtifacts(repo, "main", "d" * 64, "edge/"),
        timings={"download": 1.25, "convert": 2.8, "validate": 0.9, "build": 6.1},
        created_at=created.isoformat(),
        updated_at=(created + timedelta(seconds=30)).isoformat(),
    )
