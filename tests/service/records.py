"""Deployment records as a real run writes them: images tagged `<device class>-<24 hex>`."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from edge_deploy.records import (
    FAILED,
    SUCCEEDED,
    DeploymentRecord,
    ImageAcceptance,
    ImageSet,
    ModelSource,
    OutputError,
    PlatformImage,
    RecordStatus,
    ValidationSummary,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLATFORMS = {"x86_64-cpu": "linux/amd64", "x86_64-nvidia": "linux/amd64", "arm64-cpu": "linux/arm64/v8"}


def hexdigest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def released(
    run_id: str,
    *,
    repo: str = "detector",
    classes: tuple[str, ...] = ("x86_64-cpu", "arm64-cpu"),
    state: str = SUCCEEDED,
    minute: int = 0,
    passed: bool = True,
    registry: str = "registry.local:5000",
    acceptance: str = "accepted",
    signed: bool = False,
) -> DeploymentRecord:
    created = START + timedelta(minutes=minute)
    verdict = ImageAcceptance(acceptance, "native", 2, 10, "2 photos answered as PyTorch did", 0.4, 25.0, True, 1.2, 2)
    images = [
        PlatformImage(
            PLATFORMS[name],
            f"{registry}/{repo}:{name}-{hexdigest(run_id + name)[:24]}",
            "sha256:" + hexdigest(f"{run_id}:{name}"),
            100_000_000,
            verdict,
            signature="sha256:" + hexdigest(f"signature of {run_id}:{name}") if signed else None,
            provenance="sha256:" + hexdigest(f"provenance of {run_id}:{name}") if signed else None,
        )
        for name in classes
    ]
    status = RecordStatus(FAILED, "build", "docker build failed") if state == FAILED else RecordStatus(state)
    return DeploymentRecord(
        run_id=run_id,
        model=ModelSource(repo, "main", hexdigest(run_id), "model/"),
        status=status,
        validation=ValidationSummary(passed, [OutputError("dets", 6.1e-5)], 18.7, 24.2),
        images=ImageSet(f"{registry}/{repo}:rel", "sha256:" + hexdigest(run_id), images) if images else None,
        created_at=created.isoformat(),
        updated_at=(created + timedelta(seconds=30)).isoformat(),
    )
