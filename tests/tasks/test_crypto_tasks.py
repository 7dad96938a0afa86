"""decrypt_model and seal_model as Flyte tasks, with keys from the environment."""

import base64
import hashlib
import os
from pathlib import Path

import pytest
from flytekit.types.directory import FlyteDirectory

from edge_deploy.crypto import Keyring, UnknownKeyIdError, decrypt_file_to_bytes, encrypt_file, is_encrypted
from edge_deploy.errors import ConfigError, EdgeDeployError
from tasks.decrypt import decrypt_model
from tasks.seal import seal_model

SOURCE_KEY, EDGE_KEY = os.urandom(32), os.urandom(32)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("EDGE_KEY_SOURCE_2026", base64.b64encode(SOURCE_KEY).decode())
    monkeypatch.setenv("EDGE_KEY_EDGE_2026", base64.b64encode(EDGE_KEY).decode())
    monkeypatch.setenv("EDGE_SEAL_KEY_ID", "edge-2026")
    return Keyring({"source-2026": SOURCE_KEY, "edge-2026": EDGE_KEY})


def test_decrypt_model_decrypts_sealed_files_and_passes_plain_ones(keys, tmp_path):
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    checkpoint = os.urandom(100_000)
    (tmp_path / "epoch.pth").write_bytes(checkpoint)
    encrypt_file(tmp_path / "epoch.pth", source / "sub" / "epoch.pth.enc", keys, "source-2026")
    (source / "config.py").write_text("model = dict()\n")

    model_dir, files = decrypt_model(model_dir=FlyteDirectory(str(source)))

    out = Path(model_dir.path)
    assert (out / "sub" / "epoch.pth").read_bytes() == checkpoint
    assert (out / "config.py").read_text() == "model = dict()\n"
    assert not (out / "sub" / "epoch.pth.enc").exists()
    by_name = {f.name: f for f in files}
    assert by_name["sub/epoch.pth"].encrypted and by_name["sub/epoch.pth"].key_id == "source-2026"
    assert by_name["sub/epoch.pth"].sha256 == hashlib.sha256(checkpoint).hexdigest()
    assert not by_name["config.py"].encrypted


def test_a_plaintext_directory_passes_through_untouched(keys, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "epoch.pth").write_bytes(b"plain")

    model_dir, files = decrypt_model(model_dir=FlyteDirectory(str(tmp_path / "model")))

    assert files == [] and Path(model_dir.path) == tmp_path / "model"


def test_decrypt_model_with_the_key_missing_names_the_key_id(keys, monkeypatch, tmp_path):
    (tmp_path / "model").mkdir()
    encrypt_file(_write(tmp_path / "w.pth", b"x"), tmp_path / "model" / "w.pth.enc", keys, "source-2026")
    monkeypatch.delenv("EDGE_KEY_SOURCE_2026")

    with pytest.raises(UnknownKeyIdError, match="source-2026"):
        decrypt_model(model_dir=FlyteDirectory(str(tmp_path / "model")))


def test_seal_model_encrypts_under_the_edge_key(keys, tmp_path):
    (tmp_path / "validated").mkdir()
    onnx = _write(tmp_path / "validated" / "end2end.onnx", os.urandom(50_000))
    _write(tmp_path / "validated" / "serving.json", b'{"format": 1}')
    _write(tmp_path / "validated" / "conversion.json", b"{}")

    sealed, seal, serving = seal_model(model_dir=FlyteDirectory(str(tmp_path / "validated")))

    # the serving recipe travels with the sealed model; the plaintext model and other files do not
    assert sorted(p.name for p in Path(serving.download()).iterdir()) == ["serving.json"]

    assert Path(sealed.path).name == "end2end.onnx.enc" and is_encrypted(sealed.path)
    assert seal.key_id == "edge-2026"
    assert seal.plaintext_sha256 == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert decrypt_file_to_bytes(sealed.path, keys) == onnx.read_bytes()
    assert EDGE_KEY.hex() not in repr(seal) and base64.b64encode(EDGE_KEY).decode() not in repr(seal)


def test_seal_model_without_a_chosen_key_names_the_variable(keys, monkeypatch, tmp_path):
    monkeypatch.delenv("EDGE_SEAL_KEY_ID")
    _write(tmp_path / "end2end.onnx", b"x")
    with pytest.raises(ConfigError, match="EDGE_SEAL_KEY_ID"):
        seal_model(model_dir=FlyteDirectory(str(tmp_path)))


def test_seal_model_names_a_missing_file(keys, tmp_path):
    with pytest.raises(EdgeDeployError, match=r"optimized\.onnx is not in the validated model directory"):
        seal_model(model_dir=FlyteDirectory(str(tmp_path)), file_name="optimized.onnx")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
