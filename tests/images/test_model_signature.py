"""The sealed model's detached signature: `signing.blob` (cosign's sign-blob format), and how a build
makes it and carries it into an image: the seal task and `context.seal_model` sign when
EDGE_SIGNING_KEY(_FILE) is set, and `write_build_context` puts it beside the sealed model in `model/`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flytekit.types.directory import FlyteDirectory

from edge_deploy.crypto import Keyring
from edge_deploy.images.context import (
    RuntimeLayer,
    SealedModel,
    open_sealed_model,
    render_dockerfile,
    seal_model,
    write_build_context,
)
from edge_deploy.platforms import detect_targets
from edge_deploy.signing.blob import CHUNK_BYTES, BlobSignatureError, sign_file, signature_path, verify_file
from edge_deploy.signing.keys import SigningKey

TARGET = "x86_64-cpu"


@pytest.fixture(scope="module")
def release_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def blob(tmp_path) -> Path:
    path = tmp_path / "model.onnx.enc"
    path.write_bytes(bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 3))  # more than two chunks, and a remainder
    return path


# --- signing.blob ---------------------------------------------------------------------------------


def test_a_signature_is_one_line_of_base64_of_an_ecdsa_sha256_signature_over_the_whole_file(blob, release_key):
    signature = sign_file(blob, release_key)

    assert signature.path == signature_path(blob) == blob.with_name("model.onnx.enc.sig")
    assert signature.key_fingerprint == release_key.public.fingerprint()
    text = signature.path.read_text()
    assert "\n" not in text.strip() and text == text.strip()  # cosign writes it without a newline
    der = base64.b64decode(text, validate=True)
    # what an ordinary (not prehashed) ECDSA-SHA256 verification over the whole bytes accepts
    release_key.public.key.verify(der, blob.read_bytes(), ec.ECDSA(hashes.SHA256()))
    assert release_key.public.verifies(blob.read_bytes(), text)
    assert verify_file(blob, release_key.public) == signature


def test_a_signature_made_over_the_whole_file_in_memory_verifies_too(blob, release_key):
    der = release_key.sign(blob.read_bytes())  # SigningKey.sign: no streaming, no prehash
    signature_path(blob).write_bytes(base64.b64encode(der) + b"\n")
    assert verify_file(blob, release_key.public).key_fingerprint == release_key.public.fingerprint()


def test_a_missing_signature_names_the_file_and_the_missing_signature(blob, release_key):
    with pytest.raises(BlobSignatureError) as raised:
        verify_file(blob, release_key.public)
    assert raised.value.path == blob
    assert str(raised.value) == f"{blob}: not signed: there is no model.onnx.enc.sig beside it"


@pytest.mark.parametrize(
    "content",
    [b"not base64!", base64.b64encode(b"\x30\x02\x01"), b"", b"A" * 2000],
    ids=["not-base64", "not-der", "empty", "too-long"],
)
def test_a_malformed_signature_is_called_malformed(blob, release_key, content):
    signature_path(blob).write_bytes(content)
    with pytest.raises(BlobSignatureError, match=r"model\.onnx\.enc\.sig is malformed"):
        verify_file(blob, release_key.public)


def test_a_signature_by_another_key_names_the_trusted_key(blob, release_key):
    sign_file(blob, SigningKey.generate())
    fingerprint = release_key.public.fingerprint()
    with pytest.raises(BlobSignatureError, match=f"does not verify with the key whose fingerprint is {fingerprint}"):
        verify_file(blob, release_key.public)


def test_a_file_changed_after_signing_does_not_verify(blob, release_key):
    sign_file(blob, release_key)
    with blob.open("ab") as out:
        out.write(b"\0")
    with pytest.raises(BlobSignatureError, match="the file changed after it was signed"):
        verify_file(blob, release_key.public)


def test_signing_again_replaces_the_signature_and_leaves_no_temp_file(blob, release_key):
    sign_file(blob, SigningKey.generate())
    sign_file(blob, release_key)
    verify_file(blob, release_key.public)
    assert sorted(p.name for p in blob.parent.iterdir()) == ["model.onnx.enc", "model.onnx.enc.sig"]
    assert signature_path(blob).stat().st_mode & 0o777 == 0o644


def test_signing_and_verifying_stream_the_file(tmp_path, release_key):
    """A 512 MiB file (sparse: no disk) is signed and verified in a process whose peak memory grows by
    far less than the file: it is hashed in chunks, never read whole."""
    big = tmp_path / "big.enc"
    with big.open("wb") as out:
        out.truncate(512 * 1024 * 1024)
    (tmp_path / "key.pem").write_bytes(release_key.private_pem())
    script = (
        "import resource, sys\nfrom pathlib import Path\n"
        "from edge_deploy.signing.blob import sign_file, verify_file\nfrom edge_deploy.signing.keys import SigningKey\n"
        "key = SigningKey.from_file(Path(sys.argv[2]))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "sign_file(Path(sys.argv[1]), key)\nverify_file(Path(sys.argv[1]), key.public)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    argv = [sys.executable, "-c", script, str(big), str(tmp_path / "key.pem")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 64, f"peak RSS grew by {done.stdout.strip()} MiB"


# --- the build: context.seal_model, open_sealed_model, write_build_context ---------------------------


def build_context(tmp_path: Path, model: SealedModel) -> Path:
    """`write_build_context` for the x86_64 target, with an empty runtime layer (no wheels needed here)."""
    (tmp_path / "layer").mkdir(exist_ok=True)
    target = detect_targets([TARGET], "onnxruntime")[0]
    layer = RuntimeLayer(tmp_path / "layer", {}, "0" * 64)
    directory = tmp_path / f"context-{len(list(tmp_path.glob('context-*')))}"
    write_build_context(directory, target, layer, model, render_dockerfile(target))
    return directory


def use_signing_key(monkeypatch, tmp_path: Path, key: SigningKey | None) -> None:
    """EDGE_SIGNING_KEY_FILE as a build host sets it; None: no signing key at all."""
    monkeypatch.delenv("EDGE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("EDGE_SIGNING_KEY_FILE", raising=False)
    if key is not None:
        (tmp_path / "signing.pem").write_bytes(key.private_pem())
        monkeypatch.setenv("EDGE_SIGNING_KEY_FILE", str(tmp_path / "signing.pem"))


def test_seal_model_signs_with_the_configured_key(sealed_model, edge_key, release_key, monkeypatch, tmp_path):
    use_signing_key(monkeypatch, tmp_path, release_key)
    keyring = Keyring({edge_key.key_id: edge_key.key})

    model = seal_model(sealed_model.plaintext_path, keyring, edge_key.key_id, tmp_path / "out", "conv")

    assert model.signature is not None and model.signature.path == tmp_path / "out" / "model.onnx.enc.sig"
    assert verify_file(model.sealed_path, release_key.public) == model.signature


def test_without_a_signing_key_nothing_is_signed(sealed_model, edge_key, monkeypatch, tmp_path):
    use_signing_key(monkeypatch, tmp_path, None)
    keyring = Keyring({edge_key.key_id: edge_key.key})

    model = seal_model(sealed_model.plaintext_path, keyring, edge_key.key_id, tmp_path / "out", "conv")
    context = build_context(tmp_path, model)

    assert model.signature is None and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx.enc"]
    assert sorted(p.name for p in (context / "model").iterdir()) == ["model.json", "model.onnx.enc"]
    assert "signature" not in json.loads((context / "model" / "model.json").read_text())


def test_an_already_sealed_model_is_signed_once(sealed_model, edge_key, release_key, monkeypatch, tmp_path):
    use_signing_key(monkeypatch, tmp_path, release_key)
    keyring = Keyring({edge_key.key_id: edge_key.key})
    sealed = tmp_path / "given" / "resnet.onnx.enc"
    sealed.parent.mkdir()
    sealed.write_bytes((sealed_model.model_dir / "model.onnx.enc").read_bytes())

    first = open_sealed_model(sealed, keyring, "conv")
    written = signature_path(sealed).read_bytes()
    again = open_sealed_model(sealed, keyring, "conv")

    assert first.signature == again.signature and first.signature.path == signature_path(sealed)
    assert signature_path(sealed).read_bytes() == written  # kept: ECDSA would make new bytes each time


def test_the_build_context_carries_the_signature_into_model(sealed_model, edge_key, release_key, monkeypatch, tmp_path):
    use_signing_key(monkeypatch, tmp_path, release_key)
    keyring = Keyring({edge_key.key_id: edge_key.key})
    model = seal_model(sealed_model.plaintext_path, keyring, edge_key.key_id, tmp_path / "out", "conv")

    context = build_context(tmp_path, model)

    model_dir = context / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.onnx.enc", "model.onnx.enc.sig"]
    verify_file(model_dir / "model.onnx.enc", release_key.public)
    metadata = json.loads((model_dir / "model.json").read_text())
    assert metadata["signature"] == {"file": "model.onnx.enc.sig", "key_sha256": release_key.public.fingerprint()}
    assert files_holding_the_private_key(context, release_key) == []


def test_the_content_tag_covers_the_signing_key_but_not_the_signatures_random_bytes(
    sealed_model, edge_key, release_key, monkeypatch, tmp_path
):
    """model.json (a tag input) changes when a model is signed, or signed by another key; signing the
    same model again with the same key (new ECDSA bytes) leaves it as it was."""
    keyring = Keyring({edge_key.key_id: edge_key.key})

    def metadata(key: SigningKey | None, run: str) -> dict:
        use_signing_key(monkeypatch, tmp_path, key)
        model = seal_model(sealed_model.plaintext_path, keyring, edge_key.key_id, tmp_path / run, "conv")
        return json.loads((build_context(tmp_path, model) / "model" / "model.json").read_text())

    signed, signed_again = metadata(release_key, "a"), metadata(release_key, "b")
    assert (tmp_path / "a" / "model.onnx.enc.sig").read_bytes() != (tmp_path / "b" / "model.onnx.enc.sig").read_bytes()
    assert signed == signed_again
    assert metadata(None, "c") != signed != metadata(SigningKey.generate(), "d")


def files_holding_the_private_key(root: Path, key: SigningKey) -> list[Path]:
    scalar = key.private.private_numbers().private_value.to_bytes(32, "big")
    pem_body = "".join(key.private_pem().decode().splitlines()[1:-1]).encode()
    return [p for p in root.rglob("*") if p.is_file() and (scalar in p.read_bytes() or pem_body in p.read_bytes())]


# --- the seal task: the signature travels in its `serving` output to build_image --------------------


@pytest.fixture
def validated_dir(sealed_model, edge_key, monkeypatch, tmp_path) -> Path:
    """A validated model directory, and the seal task's keys: the edge key and the key id to seal under."""
    monkeypatch.setenv("EDGE_KEY_DIR", str(tmp_path / "keys"))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / edge_key.key_id).write_text(base64.b64encode(edge_key.key).decode())
    monkeypatch.setenv("EDGE_SEAL_KEY_ID", edge_key.key_id)
    directory = tmp_path / "validated"
    directory.mkdir()
    (directory / "end2end.onnx").write_bytes(sealed_model.plaintext_path.read_bytes())
    (directory / "serving.json").write_text('{"format": 1}')
    return directory


def test_the_seal_task_signs_with_edge_signing_key_and_the_image_gets_the_signature(
    validated_dir, edge_key, release_key, monkeypatch, tmp_path
):
    from tasks.seal import seal_model as seal_task

    use_signing_key(monkeypatch, tmp_path, None)
    monkeypatch.setenv("EDGE_SIGNING_KEY", release_key.private_pem().decode())  # as Flyte injects the secret

    sealed, seal, serving = seal_task(model_dir=FlyteDirectory(str(validated_dir)))

    serving_dir, sealed_path = Path(serving.download()), Path(sealed.download())
    assert sorted(p.name for p in serving_dir.iterdir()) == [
        "model-signature.json",
        "model.onnx.enc.sig",
        "serving.json",
    ]
    assert files_holding_the_private_key(serving_dir, release_key) == []
    assert release_key.private_pem().decode().splitlines()[1] not in repr(seal)
    # what build_image makes of the task's outputs (tasks.images.release_request), then the image's model/
    model = SealedModel("conv", sealed_path, seal.plaintext_sha256, seal.key_id, serving_dir=serving_dir)
    model_dir = build_context(tmp_path, model) / "model"
    verify_file(model_dir / "model.onnx.enc", release_key.public)
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "model.json",
        "model.onnx.enc",
        "model.onnx.enc.sig",
        "serving.json",
    ]
    metadata = json.loads((model_dir / "model.json").read_text())
    assert metadata["signature"]["key_sha256"] == release_key.public.fingerprint()


def test_the_seal_task_without_a_signing_key_writes_no_signature(validated_dir, monkeypatch, tmp_path):
    from tasks.seal import seal_model as seal_task

    use_signing_key(monkeypatch, tmp_path, None)

    sealed, _, serving = seal_task(model_dir=FlyteDirectory(str(validated_dir)))

    assert sorted(p.name for p in Path(serving.download()).iterdir()) == ["serving.json"]
    assert not signature_path(Path(sealed.download())).exists()
