"""Build provenance of an edge image: an in-toto statement with an SLSA v1 provenance predicate.

Its subject is the image's manifest digest. What it was made from goes in `resolvedDependencies`:

    source-model          lakefs://<repo>/<commit>/<prefix>   digest {"lakefsCommit": <commit>}
    source-model/<path>   each file the run downloaded         digest {"sha256": ...}
    onnx-model            the validated ONNX (plaintext)       digest {"sha256": ...}
    sealed-model          the encrypted file in the image      digest {"sha256": ...}, annotation keyId
    validation-report     validation.json, as published        digest {"sha256": ...}, annotation status
    acceptance            the image run as a device            annotations status, photos, detail
    base-image            the image it was built on            digest {"sha256": <image id>}
    runtime-layer         ONNX Runtime and its wheels          digest {"sha256": ...}

`runDetails` names the builder (edge-deploy and its version, the task image and its digest)
and the run, and lists the SBOM attached beside the image as a byproduct, so that the signature over
this statement covers the SBOM too. `ImageEvidence` is what the build hands to the signing step.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge_deploy import __version__
from edge_deploy.storage.results import FileEntry

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:edge-deploy:build-type:edge-image:v1"
BUILDER_ID = f"pkg:pypi/edge-deploy@{__version__}"
SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
REPORT_NAME = "validation.json"


@dataclass(frozen=True)
class ImageEvidence:
    """What one image was made from, as the build stage knew it: the provenance's materials."""

    model_name: str
    onnx_sha256: str
    sealed_sha256: str
    key_id: str
    report_sha256: str  # of validation.json
    validation_status: str  # passed | failed
    run_id: str
    lakefs_repository: str | None = None  # None: a local model directory
    lakefs_commit: str | None = None
    lakefs_ref: str | None = None  # the ref the run was asked for
    publish_branch: str | None = None  # where the run publishes its report (default: lakefs_ref)
    source_prefix: str = ""
    source_files: list[FileEntry] = field(default_factory=list)
    report_path: str = f"edge/{REPORT_NAME}"  # where the publish stage puts the report, under the branch
    base_image: str = ""  # the reference it was built on
    base_image_id: str = ""
    runtime_layer_digest: str = ""
    started_on: str = ""  # when the build stage started (UTC, RFC 3339)
    task_image: str = ""  # the task image the build ran in (EDGE_TASK_IMAGE, which ci/build-image.sh bakes in)
    task_image_digest: str = ""  # its manifest digest, when its registry answered

    @property
    def source_uri(self) -> str | None:
        if not self.lakefs_repository or not self.lakefs_commit:
            return None
        return f"lakefs://{self.lakefs_repository}/{self.lakefs_commit}/{self.source_prefix}"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance_statement(
    image_name: str,
    image_digest: str,
    evidence: ImageEvidence,
    acceptance: dict[str, Any] | None,
    sbom_digest: str | None,
    device_class: str,
    oci_platform: str,
) -> bytes:
    """The statement about `image_name@image_digest` (JSON bytes, the DSSE payload)."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image_name, "digest": {"sha256": image_digest.removeprefix("sha256:")}}],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": evidence.source_uri or f"local:{evidence.model_name}",
                    "ref": evidence.lakefs_ref,
                    "publishBranch": evidence.publish_branch or evidence.lakefs_ref,
                    "deviceClass": device_class,
                    "platform": oci_platform,
                },
                "internalParameters": {"keyId": evidence.key_id, "reportPath": evidence.report_path},
                "resolvedDependencies": _materials(evidence, acceptance),
            },
            "runDetails": {
                "builder": _builder(evidence),
                "metadata": {
                    "invocationId": evidence.run_id,
                    "startedOn": evidence.started_on or now(),
                    "finishedOn": now(),
                },
                "byproducts": [{"name": "sbom", "digest": _sha(sbom_digest), "mediaType": SBOM_MEDIA_TYPE}]
                if sbom_digest
                else [],
            },
        },
    }
    return json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()


def _materials(evidence: ImageEvidence, acceptance: dict[str, Any] | None) -> list[dict[str, Any]]:
    materials: list[dict[str, Any]] = []
    if evidence.source_uri:
        materials.append(
            {"name": "source-model", "uri": evidence.source_uri, "digest": {"lakefsCommit": evidence.lakefs_commit}}
        )
    for item in evidence.source_files:
        entry: dict[str, Any] = {"name": f"source-model/{item.path}", "digest": {"sha256": item.sha256}}
        if evidence.source_uri:
            entry["uri"] = evidence.source_uri + item.path
        materials.append(entry | {"annotations": {"size": item.size}})
    materials += [
        {
            "name": "onnx-model",
            "digest": {"sha256": evidence.onnx_sha256},
            "annotations": {"file": evidence.model_name},
        },
        {
            "name": "sealed-model",
            "digest": {"sha256": evidence.sealed_sha256},
            "annotations": {"keyId": evidence.key_id},
        },
        {
            "name": "validation-report",
            "digest": {"sha256": evidence.report_sha256},
            "annotations": {"status": evidence.validation_status, "path": evidence.report_path},
        },
        {"name": "acceptance", "uri": "urn:edge-deploy:acceptance", "annotations": acceptance or {"status": "not-run"}},
    ]
    if evidence.base_image:
        materials.append(
            {"name": "base-image", "uri": f"docker://{evidence.base_image}", "digest": _sha(evidence.base_image_id)}
        )
    if evidence.runtime_layer_digest:
        materials.append({"name": "runtime-layer", "digest": _sha(evidence.runtime_layer_digest)})
    return materials


def _builder(evidence: ImageEvidence) -> dict[str, Any]:
    builder: dict[str, Any] = {
        "id": BUILDER_ID,
        "version": {"edge-deploy": __version__, "python": platform.python_version()},
    }
    if evidence.task_image:
        dependency: dict[str, Any] = {"name": "task-image", "uri": f"docker://{evidence.task_image}"}
        if evidence.task_image_digest:
            dependency["digest"] = _sha(evidence.task_image_digest)
        builder["builderDependencies"] = [dependency]
    return builder


def _sha(digest: str | None) -> dict[str, str]:
    return {"sha256": (digest or "").removeprefix("sha256:")}


@dataclass(frozen=True)
class Provenance:
    """A provenance statement read back: what `edge-deploy verify` compares."""

    document: dict[str, Any]

    @classmethod
    def parse(cls, payload: bytes) -> Provenance:
        document = json.loads(payload)
        if document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != SLSA_PROVENANCE:
            raise ValueError("not an in-toto statement with SLSA provenance")
        return cls(document)

    @property
    def subject_digests(self) -> list[str]:
        return ["sha256:" + s.get("digest", {}).get("sha256", "") for s in self.document.get("subject") or []]

    @property
    def predicate(self) -> dict[str, Any]:
        return self.document["predicate"]

    def material(self, name: str) -> dict[str, Any] | None:
        for entry in self.predicate["buildDefinition"].get("resolvedDependencies") or []:
            if entry.get("name") == name:
                return entry
        return None

    def materials_under(self, prefix: str) -> list[dict[str, Any]]:
        entries = self.predicate["buildDefinition"].get("resolvedDependencies") or []
        return [e for e in entries if str(e.get("name", "")).startswith(prefix)]

    def sha256_of(self, name: str) -> str | None:
        entry = self.material(name)
        return (entry or {}).get("digest", {}).get("sha256")

    @property
    def run_id(self) -> str:
        return self.predicate["runDetails"]["metadata"].get("invocationId", "")

    @property
    def sbom_digest(self) -> str | None:
        for item in self.predicate["runDetails"].get("byproducts") or []:
            if item.get("name") == "sbom":
                return "sha256:" + item["digest"]["sha256"]
        return None
