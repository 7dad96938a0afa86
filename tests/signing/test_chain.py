"""`edge-deploy verify` walks a real signed release end to end, and names the link each forgery breaks.

One release is built from a sealed model whose source sits in the test lakeFS server, pushed to the
loopback registry with EDGE_SIGNING_KEY set (so each image gets a signature, an SBOM and a signed
SLSA provenance), and its validation report is published by "its run" in lakeFS. Each forgery is a
new manifest pushed beside it, made the way an attacker (or a broken pipeline) would make it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import lakefs_sdk
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from edge_deploy.config import Settings
from edge_deploy.images.push import ImageProvenance, ReleaseResult, build_and_push, push_index, task_image_digest
from edge_deploy.images.registry import RegistryClient
from edge_deploy.signing.attach import attach_referrer, sign_image
from edge_deploy.signing.attest import attach_sbom, attest, verified_statements
from edge_deploy.signing.chain import BROKEN, LINKS, OK, SKIPPED, UNREACHED, verify_chain
from edge_deploy.signing.cosign import SIGNATURE_ANNOTATION, SIMPLE_SIGNING
from edge_deploy.signing.dsse import ENVELOPE_MEDIA_TYPE, sign_envelope
from edge_deploy.signing.keys import SigningKey
from edge_deploy.signing.provenance import SLSA_PROVENANCE, ImageEvidence, provenance_statement
from edge_deploy.storage.paths import LakeFSLocation
from edge_deploy.storage.store import LakeFSStore
from tests.images.conftest import FAST_RETRIES, LAYER_CACHE, REPOSITORY, release_request
from tests.runtime.conftest import edge_key, sealed_model  # noqa: F401 - fixtures shared with the runtime tests

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "chain-run-1"


@dataclass
class SignedRelease:
    result: ReleaseResult
    key: SigningKey
    key_file: Path
    client: RegistryClient
    store: LakeFSStore
    lakefs_repo: str
    source_commit: str
    env: dict[str, str]

    @property
    def image_digest(self) -> str:
        digest = self.result.targets[0].digest
        assert digest is not None
        return digest

    def statement(self) -> dict:
        found, _ = verified_statements(self.client, REPOSITORY, self.image_digest, SLSA_PROVENANCE, self.key.public)
        return json.loads(found[0].payload)


def publish_report(store: LakeFSStore, repo: str, source_commit: str, run_id: str, report: dict, tmp: Path) -> None:
    """validation.json under edge/ on main, committed with the metadata the publish stage gives it."""
    out = tmp / f"edge-{run_id}"
    out.mkdir()
    (out / "validation.json").write_text(json.dumps(report, indent=2))
    metadata = {"run_id": run_id, "source_commit": source_commit, "source_repo": repo}
    store.upload(source=out, repo=repo, branch="main", prefix="edge/", metadata=metadata, run_id=run_id)


@pytest.fixture(scope="module")
def signed_release(
    registry,
    lakefs_server,
    docker_engine,
    debian_python_base,
    sealed_model,  # noqa: F811
    tmp_path_factory,
) -> SignedRelease:
    tmp = tmp_path_factory.mktemp("chain")
    store = LakeFSStore(Settings.from_env(lakefs_server.env()).require_lakefs(), retry=FAST_RETRIES)
    repo = f"chain-{uuid.uuid4().hex[:12]}"
    lakefs_sdk.RepositoriesApi(store.api).create_repository(
        lakefs_sdk.RepositoryCreation(name=repo, storage_namespace=f"s3://{repo}/", default_branch="main")
    )
    source = tmp / "source"
    source.mkdir()
    (source / "config.py").write_text("model = dict(type='ImageClassifier')\n")
    (source / "weights.pth").write_bytes(os.urandom(4096))
    store.upload(source=source, repo=repo, branch="main", prefix="model/", message="a trained model")
    provenance = store.download(LakeFSLocation(repo, "main", "model/"), tmp / "downloaded")
    report = {"passed": True, "failure": None, "shipped_sha256": sealed_model.model_sha256, "schema_version": 1}
    report_bytes = json.dumps(report, indent=2).encode()
    evidence = ImageEvidence(
        model_name="edge-test-conv",
        onnx_sha256=sealed_model.model_sha256,
        sealed_sha256=hashlib.sha256((sealed_model.model_dir / "model.onnx.enc").read_bytes()).hexdigest(),
        key_id=sealed_model.key_id,
        report_sha256=hashlib.sha256(report_bytes).hexdigest(),
        validation_status="passed",
        run_id=RUN_ID,
        lakefs_repository=repo,
        lakefs_commit=provenance.commit_id,
        lakefs_ref="main",
        source_prefix="model/",
        source_files=list(provenance.files),
    )
    image_provenance = ImageProvenance(
        source=provenance.uri,
        revision=provenance.commit_id,
        lakefs_repository=repo,
        lakefs_commit=provenance.commit_id,
        validation_status="passed",
    )
    request = replace(
        release_request(sealed_model, {"x86_64-cpu": debian_python_base}, release_tag=f"chain-{repo[-6:]}"),
        provenance=image_provenance,
        evidence=evidence,
    )
    key = SigningKey.generate()
    (tmp / "signing.pem").write_bytes(key.private_pem())
    (tmp / "signing.pub").write_bytes(key.public.pem())
    env = {
        **lakefs_server.env(),
        "EDGE_REGISTRY": registry.host,
        "EDGE_REGISTRY_INSECURE": "true",
        "EDGE_WORK_DIR": str(LAYER_CACHE),
        "EDGE_SIGNING_KEY_FILE": str(tmp / "signing.pem"),
    }
    result = build_and_push(request, Settings.from_env(env), docker_engine, retry_policy=FAST_RETRIES)
    (tmp / "edge").mkdir()
    publish_report(store, repo, provenance.commit_id, RUN_ID, report, tmp / "edge")
    client = RegistryClient(Settings.from_env(env).require_registry(), FAST_RETRIES)
    verify_env = {k: v for k, v in env.items() if k != "EDGE_SIGNING_KEY_FILE"}
    verify_env["EDGE_SIGNING_PUBLIC_KEY_FILE"] = str(tmp / "signing.pub")
    return SignedRelease(result, key, tmp / "signing.pem", client, store, repo, provenance.commit_id, verify_env)


def statuses(chain) -> dict[str, str]:
    return {link.name: link.status for link in chain.links}


def test_a_signed_release_verifies_end_to_end(signed_release):
    release = signed_release
    assert set(release.result.attestations) == {release.image_digest}
    report = verify_chain(
        release.client, REPOSITORY, release.result.index_reference.rsplit(":", 1)[1], release.key.public, release.store
    )
    assert report.first_broken is None, report.to_dict()
    assert report.index_signature is not None and report.index_signature.status == OK
    [chain] = report.images
    assert chain.digest == release.image_digest and chain.platform == "linux/amd64"
    assert statuses(chain) == dict.fromkeys(LINKS, OK)


def test_the_provenance_names_what_the_image_was_made_from(signed_release):
    statement = signed_release.statement()
    assert statement["subject"][0]["digest"]["sha256"] == signed_release.image_digest.removeprefix("sha256:")
    materials = {m["name"]: m for m in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert materials["source-model"]["digest"] == {"lakefsCommit": signed_release.source_commit}
    assert {"source-model/config.py", "source-model/weights.pth", "onnx-model", "sealed-model"} <= set(materials)
    assert materials["validation-report"]["annotations"]["status"] == "passed"
    assert materials["base-image"]["digest"]["sha256"]
    sbom = statement["predicate"]["runDetails"]["byproducts"][0]
    assert sbom["digest"]["sha256"] == signed_release.result.targets[0].sbom_digest.removeprefix("sha256:")
    document = json.loads(signed_release.client.get_blob(REPOSITORY, signed_release.result.targets[0].sbom_digest))
    names = {c["name"] for c in document["components"]}
    assert document["bomFormat"] == "CycloneDX" and "onnxruntime" in names and "numpy" in names
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is None  # CycloneDX's own schema


def test_an_image_accepted_before_signing_was_configured_gets_a_provenance_that_verifies(signed_release):
    """A content tag already in the registry is not built or run again: its provenance takes the
    acceptance its labels recorded when it was first pushed."""
    release = signed_release
    accepted = {"io.edge-deploy.acceptance.status": "accepted", "io.edge-deploy.acceptance.photos": "2"}
    digest = clone(release.client, release.image_digest, "accepted-earlier", labels=accepted)
    earlier = replace(release.result.targets[0], digest=digest, built=False, pushed=False, acceptance=None)
    settings = Settings.from_env(release.env | {"EDGE_SIGNING_KEY_FILE": str(release.key_file)})
    attach_sbom(release.client, REPOSITORY, digest, release.client.get_blob(REPOSITORY, earlier.sbom_digest))
    signed = push_index(REPOSITORY, "accepted-earlier-index", [earlier], settings)
    assert set(signed.attestations) == {digest}
    report = verify_chain(release.client, REPOSITORY, digest, release.key.public, release.store)
    assert report.first_broken is None, report.first_broken


def test_the_command_verifies_and_works_without_lakefs(signed_release):
    image = signed_release.result.index_reference
    done = run_verify(signed_release.env, image, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verified"] is True
    registry_only = run_verify(signed_release.env, image, "--no-lakefs")
    assert registry_only.returncode == 0, registry_only.stderr
    lines = {
        line.split()[0]: line.split()[1] for line in registry_only.stdout.splitlines()[2:-1] if line.startswith("    ")
    }
    assert lines["signature"] == lines["provenance"] == lines["sealed-model"] == OK
    assert lines["validation-report"] == lines["source-model"] == UNREACHED


def test_an_unsigned_image_under_the_release_tag_breaks_the_signature(signed_release):
    tag = "unsigned-under-release-tag"
    clone(signed_release.client, signed_release.image_digest, tag, note=tag)
    done = run_verify(signed_release.env, f"{signed_release.client.repository_reference(REPOSITORY)}:{tag}")
    assert done.returncode == 1
    assert "the signature link" in done.stderr and "has no signature attached" in done.stderr


def test_an_edited_label_is_caught(signed_release):
    release = signed_release
    digest = clone(
        release.client, release.image_digest, "edited-label", labels={"io.edge-deploy.validation.status": "passed-ish"}
    )
    unsigned = verify_chain(release.client, REPOSITORY, digest, release.key.public, release.store)
    assert unsigned.first_broken[1].name == "signature"
    resign(release, digest, release.statement())  # a holder of the key re-signs it with the true provenance
    chain = verify_chain(release.client, REPOSITORY, digest, release.key.public, release.store).images[0]
    assert statuses(chain)["labels"] == BROKEN and statuses(chain)["sealed-model"] == SKIPPED
    assert "io.edge-deploy.validation.status is 'passed-ish', the provenance says 'passed'" in chain.first_broken.detail


def test_a_changed_material_hash_is_caught(signed_release):
    release = signed_release
    statement = with_material_sha256(release.statement(), "sealed-model", "0" * 64)
    # edited after signing: the envelope's signature no longer covers its payload
    edited = clone(release.client, release.image_digest, "edited-provenance", note="edited-provenance")
    resign(release, edited, release.statement())
    true_envelope = sign_envelope(release.key, subject(release.statement(), edited))
    tampered = replace(true_envelope, payload=subject(statement, edited)).to_json()
    attach_referrer(release.client, REPOSITORY, edited, ENVELOPE_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE, tampered,
                    {"predicateType": SLSA_PROVENANCE})  # fmt: skip
    # the only provenance on `edited` that the key signed is the true one, which the chain accepts
    assert verify_chain(release.client, REPOSITORY, edited, release.key.public, release.store).first_broken is None
    forged = clone(release.client, release.image_digest, "changed-material", note="changed-material")
    resign(release, forged, statement, key=SigningKey.generate())  # a provenance signed by another key
    chain = verify_chain(release.client, REPOSITORY, forged, release.key.public, release.store).images[0]
    assert chain.first_broken.name == "signature"  # that other key signed the image too
    sign_image(
        release.client, REPOSITORY, forged, release.key, identity=release.client.repository_reference(REPOSITORY)
    )
    chain = verify_chain(release.client, REPOSITORY, forged, release.key.public, release.store).images[0]
    assert chain.first_broken.name == "provenance" and "is not signed by the key" in chain.first_broken.detail
    resign(release, forged, statement)  # re-signed by the key holder: the hash itself is what is wrong
    chain = verify_chain(release.client, REPOSITORY, forged, release.key.public, release.store).images[0]
    assert chain.first_broken.name == "sealed-model"
    assert "the provenance says " + "0" * 64 in chain.first_broken.detail


def test_a_swapped_sealed_model_is_caught(signed_release):
    release = signed_release
    layer = gzip.compress(tar_of({"opt/edge/model/model.onnx.enc": os.urandom(2048)}))
    digest = clone(release.client, release.image_digest, "swapped-model", last_layer=layer)
    resign(release, digest, release.statement())
    chain = verify_chain(release.client, REPOSITORY, digest, release.key.public, release.store).images[0]
    assert statuses(chain)["labels"] == OK
    assert (
        chain.first_broken.name == "sealed-model"
        and "/opt/edge/model/model.onnx.enc in the image" in chain.first_broken.detail
    )


def test_a_report_that_says_failed_is_caught(signed_release, tmp_path):
    release = signed_release
    failed = {"passed": False, "failure": "parity: max abs diff 0.4", "shipped_sha256": "x", "schema_version": 1}
    publish_report(release.store, release.lakefs_repo, release.source_commit, "chain-run-failed", failed, tmp_path)
    statement = release.statement()
    statement["predicate"]["runDetails"]["metadata"]["invocationId"] = "chain-run-failed"
    digest = clone(release.client, release.image_digest, "failed-report", note="failed-report")
    resign(release, digest, statement)
    chain = verify_chain(release.client, REPOSITORY, digest, release.key.public, release.store).images[0]
    assert chain.first_broken.name == "validation-report"
    assert "says the model failed validation: parity: max abs diff 0.4" in chain.first_broken.detail


def test_a_source_file_that_differs_is_caught(signed_release):
    release = signed_release
    statement = with_material_sha256(release.statement(), "source-model/weights.pth", "f" * 64)
    digest = clone(release.client, release.image_digest, "other-source", note="other-source")
    resign(release, digest, statement)
    chain = verify_chain(release.client, REPOSITORY, digest, release.key.public, release.store).images[0]
    assert [link.name for link in chain.links if link.status != OK] == ["source-model"]
    assert "weights.pth: sha256" in chain.first_broken.detail and "f" * 64 in chain.first_broken.detail


def test_a_key_is_required_and_a_bare_name_is_refused(signed_release):
    env = {k: v for k, v in signed_release.env.items() if not k.startswith("EDGE_SIGNING")}
    done = run_verify(env, signed_release.result.index_reference)
    assert done.returncode == 2 and "EDGE_SIGNING_PUBLIC_KEY" in done.stderr
    done = run_verify(signed_release.env, "models/resnet18:v1")
    assert done.returncode == 2 and "name the image with its registry" in done.stderr
    missing = signed_release.result.index_reference.rsplit(":", 1)[0] + ":no-such-tag"
    done = run_verify(signed_release.env, missing)
    assert done.returncode == 3 and f"{missing} is not in the registry" in done.stderr


# -- making forgeries -------------------------------------------------------------------------------------------


def run_verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "LAKEFS_"))}
    return subprocess.run(
        [sys.executable, "-m", "edge_deploy.cli", "verify", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def with_material_sha256(statement: dict, name: str, sha256: str) -> dict:
    """`statement` with the sha256 of its material `name` changed."""
    for material in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if material["name"] == name:
            material["digest"]["sha256"] = sha256
    return statement


def subject(statement: dict, digest: str) -> bytes:
    moved = json.loads(json.dumps(statement))
    moved["subject"][0]["digest"]["sha256"] = digest.removeprefix("sha256:")
    return json.dumps(moved).encode()


def resign(release: SignedRelease, digest: str, statement: dict, key: SigningKey | None = None) -> None:
    """What a holder of the key can do: sign `digest`, attach the release's SBOM and `statement` to it."""
    key = key or release.key
    identity = release.client.repository_reference(REPOSITORY)
    sbom = release.client.get_blob(REPOSITORY, release.result.targets[0].sbom_digest)
    attach_sbom(release.client, REPOSITORY, digest, sbom)
    sign_image(release.client, REPOSITORY, digest, key, identity=identity)
    attest(release.client, REPOSITORY, digest, subject(statement, digest), SLSA_PROVENANCE, key)


def clone(
    client: RegistryClient,
    digest: str,
    tag: str,
    *,
    labels: dict[str, str] | None = None,
    last_layer: bytes | None = None,
    note: str = "",
) -> str:
    """Push a copy of image `digest` under `tag`, with labels edited or the last layer replaced (its
    config's diff id too, as a real rebuild would have it); `note` alone makes a new digest."""
    manifest = json.loads(client.get_manifest(REPOSITORY, digest).body)
    config = json.loads(client.get_blob(REPOSITORY, manifest["config"]["digest"]))
    config["config"]["Labels"].update(labels or {})
    if last_layer is not None:
        layer_digest = client.put_blob(REPOSITORY, last_layer)
        manifest["layers"][-1] |= {"digest": layer_digest, "size": len(last_layer)}
        config["rootfs"]["diff_ids"][-1] = "sha256:" + hashlib.sha256(gzip.decompress(last_layer)).hexdigest()
    config_bytes = json.dumps(config).encode()
    manifest["config"] |= {"digest": client.put_blob(REPOSITORY, config_bytes), "size": len(config_bytes)}
    if note:
        config["config"]["Labels"]["test.note"] = note
        config_bytes = json.dumps(config).encode()
        manifest["config"] |= {"digest": client.put_blob(REPOSITORY, config_bytes), "size": len(config_bytes)}
    return client.put_manifest(REPOSITORY, tag, manifest["mediaType"], json.dumps(manifest).encode())


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


# -- a verifier the project did not write ---------------------------------------------------------------------

SIGSTORE_JS = Path(__file__).parent / "sigstore_js"


@pytest.fixture(scope="module")
def sigstore_js() -> Path:
    """Sigstore's JavaScript verifier (@sigstore/verify, pinned in sigstore_js/package-lock.json),
    installed with npm from the npm registry on first use."""
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "Node.js and npm are needed (Debian: apt-get install nodejs npm)"
    if not (SIGSTORE_JS / "node_modules" / "@sigstore" / "verify").is_dir():
        done = subprocess.run([npm, "ci", "--no-fund", "--no-audit"], cwd=SIGSTORE_JS, capture_output=True, text=True)
        assert done.returncode == 0, f"npm ci in {SIGSTORE_JS} failed: {done.stderr[-2000:]}"
    return SIGSTORE_JS / "verify.cjs"


def referrer_layers(base: str, digest: str) -> list[tuple[dict, bytes]]:
    """(layer descriptor, layer bytes) of every artifact listed under `digest`'s referrers tag, fetched
    with plain HTTP requests (not the project's registry client)."""
    accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
    index = requests.get(f"{base}/manifests/{digest.replace(':', '-')}", headers=accept, timeout=10).json()
    found = []
    for entry in index["manifests"]:
        manifest = requests.get(f"{base}/manifests/{entry['digest']}", headers=accept, timeout=10).json()
        layer = manifest["layers"][0]
        found.append((layer, requests.get(f"{base}/blobs/{layer['digest']}", timeout=10).content))
    return found


def test_sigstores_own_verifier_accepts_the_signatures_and_the_provenance(signed_release, registry, sigstore_js):
    release = signed_release
    base = f"{registry.url}/v2/{REPOSITORY}"
    checks = []
    for digest in (release.image_digest, release.result.index_digest):
        for layer, data in referrer_layers(base, digest):
            if layer["mediaType"] == SIMPLE_SIGNING:
                signature = layer["annotations"][SIGNATURE_ANNOTATION]
                payload = base64.b64encode(data).decode()
                checks.append({"name": f"signature of {digest}", "kind": "message", "payload_b64": payload,
                               "signature_b64": signature})  # fmt: skip
                tampered = base64.b64encode(data.replace(digest.encode(), b"sha256:" + b"0" * 64)).decode()
                checks.append({"name": f"tampered signature of {digest}", "kind": "message",
                               "payload_b64": tampered, "signature_b64": signature})  # fmt: skip
            elif layer["mediaType"] == ENVELOPE_MEDIA_TYPE:
                checks.append({"name": f"provenance of {digest}", "kind": "dsse", "envelope": json.loads(data)})
    der = release.key.public.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = {"public_key_der_b64": base64.b64encode(der).decode(), "checks": checks}
    done = subprocess.run(
        ["node", str(sigstore_js)], input=json.dumps(request), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert set(results) == {check["name"] for check in checks} and len(results) == 5
    assert {name: verdict for name, verdict in results.items() if verdict != "ok"} == {
        f"tampered signature of {d}": "signature verification failed"
        for d in (release.image_digest, release.result.index_digest)
    }


def test_the_signing_key_never_enters_an_image_an_artifact_or_the_release(signed_release, registry):
    """Every blob of the release in the registry (layers, configs, signatures, SBOM, provenance) and
    the release's own record are searched for the private key, in PEM and in its raw scalar."""
    release = signed_release
    private = release.key.private_pem()
    secret_lines = [line for line in private.splitlines() if line and not line.startswith(b"-----")]
    scalar = release.key.private.private_numbers().private_value.to_bytes(32, "big")
    needles = [*secret_lines, scalar, base64.b64encode(scalar)]
    base = f"{registry.url}/v2/{REPOSITORY}"
    accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json"}  # fmt: skip
    blobs = set()
    for digest in (release.image_digest, release.result.index_digest):
        blobs |= {layer["digest"] for layer, _ in referrer_layers(base, digest)}
    manifest = requests.get(f"{base}/manifests/{release.image_digest}", headers=accept, timeout=10).json()
    blobs |= {manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
    for digest in blobs:
        data = requests.get(f"{base}/blobs/{digest}", timeout=60).content
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        assert not any(needle in data for needle in needles), f"the signing key is in blob {digest}"
    record = json.dumps(release.result.to_dict()).encode()
    assert not any(needle in record for needle in needles)


def test_the_builder_is_named_with_the_task_images_digest_from_the_registry(signed_release):
    release = signed_release
    task_digest = clone(release.client, release.image_digest, "builder-0123abc", note="a task image")
    reference = f"{release.client.repository_reference(REPOSITORY)}:builder-0123abc"
    assert task_image_digest(release.client, reference) == task_digest
    assert task_image_digest(release.client, "elsewhere.example/edge-deploy/builder:0123abc") == ""
    assert task_image_digest(release.client, f"{release.client.repository_reference(REPOSITORY)}:gone") == ""
    evidence = replace(release.result.targets[0].evidence, task_image=reference, task_image_digest=task_digest)
    statement = json.loads(
        provenance_statement("r", release.image_digest, evidence, None, None, "x86_64-cpu", "linux/amd64")
    )
    [builder_image] = statement["predicate"]["runDetails"]["builder"]["builderDependencies"]
    assert builder_image == {
        "name": "task-image",
        "uri": f"docker://{reference}",
        "digest": {"sha256": task_digest[7:]},
    }
