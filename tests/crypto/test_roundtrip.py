"""Round trips through files, streams, pipes and memory, at the sizes where framing can go wrong."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_deploy import crypto

CHUNK = 64
EDGE_SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 37 * CHUNK + 5]


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_file_round_trip_at_chunk_edges(size: int, tmp_path: Path, keyring: crypto.Keyring) -> None:
    data = os.urandom(size)
    plain, sealed, opened = tmp_path / "plain", tmp_path / "plain.enc", tmp_path / "opened"
    plain.write_bytes(data)

    sealed_result = crypto.encrypt_file(plain, sealed, keyring, "k1", chunk_size=CHUNK)
    opened_result = crypto.decrypt_file(sealed, opened, keyring)

    assert opened.read_bytes() == data
    assert crypto.decrypt_file_to_bytes(sealed, keyring) == data
    # only the final chunk is short, so a multiple of the chunk size ends with an empty final chunk
    assert sealed_result.chunks == opened_result.chunks == size // CHUNK + 1
    assert sealed_result.ciphertext_size == sealed.stat().st_size
    assert opened_result.plaintext_size == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opened", "plain", "plain.enc"]  # no temp files left


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_inspect_reports_the_header_and_the_sizes_the_length_implies(
    size: int, tmp_path: Path, keyring: crypto.Keyring
) -> None:
    plain, sealed = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(os.urandom(size))
    crypto.encrypt_file(plain, sealed, keyring, "k1", chunk_size=CHUNK)

    info = crypto.inspect_file(sealed)

    assert (info.version, info.key_id, info.chunk_size) == (crypto.VERSION, "k1", CHUNK)
    assert (info.plaintext_size, info.ciphertext_size, info.chunks) == (size, sealed.stat().st_size, size // CHUNK + 1)
    assert info.header_size == crypto.read_header(sealed).size


def test_empty_file_is_a_header_and_one_tag(tmp_path: Path, keyring: crypto.Keyring) -> None:
    plain, sealed = tmp_path / "empty", tmp_path / "empty.enc"
    plain.write_bytes(b"")
    crypto.encrypt_file(plain, sealed, keyring, "k1")
    assert sealed.stat().st_size == crypto.read_header(sealed).size + 16
    assert crypto.decrypt_file_to_bytes(sealed, keyring) == b""


def test_default_chunk_size_round_trip_over_several_chunks(tmp_path: Path, keyring: crypto.Keyring) -> None:
    data = os.urandom(3 * crypto.DEFAULT_CHUNK_SIZE + 12345)
    plain, sealed = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(data)
    result = crypto.encrypt_file(plain, sealed, keyring, "k1")
    assert result.chunks == 4
    assert crypto.decrypt_file_to_bytes(sealed, keyring) == data


def test_every_encryption_of_the_same_data_differs(tmp_path: Path, keyring: crypto.Keyring) -> None:
    sealed = [io.BytesIO(), io.BytesIO()]
    for out in sealed:
        crypto.encrypt_stream(io.BytesIO(b"same model"), out, keyring, "k1")
    assert sealed[0].getvalue() != sealed[1].getvalue()  # fresh data key and nonce prefix per file


def test_is_encrypted_by_magic(tmp_path: Path, keyring: crypto.Keyring) -> None:
    plain, sealed, short = tmp_path / "plain", tmp_path / "sealed", tmp_path / "short"
    plain.write_bytes(b"ONNX model bytes that are long enough")
    short.write_bytes(b"\x89")
    crypto.encrypt_file(plain, sealed, keyring, "k1")
    assert crypto.is_encrypted(sealed)
    assert not crypto.is_encrypted(plain)
    assert not crypto.is_encrypted(short)


def test_decrypting_a_plain_file_says_it_is_not_encrypted(tmp_path: Path, keyring: crypto.Keyring) -> None:
    plain = tmp_path / "model.onnx"
    plain.write_bytes(b"\x08\x07ONNX protobuf, not sealed")
    with pytest.raises(crypto.NotEncryptedError, match=r"model\.onnx is not an edge-deploy encrypted file"):
        crypto.decrypt_file(plain, tmp_path / "out", keyring)
    with pytest.raises(crypto.NotEncryptedError):
        crypto.inspect_file(plain)
    assert not (tmp_path / "out").exists()


def test_a_newer_format_version_is_refused_by_name(seal, keyring: crypto.Keyring, tmp_path: Path) -> None:
    sealed = seal(b"data")
    raw = bytearray(sealed.read_bytes())
    raw[len(crypto.MAGIC)] = 2  # the version byte
    sealed.write_bytes(raw)
    with pytest.raises(crypto.UnsupportedVersionError, match="format version 2; this build reads 1"):
        crypto.decrypt_file(sealed, tmp_path / "out", keyring)


def test_stream_round_trip_through_a_pipe_with_short_reads(keyring: crypto.Keyring) -> None:
    """A pipe hands out whatever is buffered; the reader must still find chunk boundaries."""
    data = os.urandom(10 * CHUNK + 3)
    sealed = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(data), sealed, keyring, "k1", chunk_size=CHUNK)
    read_end, write_end = os.pipe()

    def trickle() -> None:
        payload = sealed.getvalue()
        with os.fdopen(write_end, "wb", buffering=0) as pipe:
            for start in range(0, len(payload), 7):
                pipe.write(payload[start : start + 7])

    writer = threading.Thread(target=trickle)
    writer.start()
    opened = io.BytesIO()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        result = crypto.decrypt_stream(pipe, opened, keyring)
    writer.join()
    assert opened.getvalue() == data
    assert result.plaintext_size == len(data)


def test_encrypting_from_an_unbuffered_pipe(keyring: crypto.Keyring) -> None:
    data = os.urandom(5 * CHUNK)
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: os.fdopen(write_end, "wb").write(data) and None)
    writer.start()
    sealed = io.BytesIO()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        crypto.encrypt_stream(pipe, sealed, keyring, "k1", chunk_size=CHUNK)
    writer.join()
    assert crypto.decrypt_to_bytes(io.BytesIO(sealed.getvalue()), keyring) == data


@pytest.mark.parametrize("chunk_size", [crypto.MIN_CHUNK_SIZE - 1, crypto.MAX_CHUNK_SIZE + 1])
def test_chunk_size_out_of_range_is_refused(chunk_size: int, keyring: crypto.Keyring) -> None:
    with pytest.raises(crypto.CryptoError, match="chunk size must be between"):
        crypto.encrypt_stream(io.BytesIO(b"x"), io.BytesIO(), keyring, "k1", chunk_size=chunk_size)


def test_encrypt_output_keeps_the_source_mode_and_decrypt_output_is_private(
    tmp_path: Path, keyring: crypto.Keyring
) -> None:
    plain, sealed, opened = tmp_path / "plain", tmp_path / "plain.enc", tmp_path / "opened"
    plain.write_bytes(b"weights")
    plain.chmod(0o644)
    crypto.encrypt_file(plain, sealed, keyring, "k1")
    crypto.decrypt_file(sealed, opened, keyring)
    assert sealed.stat().st_mode & 0o777 == 0o644  # a sealed model may be read by a non-root edge runtime
    assert opened.stat().st_mode & 0o777 == 0o600


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=3000),
    chunk_size=st.integers(min_value=crypto.MIN_CHUNK_SIZE, max_value=700),
)
def test_any_size_and_chunk_size_round_trips(data: bytes, chunk_size: int, keyring: crypto.Keyring) -> None:
    sealed = io.BytesIO()
    result = crypto.encrypt_stream(io.BytesIO(data), sealed, keyring, "k1", chunk_size=chunk_size)
    assert len(sealed.getvalue()) == result.ciphertext_size
    assert result.chunks == len(data) // chunk_size + 1
    assert crypto.decrypt_to_bytes(io.BytesIO(sealed.getvalue()), keyring) == data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=0, max_value=2000), chunk_size=st.integers(min_value=16, max_value=300))
def test_the_length_alone_gives_the_plaintext_size(size: int, chunk_size: int, keyring: crypto.Keyring) -> None:
    sealed = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(bytes(size)), sealed, keyring, "k1", chunk_size=chunk_size)
    header = crypto.format.parse_header(io.BytesIO(sealed.getvalue()), "x")
    assert header.layout(len(sealed.getvalue()), "x") == (size // chunk_size + 1, size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("checksums", [True, False])
def test_encrypt_file_reports_sizes_and_both_checksums_when_asked(
    tmp_path: Path, keyring: crypto.Keyring, checksums: bool
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)  # several batches: the writer thread hashes and writes
    onnx, sealed = tmp_path / "end2end.onnx", tmp_path / "end2end.onnx.enc"
    onnx.write_bytes(data)

    result = crypto.encrypt_file(onnx, sealed, keyring, "k1", checksums=checksums)

    ciphertext = sealed.read_bytes()
    assert result.key_id == "k1" and result.chunk_size == crypto.DEFAULT_CHUNK_SIZE
    assert (result.plaintext_size, result.ciphertext_size) == (len(data), len(ciphertext))
    if checksums:
        assert (result.plaintext_sha256, result.ciphertext_sha256) == (sha256(data), sha256(ciphertext))
    else:
        assert (result.plaintext_sha256, result.ciphertext_sha256) == (None, None)
    assert crypto.decrypt_file_to_bytes(sealed, keyring) == data


def test_encrypt_file_under_an_unknown_key_writes_nothing(tmp_path: Path, keyring: crypto.Keyring) -> None:
    onnx = tmp_path / "end2end.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(crypto.UnknownKeyIdError, match="'edge-2026'"):
        crypto.encrypt_file(onnx, tmp_path / "end2end.onnx.enc", keyring, "edge-2026")
    assert [p.name for p in tmp_path.iterdir()] == ["end2end.onnx"]
