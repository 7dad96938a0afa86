"""Key rotation: add the new KEK, rewrap, then retire the old one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_deploy import crypto


def body(path: Path) -> bytes:
    return path.read_bytes()[crypto.read_header(path).size :]


def test_rotation_from_kek_1_to_kek_2(seal, key_one: bytes, key_two: bytes, tmp_path: Path) -> None:
    data = os.urandom(1000)
    rewrapped, left_behind = seal(data, name="a.onnx"), seal(data, name="b.onnx")
    body_before = body(rewrapped)

    # KEK 2 is rolled out beside KEK 1: files sealed under KEK 1 still open
    both = crypto.Keyring({"k1": key_one, "k2": key_two})
    assert crypto.decrypt_file_to_bytes(rewrapped, both) == data

    result = crypto.rewrap_file(rewrapped, both, "k2")
    assert (result.old_key_id, result.new_key_id) == ("k1", "k2")
    assert crypto.inspect_file(rewrapped).key_id == "k2"
    assert body(rewrapped) == body_before  # the encrypted body is not touched
    assert crypto.decrypt_file_to_bytes(rewrapped, both) == data

    # KEK 1 retired: rewrapped files open, the forgotten one fails naming its key id
    only_two = crypto.Keyring({"k2": key_two})
    assert crypto.decrypt_file_to_bytes(rewrapped, only_two) == data
    with pytest.raises(crypto.UnknownKeyIdError, match="unknown key id 'k1'") as caught:
        crypto.decrypt_file(left_behind, tmp_path / "out", only_two)
    assert caught.value.key_id == "k1" and str(left_behind) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_rewrap_needs_the_new_key_and_leaves_the_file_unchanged_without_it(seal, keyring: crypto.Keyring) -> None:
    sealed = seal(b"model")
    before = sealed.read_bytes()
    with pytest.raises(crypto.UnknownKeyIdError, match="unknown key id 'k9'"):
        crypto.rewrap_file(sealed, keyring, "k9")
    assert sealed.read_bytes() == before
    assert sorted(p.name for p in sealed.parent.iterdir()) == [sealed.name]


def test_rewrap_needs_the_old_key(seal, key_two: bytes) -> None:
    sealed = seal(b"model")
    before = sealed.read_bytes()
    with pytest.raises(crypto.UnknownKeyIdError, match="unknown key id 'k1'"):
        crypto.rewrap_file(sealed, crypto.Keyring({"k2": key_two}), "k2")
    assert sealed.read_bytes() == before


def test_rewrap_keeps_the_file_mode_and_can_write_elsewhere(
    seal, key_one: bytes, key_two: bytes, tmp_path: Path
) -> None:
    sealed = seal(b"model" * 100)
    sealed.chmod(0o640)
    both = crypto.Keyring({"k1": key_one, "k2": key_two})
    crypto.rewrap_file(sealed, both, "k2")
    assert sealed.stat().st_mode & 0o777 == 0o640
    copy = tmp_path / "copy.enc"
    crypto.rewrap_file(sealed, both, "k1", dst=copy)
    assert crypto.inspect_file(sealed).key_id == "k2" and crypto.inspect_file(copy).key_id == "k1"
    assert crypto.decrypt_file_to_bytes(copy, crypto.Keyring({"k1": key_one})) == b"model" * 100


def test_a_different_key_under_the_same_id_is_a_wrong_key_error(seal, tmp_path: Path) -> None:
    sealed = seal(b"model")
    impostor = crypto.Keyring({"k1": crypto.generate_key()})
    with pytest.raises(crypto.WrongKeyError, match="the key loaded as 'k1' does not open this file") as caught:
        crypto.decrypt_file(sealed, tmp_path / "out", impostor)
    assert caught.value.key_id == "k1"
    assert not (tmp_path / "out").exists()


def test_a_relabelled_key_id_does_not_open(seal, key_one: bytes, tmp_path: Path) -> None:
    """The key id is bound into the wrapped data key, so renaming it in the header is detected."""
    sealed = seal(b"model")
    raw = sealed.read_bytes()
    relabelled = raw.replace(b"\x02k1", b"\x02k2", 1)
    assert relabelled != raw
    sealed.write_bytes(relabelled)
    same_key_two_ids = crypto.Keyring({"k1": key_one, "k2": key_one})
    with pytest.raises(crypto.WrongKeyError, match="'k2'"):
        crypto.decrypt_file_to_bytes(sealed, same_key_two_ids)
