"""`platforms` and `build`: the platform matrix and edge image builds from a shell.

    edge-deploy platforms                          # the matrix, and the build host's platform
    edge-deploy platforms jetson-orin linux/arm64  # what those manifest targets build
    edge-deploy build model.onnx --name resnet18 --target x86_64-cpu --target arm64-cpu \
        --repository models/resnet18 --release-tag v3 --json
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from edge_deploy.errors import ConfigError
from edge_deploy.platforms import PlatformMatrix, detect_targets, host_platform


def _spec_row(spec) -> dict[str, object]:
    return {
        "name": spec.name,
        "platform": str(spec.platform),
        "base_image": spec.base_image,
        "onnxruntime": spec.runtime.onnxruntime,
        "python": spec.runtime.python_version,
        "execution_providers": list(spec.execution_providers),
        "supported": spec.supported,
        "reason": spec.reason,
        "description": spec.description,
    }


@click.command("platforms")
@click.argument("targets", nargs=-1)
@click.option("--backend", default="onnxruntime", show_default=True, help="The deploy profile's backend.")
@click.option("--matrix", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Another matrix file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def platforms_command(targets: tuple[str, ...], backend: str, matrix: Path | None, as_json: bool) -> None:
    """List the platform matrix, or resolve manifest TARGETS (device classes or OCI platforms)."""
    loaded = PlatformMatrix.load(matrix)
    host = host_platform()
    specs = [t.spec for t in detect_targets(targets, backend, loaded)] if targets else list(loaded.platforms.values())
    rows = [_spec_row(spec) for spec in specs]
    if as_json:
        click.echo(json.dumps({"host": str(host), "targets" if targets else "platforms": rows}, indent=2))
        return
    click.echo(f"build host: {host}")
    for row in rows:
        status = "" if row["supported"] else "  [unsupported]"
        click.echo(f"{row['name']:<14} {row['platform']:<16} {row['onnxruntime']:<36} {row['base_image']}{status}")


@click.command("build")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name (image title, /v1/model).")
@click.option("--target", "targets", multiple=True, required=True, help="Device class or OCI platform (repeat).")
@click.option("--repository", required=True, help="Repository under EDGE_REGISTRY, e.g. models/resnet18.")
@click.option("--release-tag", required=True, help="Tag of the multi-platform index, e.g. the model version.")
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--key-id", help="KEK to seal a plaintext MODEL under (default: EDGE_SEAL_KEY_ID).")
@click.option("--base-image", "base_images", multiple=True, metavar="CLASS=REF", help="Override a base (repeat).")
@click.option("--lakefs-repo", help="lakeFS repository of the model (label).")
@click.option("--lakefs-commit", help="lakeFS commit of the model (label).")
@click.option("--validation-status", default="not-validated", show_default=True, help="passed | failed | ...")
@click.option("--source", default="", help="org.opencontainers.image.source label.")
@click.option("--revision", default="unknown", show_default=True, help="org.opencontainers.image.revision label.")
@click.option("--push/--no-push", default=True, show_default=True, help="Push to EDGE_REGISTRY with an index.")
@click.option(
    "--accept/--no-accept",
    default=True,
    show_default=True,
    help="Run each image as a device on the gate's photos (MODEL's photo-reference/, from `validate`) first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def build_command(
    model: Path,
    name: str,
    targets: tuple[str, ...],
    repository: str,
    release_tag: str,
    backend: str,
    key_id: str | None,
    base_images: tuple[str, ...],
    lakefs_repo: str | None,
    lakefs_commit: str | None,
    validation_status: str,
    source: str,
    revision: str,
    push: bool,
    accept: bool,
    as_json: bool,
) -> None:
    """Build (and push) edge images of MODEL (plain ONNX, sealed here, or an already sealed .enc file).

    When MODEL's directory holds the gate's photo-reference/ (`edge-deploy validate` writes it), each
    image is first run as a device and must answer the photos as PyTorch did; acceptance-<class>.html
    beside MODEL shows the answers side by side."""
    # the Docker SDK and the registry client load here, not for `platforms`
    from edge_deploy.config import Settings
    from edge_deploy.crypto import Keyring, is_encrypted, seal_key_id_from_env
    from edge_deploy.images.context import open_sealed_model, seal_model
    from edge_deploy.images.push import ImageProvenance, ReleaseRequest, build_and_push

    settings = Settings.from_env()
    keyring = Keyring.from_env()
    overrides = dict(_pair(item) for item in base_images)
    scratch = Path(tempfile.mkdtemp(prefix="edge-seal-", dir=_ensure(settings.work_dir)))
    try:
        if is_encrypted(model):
            sealed = open_sealed_model(model, keyring, name)
        else:
            sealed = seal_model(model, keyring, key_id or seal_key_id_from_env(), scratch, name)
        # what ships beside the model: serving.json and the SDK metadata next to MODEL, and the
        # operator library the gate needed (validation.json's custom_ops)
        sealed = replace(sealed, serving_dir=model.parent, custom_ops=_gate_custom_ops(model.parent))
        request = ReleaseRequest(
            model=sealed,
            targets=detect_targets(targets, backend),
            repository=repository,
            release_tag=release_tag,
            provenance=ImageProvenance(source, revision, lakefs_repo, lakefs_commit, validation_status),
            base_images=overrides,
            acceptance=_acceptance(model.parent, sealed.key_id, quiet=as_json) if accept else None,
            evidence=_evidence(sealed),
        )
        result = build_and_push(request, settings, push=push)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for target in result.targets:
        state = "pushed" if target.pushed else ("built" if target.built else "unchanged")
        click.echo(
            f"{target.device_class:<14} {target.platform:<16} {state:<9} {target.size:>11} {target.pinned_reference}"
        )
        if target.acceptance is not None:
            click.echo(f"  acceptance {target.acceptance.status}: {target.acceptance.detail}")
    if result.index_reference:
        click.echo(f"index {result.index_reference} {result.index_digest}")


def _acceptance(directory: Path, key_id: str, quiet: bool):
    """The gate's photo reference beside the model, with the key the image under test reads; None
    (and a note) when `validate` did not leave one there."""
    from edge_deploy.acceptance.reference import REFERENCE_DIR, REFERENCE_FILE
    from edge_deploy.config import Secret
    from edge_deploy.crypto.keyring import exported_key
    from edge_deploy.images.push import AcceptanceInputs

    reference = directory / REFERENCE_DIR
    if not (reference / REFERENCE_FILE).is_file():
        if not quiet:
            click.echo(f"note: no {REFERENCE_DIR}/ beside the model: the images are not run before release", err=True)
        return None
    return AcceptanceInputs(reference, {key_id: Secret(exported_key(key_id))}, directory)


def _evidence(sealed):
    """The provenance's materials when the gate's validation.json is beside the model (signed with
    the images when a signing key is set); None without it. A model built from this machine's files
    names no lakeFS source in its provenance: `--lakefs-repo` and `--lakefs-commit` are labels only."""
    from edge_deploy.files import sha256_file
    from edge_deploy.signing.provenance import REPORT_NAME, ImageEvidence, now

    report = sealed.serving_dir / REPORT_NAME if sealed.serving_dir else None
    if report is None or not report.is_file():
        return None
    verdict = json.loads(report.read_text())
    return ImageEvidence(
        model_name=sealed.name,
        onnx_sha256=sealed.model_sha256,
        sealed_sha256=sha256_file(sealed.sealed_path),
        key_id=sealed.key_id,
        report_sha256=sha256_file(report),
        validation_status="passed" if verdict.get("passed") else "failed",
        run_id=f"cli-{now()}",
        started_on=now(),
    )


def _gate_custom_ops(directory: Path) -> tuple[str, ...]:
    report = directory / "validation.json"
    if not report.is_file():
        return ()
    return tuple(json.loads(report.read_text()).get("structure", {}).get("custom_ops") or ())


def _pair(item: str) -> tuple[str, str]:
    name, sep, reference = item.partition("=")
    if not sep or not name or not reference:
        raise ConfigError(f"--base-image takes CLASS=REFERENCE, got {item!r}")
    return name, reference


def _ensure(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


commands = [platforms_command, build_command]
