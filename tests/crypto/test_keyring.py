"""Loading key-encryption keys from variables and a mounted secret directory."""

from __future__ import annotations

import base64
import os
import pickle
from pathlib import Path

import pytest

from edge_deploy import crypto
from edge_deploy.config import Settings
from edge_deploy.errors import ConfigError

from .conftest import assert_no_key_in


def text(key: bytes) -> str:
    return crypto.encode_key(key)


def mount_like_kubernetes(directory: Path, keys: dict[str, bytes]) -> None:
    """The layout kubelet makes for a secret volume: files in a timestamped dir, linked via ..data."""
    versioned = directory / "..2026_11_26_06_00_00.123456789"
    versioned.mkdir(parents=True)
    for key_id, key in keys.items():
        (versioned / key_id).write_text(text(key) + "\n")
    (directory / "..data").symlink_to(versioned.name)
    for key_id in keys:
        (directory / key_id).symlink_to(Path("..data") / key_id)


def test_keys_from_variables_and_a_mounted_directory_load_together(tmp_path: Path) -> None:
    keys = {name: crypto.generate_key() for name in ("edge-2026", "edge-2027", "source")}
    mount_like_kubernetes(tmp_path, {"edge-2026": keys["edge-2026"], "edge-2027": keys["edge-2027"]})
    env = {"EDGE_KEY_SOURCE": text(keys["source"]), "EDGE_KEY_DIR": str(tmp_path), "EDGE_SEAL_KEY_ID": "edge-2027"}

    keyring = crypto.Keyring.from_env(env)

    assert keyring.ids == ("edge-2026", "edge-2027", "source")
    for key_id, key in keys.items():
        assert crypto.Keyring({key_id: key}).cipher(key_id, "x").encrypt(b"\0" * 12, b"m", None) == (
            keyring.cipher(key_id, "x").encrypt(b"\0" * 12, b"m", None)
        )


def test_variable_names_map_to_key_ids(tmp_path: Path) -> None:
    key = crypto.generate_key()
    keyring = crypto.Keyring.load(None, {"EDGE_KEY_EDGE_2026": text(key), "EDGE_KEY_DIR": "ignored"})
    assert keyring.ids == ("edge-2026",)
    assert crypto.key_env_var("edge-2026") == "EDGE_KEY_EDGE_2026"


def test_a_key_can_come_from_a_file_named_by_a_variable(tmp_path: Path) -> None:
    key_file = tmp_path / "secret"
    key_file.write_text(text(crypto.generate_key()))
    keyring = crypto.Keyring.load(None, {"EDGE_KEY_LAKE_SOURCE_FILE": str(key_file)})
    assert keyring.ids == ("lake-source",)


def test_url_safe_base64_and_surrounding_whitespace_are_accepted() -> None:
    key = bytes(range(200, 232))  # has + and / in standard base64
    keyring = crypto.Keyring.load(None, {"EDGE_KEY_A": "  " + base64.urlsafe_b64encode(key).decode() + "\n"})
    assert keyring.ids == ("a",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64 at all!", "EDGE_KEY_BAD: not a base64 key"),
        (base64.b64encode(b"k" * 16).decode(), "EDGE_KEY_BAD: a key must be 32 bytes, this one decodes to 16 bytes"),
        ("   ", "EDGE_KEY_BAD is set but empty"),
    ],
)
def test_a_bad_key_variable_is_named(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        crypto.Keyring.load(None, {"EDGE_KEY_BAD": value})
    assert value.strip() == "" or value not in str(caught.value)


def test_a_bad_key_file_is_named_without_its_content(tmp_path: Path) -> None:
    short_key = os.urandom(31)
    (tmp_path / "edge-2026").write_text(text(short_key))
    with pytest.raises(ConfigError, match="EDGE_KEY_DIR file edge-2026: a key must be 32 bytes") as caught:
        crypto.Keyring.load(tmp_path)
    assert_no_key_in(str(caught.value), short_key)


@pytest.mark.parametrize("file_name", ["Edge_2026", "-edge", "edge.key", "x" * 65])
def test_file_names_must_be_valid_key_ids(tmp_path: Path, file_name: str) -> None:
    (tmp_path / file_name).write_text(text(crypto.generate_key()))
    with pytest.raises(ConfigError, match="the file name is the key id and must be 1-64 characters"):
        crypto.Keyring.load(tmp_path)


def test_a_directory_in_the_key_dir_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "edge-2026").mkdir()
    with pytest.raises(ConfigError, match="edge-2026: not a regular file"):
        crypto.Keyring.load(tmp_path)


def test_a_missing_key_dir_fails_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EDGE_KEY_DIR"):
        crypto.Keyring.from_env({"EDGE_KEY_DIR": str(tmp_path / "absent")})


def test_the_same_id_twice_must_carry_the_same_key(tmp_path: Path) -> None:
    key = crypto.generate_key()
    (tmp_path / "edge-2026").write_text(text(key))
    same = crypto.Keyring.load(tmp_path, {"EDGE_KEY_EDGE_2026": text(key)})
    assert same.ids == ("edge-2026",)
    other = crypto.generate_key()
    with pytest.raises(ConfigError, match="key id 'edge-2026' is given twice with different keys") as caught:
        crypto.Keyring.load(tmp_path, {"EDGE_KEY_EDGE_2026": text(other)})
    assert_no_key_in(str(caught.value), key, other)


def test_an_unknown_key_id_names_the_id_and_where_to_put_its_key(keyring: crypto.Keyring) -> None:
    with pytest.raises(crypto.UnknownKeyIdError) as caught:
        keyring.cipher("edge-2027", "model.onnx.enc")
    assert caught.value.key_id == "edge-2027"
    message = str(caught.value)
    assert "unknown key id 'edge-2027'" in message and "loaded key ids: k1" in message
    assert "EDGE_KEY_EDGE_2027" in message and "model.onnx.enc" in message


def test_a_keyring_never_shows_or_pickles_its_keys(key_one: bytes, keyring: crypto.Keyring) -> None:
    assert repr(keyring) == str(keyring) == "Keyring(ids=['k1'])"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keyring)


def test_adding_a_key_of_the_wrong_size_or_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be 32 bytes"):
        crypto.Keyring({"k1": b"short"})
    with pytest.raises(ConfigError, match="not a valid key id"):
        crypto.Keyring({"K_1": crypto.generate_key()})


def test_write_key_file_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "edge-2026"
    first = crypto.generate_key()
    crypto.write_key_file(path, first)
    assert path.stat().st_mode & 0o777 == 0o600
    assert crypto.decode_key(path.read_text(), "test") == first
    with pytest.raises(ConfigError, match="never overwritten"):
        crypto.write_key_file(path, crypto.generate_key())
    assert crypto.decode_key(path.read_text(), "test") == first
    assert [p.name for p in tmp_path.iterdir()] == ["edge-2026"]


def test_keys_load_whatever_the_other_settings_hold(tmp_path: Path) -> None:
    """A device or build step whose MongoDB URI (or any setting keys do not use) is malformed still opens models."""
    key = crypto.generate_key()
    (tmp_path / "edge-2026").write_text(text(key))
    env = {
        "EDGE_KEY_DIR": str(tmp_path),
        "EDGE_SEAL_KEY_ID": "edge-2026",
        "MONGODB_URI": "localhost:27017",  # no scheme: Settings refuses it
        "EDGE_REGISTRY_INSECURE": "perhaps",
    }
    with pytest.raises(ConfigError, match="MONGODB_URI"):
        Settings.from_env(env)

    assert crypto.Keyring.from_env(env).ids == ("edge-2026",)
    assert crypto.seal_key_id_from_env(env) == "edge-2026"
    assert crypto.key_dir_from_env(env) == tmp_path


def test_a_missing_seal_key_id_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="set EDGE_SEAL_KEY_ID"):
        crypto.seal_key_id_from_env({"EDGE_SEAL_KEY_ID": "  "})


def test_a_key_directory_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"EDGE_KEY_DIR: .*/missing-keys does not exist"):
        crypto.Keyring.from_env({"EDGE_KEY_DIR": str(tmp_path / "missing-keys")})
