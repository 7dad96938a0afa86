"""The model-directory helpers the pipeline's decrypt and seal stages call."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edge_deploy import crypto


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model_dir(tmp_path: Path, keyring: crypto.Keyring) -> tuple[Path, dict[str, bytes]]:
    """A downloaded model: a sealed checkpoint (.enc), a sealed file without suffix, plain config files."""
    source = tmp_path / "download"
    (source / "configs").mkdir(parents=True)
    plaintexts = {
        "epoch_12.pth": os.urandom(5000),
        "configs/secret_config.py": b"model = dict(type='RetinaNet')\n",
        "configs/base.py": b"_base_ = []\n",
        "README.md": b"# model card\n",
    }
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for name, data in plaintexts.items():
        (scratch / "p").write_bytes(data)
        if name == "epoch_12.pth":
            crypto.encrypt_file(scratch / "p", source / "epoch_12.pth.enc", keyring, "k1", chunk_size=256)
        elif name == "configs/secret_config.py":
            crypto.encrypt_file(scratch / "p", source / name, keyring, "k1")
        else:
            (source / name).write_bytes(data)
    return source, plaintexts


def test_decrypt_directory_opens_sealed_files_and_copies_plain_ones(
    model_dir: tuple[Path, dict[str, bytes]], keyring: crypto.Keyring, tmp_path: Path
) -> None:
    source, plaintexts = model_dir
    output = tmp_path / "plain-model"

    results = crypto.decrypt_directory(source, output, keyring)

    by_name = {result.name: result for result in results}
    assert sorted(by_name) == sorted(plaintexts)
    for name, data in plaintexts.items():
        assert (output / name).read_bytes() == data
        assert by_name[name].sha256 == sha256(data) and by_name[name].size == len(data)
    checkpoint = by_name["epoch_12.pth"]
    assert (checkpoint.source_name, checkpoint.encrypted, checkpoint.key_id) == ("epoch_12.pth.enc", True, "k1")
    assert checkpoint.source_size == (source / "epoch_12.pth.enc").stat().st_size
    assert by_name["configs/secret_config.py"].encrypted  # recognised by magic, not by name
    assert not by_name["README.md"].encrypted and by_name["README.md"].key_id is None
    assert (output / "epoch_12.pth").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp directory left


def test_decrypt_directory_accepts_an_empty_existing_output(
    model_dir: tuple[Path, dict[str, bytes]], keyring: crypto.Keyring, tmp_path: Path
) -> None:
    source, plaintexts = model_dir
    output = tmp_path / "empty"
    output.mkdir()
    assert len(crypto.decrypt_directory(source, output, keyring)) == len(plaintexts)


def test_a_corrupted_file_leaves_no_output_directory_at_all(
    model_dir: tuple[Path, dict[str, bytes]], keyring: crypto.Keyring, tmp_path: Path
) -> None:
    source, _ = model_dir
    sealed = source / "epoch_12.pth.enc"
    raw = bytearray(sealed.read_bytes())
    raw[-1] ^= 1
    sealed.write_bytes(raw)
    output = tmp_path / "plain-model"
    with pytest.raises(crypto.CorruptedDataError, match=r"epoch_12\.pth\.enc: chunk 19"):
        crypto.decrypt_directory(source, output, keyring)
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unknown_key_id_in_a_directory_names_file_and_id(
    model_dir: tuple[Path, dict[str, bytes]], key_two: bytes, tmp_path: Path
) -> None:
    source, _ = model_dir
    with pytest.raises(crypto.UnknownKeyIdError, match="unknown key id 'k1'"):
        crypto.decrypt_directory(source, tmp_path / "out", crypto.Keyring({"k2": key_two}))
    assert not (tmp_path / "out").exists()


def test_two_files_claiming_one_output_name_are_refused_before_writing(
    model_dir: tuple[Path, dict[str, bytes]], keyring: crypto.Keyring, tmp_path: Path
) -> None:
    source, _ = model_dir
    (source / "epoch_12.pth").write_bytes(b"a plain copy beside the sealed one")
    with pytest.raises(crypto.CryptoError, match=r"both epoch_12\.pth and epoch_12\.pth\.enc would become"):
        crypto.decrypt_directory(source, tmp_path / "out", keyring)
    assert not (tmp_path / "out").exists()


def test_a_filled_output_directory_or_one_inside_the_source_is_refused(
    model_dir: tuple[Path, dict[str, bytes]], keyring: crypto.Keyring, tmp_path: Path
) -> None:
    source, _ = model_dir
    filled = tmp_path / "filled"
    filled.mkdir()
    (filled / "keep.txt").write_text("mine")
    with pytest.raises(crypto.CryptoError, match="is not an empty directory"):
        crypto.decrypt_directory(source, filled, keyring)
    assert [p.name for p in filled.iterdir()] == ["keep.txt"]
    with pytest.raises(crypto.CryptoError, match="must lie outside the source directory"):
        crypto.decrypt_directory(source, source / "decrypted", keyring)


def test_symbolic_links_in_a_model_directory_are_refused(
    model_dir: tuple[Path, dict[str, bytes]], keyring: crypto.Keyring, tmp_path: Path
) -> None:
    source, _ = model_dir
    (source / "link.py").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(crypto.CryptoError, match=r"link\.py is a symbolic link"):
        crypto.decrypt_directory(source, tmp_path / "out", keyring)


def test_output_name_drops_only_the_enc_suffix() -> None:
    assert crypto.output_name("model.onnx.enc") == "model.onnx"
    assert crypto.output_name("model.onnx") == "model.onnx"
    assert crypto.output_name(".enc") == ".enc"
