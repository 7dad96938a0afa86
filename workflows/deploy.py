"""The edge deployment workflow: one model version from lakeFS (or a local directory) to edge images.

    download -> decrypt -> identify -> convert -> validate (gate) -> platforms -> seal
             -> build, accept, push (one node per target) -> index -> publish -> record

A failure anywhere runs `record_failure`, which records the failed stage and error; nothing is
committed to lakeFS and no release index is pushed unless every earlier stage succeeded.

    pyflyte run workflows/deploy.py deploy_model --repo models --ref main --targets '["x86_64-cpu"]'
    pyflyte run workflows/deploy.py deploy_model --local_dir ./my-model
"""

from flytekit import workflow
from flytekit.types.directory import FlyteDirectory

from edge_deploy.records import DeploymentRecord
from tasks.convert import convert_model, identify_model
from tasks.decrypt import decrypt_model
from tasks.download import download_model
from tasks.options import DEFAULT_OPTIONS, DeployOptions
from tasks.platforms import plan_targets
from tasks.publish import publish_deployment
from tasks.record import record_deployment, record_failure
from tasks.release import build_release
from tasks.seal import seal_model
from tasks.validate import validate_onnx


@workflow(on_failure=record_failure)
def deploy_model(
    repo: str = "",
    ref: str = "main",
    prefix: str = "model/",
    local_dir: FlyteDirectory | None = None,
    targets: list[str] | None = None,
    repository: str = "",
    publish_branch: str = "",
    options: DeployOptions = DEFAULT_OPTIONS,
) -> DeploymentRecord:
    """Convert, validate, seal, build, publish and record one model version.

    repo/ref/prefix: the model directory in lakeFS (`lakefs://repo/ref/prefix`); or local_dir.
    targets: device classes or OCI platforms, overriding the manifest's.
    repository: image repository under EDGE_REGISTRY (default: the lakeFS repository's name).
    publish_branch: lakeFS branch for the artifacts (default: the source ref).
    """
    model_dir, provenance = download_model(repo=repo, ref=ref, prefix=prefix, local_dir=local_dir)
    plain_dir, decrypted_files = decrypt_model(model_dir=model_dir)
    identity = identify_model(model_dir=plain_dir)
    onnx_dir, conversion = convert_model(model_dir=plain_dir, identity=identity)
    validated_dir, report, photo_reference = validate_onnx(
        model_dir=plain_dir,
        onnx_dir=onnx_dir,
        identity=identity,
        onnx_sha256=conversion.sha256,
        settings=options.validation,
    )
    build_targets = plan_targets(model_dir=plain_dir, targets=targets)
    sealed_model, seal, serving = seal_model(model_dir=validated_dir, file_name=report.shipped_onnx)
    release, acceptance_pages = build_release(
        targets=build_targets,
        sealed_model=sealed_model,
        seal=seal,
        serving=serving,
        photo_reference=photo_reference,
        report=report,
        provenance=provenance,
        repository=repository,
        options=options,
        publish_branch=publish_branch,
    )
    _, upload = publish_deployment(
        validated_dir=validated_dir,
        sealed_model=sealed_model,
        report=report,
        provenance=provenance,
        conversion=conversion,
        release=release,
        decrypted_files=decrypted_files,
        acceptance_pages=acceptance_pages,
        branch=publish_branch,
    )
    return record_deployment(
        provenance=provenance, conversion=conversion, report=report, release=release, upload=upload
    )
