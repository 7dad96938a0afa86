"""Keys and sealed files shared by the crypto tests."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_deploy import crypto


@pytest.fixture
def key_one() -> bytes:
    return crypto.generate_key()


@pytest.fixture
def key_two() -> bytes:
    return crypto.generate_key()


@pytest.fixture
def keyring(key_one: bytes) -> crypto.Keyring:
    return crypto.Keyring({"k1": key_one})


@pytest.fixture
def seal(tmp_path: Path, keyring: crypto.Keyring) -> Callable[..., Path]:
    """Write `data` to a plain file and seal it under k1; returns the sealed file's path."""

    def seal(data: bytes, chunk_size: int = 64, name: str = "model.bin") -> Path:
        plain = tmp_path / "plain" / name
        plain.parent.mkdir(exist_ok=True)
        plain.write_bytes(data)
        sealed = tmp_path / "sealed" / (name + ".enc")
        sealed.parent.mkdir(exist_ok=True)
        crypto.encrypt_file(plain, sealed, keyring, "k1", chunk_size=chunk_size)
        return sealed

    return seal


def key_texts(key: bytes) -> list[str]:
    """Every way a key could leak into text: base64 (both alphabets, unpadded) and hex."""
    return [
        base64.b64encode(key).decode(),
        base64.b64encode(key).decode().rstrip("="),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        key.hex(),
        key.hex().upper(),
    ]


def assert_no_key_in(text: str, *keys: bytes) -> None:
    for key in keys:
        for form in key_texts(key):
            assert form not in text, "key material leaked into text"
