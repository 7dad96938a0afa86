"""Build a deployment record from the typed results the pipeline's stages return.

Kept apart from the record model so the model stays free of the stage modules; the stage types
are only needed for type checking here (importing conversion or validation pulls in torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_deploy.records.model import (
    ConversionInfo,
    DeploymentRecord,
    ImageAcceptance,
    ImageSet,
    ModelFile,
    ModelSource,
    OutputError,
    PlatformImage,
    PublishedArtifacts,
    ValidationSummary,
)

if TYPE_CHECKING:
    from edge_deploy.acceptance.accept import TargetAcceptance
    from edge_deploy.conversion import ConversionResult
    from edge_deploy.images.push import ReleaseResult
    from edge_deploy.storage import Provenance, UploadResult
    from edge_deploy.validation.report import ValidationReport


def model_source(provenance: Provenance) -> ModelSource:
    files = [ModelFile(f.path, f.size, f.sha256) for f in provenance.files]
    return ModelSource(provenance.repo, provenance.ref, provenance.commit_id, provenance.prefix, files)


def conversion_info(result: ConversionResult) -> ConversionInfo:
    return ConversionInfo(
        mmdeploy_version=result.mmdeploy_version,
        torch_version=result.torch_version,
        deploy_profile=result.deploy_profile,
        opset=result.opset,
        onnx_sha256=result.sha256,
        onnx_size=result.size_bytes,
    )


def validation_summary(report: ValidationReport) -> ValidationSummary:
    worst = []
    if report.parity is not None:
        for name in report.parity.output_names:
            item = report.parity.worst(name)
            if item is not None:
                worst.append(OutputError(name, float(item.max_abs)))
    speed = report.speed
    return ValidationSummary(
        passed=report.passed,
        worst_errors=worst,
        latency_p50_ms=speed.p50_ms if speed else 0.0,
        latency_p95_ms=speed.p95_ms if speed else 0.0,
    )


def image_set(release: ReleaseResult) -> ImageSet:
    # An image built without a registry has no manifest digest yet: its local image id stands in.
    platforms = [
        PlatformImage(
            target.platform,
            target.reference,
            target.digest or target.image_id or "",
            target.size,
            image_acceptance(target.acceptance),
            release.signatures.get(target.digest or ""),
            release.attestations.get(target.digest or ""),
        )
        for target in release.targets
    ]
    return ImageSet(release.index_reference or "", release.index_digest or "", platforms)


def image_acceptance(acceptance: TargetAcceptance | None) -> ImageAcceptance | None:
    if acceptance is None:
        return None
    return ImageAcceptance(
        status=acceptance.status,
        mode=acceptance.mode,
        photos=acceptance.photos,
        compared=acceptance.compared,
        detail=acceptance.detail,
        startup_s=round(acceptance.startup_s, 3),
        p50_ms=round(acceptance.p50_ms, 3),
        open_inference_protocol=acceptance.open_inference_protocol,
        seconds=round(acceptance.seconds, 3),
        tensor_photos=len(acceptance.tensor_agreements),
    )


def published_artifacts(upload: UploadResult) -> PublishedArtifacts:
    return PublishedArtifacts(upload.repo, upload.branch, upload.commit_id, upload.prefix)


def assemble_record(
    run_id: str,
    provenance: Provenance,
    conversion: ConversionResult | None = None,
    validation: ValidationReport | None = None,
    release: ReleaseResult | None = None,
    upload: UploadResult | None = None,
    timings: dict[str, float] | None = None,
) -> DeploymentRecord:
    """A running record with every stage result given; the caller marks it succeeded or failed."""
    record = DeploymentRecord.new(run_id, model_source(provenance))
    return record.updated(
        conversion=conversion_info(conversion) if conversion else None,
        validation=validation_summary(validation) if validation else None,
        images=image_set(release) if release and release.targets else None,
        published=published_artifacts(upload) if upload else None,
        timings=dict(timings or {}),
        loosened=loosened_checks(validation, release),
    )


def loosened_checks(validation: ValidationReport | None, release: ReleaseResult | None) -> list[str]:
    """The gate's loosened settings, then each image's (its base image), once each."""
    found = list(validation.loosened) if validation else []
    for target in release.targets if release else []:
        found += [item for item in target.loosened if item not in found]
    return found
