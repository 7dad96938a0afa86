"""No key material (KEKs or data keys, in base64 or hex) in logs, exceptions, reprs or inspect output."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge_deploy import crypto
from edge_deploy.crypto.stream import unwrap_data_key
from edge_deploy.errors import EdgeDeployError

from .conftest import assert_no_key_in


def test_a_full_rotation_leaks_no_key_anywhere(
    tmp_path: Path, key_one: bytes, key_two: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"EDGE_KEY_K1": crypto.encode_key(key_one), "EDGE_KEY_K2": crypto.encode_key(key_two)}
    texts: list[str] = []

    keyring = crypto.Keyring.from_env(env)
    model = tmp_path / "end2end.onnx"
    (tmp_path / "models").mkdir()
    model.write_bytes(b"onnx graph" * 1000)
    sealed = tmp_path / "models" / "end2end.onnx.enc"
    texts.append(repr(crypto.encrypt_file(model, sealed, keyring, "k1", chunk_size=1024, checksums=True)))
    data_key = unwrap_data_key(crypto.read_header(sealed), keyring, "test")
    texts.append(repr(crypto.read_header(sealed)))
    texts.append(json.dumps(crypto.inspect_file(sealed).to_dict()))
    texts.append(repr(crypto.decrypt_file(sealed, tmp_path / "opened.onnx", keyring)))
    texts.append(repr(crypto.decrypt_directory(tmp_path / "models", tmp_path / "plain", keyring)))
    texts.append(repr(crypto.rewrap_file(sealed, keyring, "k2")))
    texts.append(repr(keyring))

    failures = [
        lambda: crypto.decrypt_file(sealed, tmp_path / "x", crypto.Keyring({"k2": key_one})),  # wrong key
        lambda: crypto.decrypt_file(sealed, tmp_path / "x", crypto.Keyring({"k1": key_one})),  # unknown id
        lambda: crypto.Keyring.load(None, {"EDGE_KEY_K1": crypto.encode_key(key_one)[:-8]}),  # bad key text
        lambda: crypto.Keyring.load(None, {**env, "EDGE_KEY_K1_FILE": str(tmp_path / "absent")}),
    ]
    raw = sealed.read_bytes()
    sealed.write_bytes(raw[:-1])
    failures.append(lambda: crypto.decrypt_file_to_bytes(sealed, keyring))  # truncated
    for failure in failures:
        with pytest.raises(EdgeDeployError) as caught:
            failure()
        texts.extend([str(caught.value), repr(caught.value)])

    texts.append(caplog.text)
    assert any("k2" in text for text in texts)  # the texts are about the keys, by id
    assert_no_key_in("\n".join(texts), key_one, key_two, data_key)
