"""Every edit of a sealed file is detected, names the file (and the chunk), and leaves no output.

The sealed file under test has chunk size 64 and 4 full chunks plus a 10-byte final chunk, so
its body is 4 * 80 + 26 bytes after the header.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_deploy import crypto
from edge_deploy.crypto.stream import unwrap_data_key

CHUNK = 64
SEALED_CHUNK = CHUNK + 16
PLAINTEXT = os.urandom(4 * CHUNK + 10)


def split(raw: bytes) -> tuple[bytes, list[bytes]]:
    """(header, chunks) of a sealed file."""
    header_size = crypto.format.parse_header(io.BytesIO(raw), "x").size
    body = raw[header_size:]
    return raw[:header_size], [body[start : start + SEALED_CHUNK] for start in range(0, len(body), SEALED_CHUNK)]


@pytest.fixture
def sealed(seal) -> Path:
    return seal(PLAINTEXT, chunk_size=CHUNK)


def decrypt_tampered(sealed: Path, raw: bytes, keyring: crypto.Keyring) -> crypto.CryptoError:
    """Write `raw` over the sealed file, decrypt it to a file, and return the error it must raise."""
    sealed.write_bytes(raw)
    output = sealed.parent / "opened.bin"
    before = sorted(sealed.parent.iterdir())
    with pytest.raises(crypto.CryptoError) as caught:
        crypto.decrypt_file(sealed, output, keyring)
    assert sorted(sealed.parent.iterdir()) == before, "output or temp file left behind"
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_file_to_bytes(sealed, keyring)
    return caught.value


def flip(raw: bytes, position: int, bit: int = 0) -> bytes:
    edited = bytearray(raw)
    edited[position] ^= 1 << bit
    return bytes(edited)


def test_the_file_under_test_is_what_the_docstring_says(sealed: Path) -> None:
    _, chunks = split(sealed.read_bytes())
    assert [len(chunk) for chunk in chunks] == [SEALED_CHUNK] * 4 + [26]


def test_every_bit_of_the_header_is_protected(sealed: Path, keyring: crypto.Keyring) -> None:
    raw = sealed.read_bytes()
    header, _ = split(raw)
    for position in range(len(header)):
        for bit in range(8):
            decrypt_tampered(sealed, flip(raw, position, bit), keyring)


@pytest.mark.parametrize("chunk", range(5))
def test_a_flipped_bit_in_any_chunk_body_or_tag_names_that_chunk(
    sealed: Path, keyring: crypto.Keyring, chunk: int
) -> None:
    raw = sealed.read_bytes()
    header, chunks = split(raw)
    start = len(header) + chunk * SEALED_CHUNK
    for offset in range(len(chunks[chunk])):  # body bytes, then the 16 tag bytes
        error = decrypt_tampered(sealed, flip(raw, start + offset, offset % 8), keyring)
        assert isinstance(error, crypto.CorruptedDataError)
        assert error.chunk == chunk
        assert f"chunk {chunk}" in str(error) and str(sealed) in str(error)


def test_truncation_at_every_length_is_detected(sealed: Path, keyring: crypto.Keyring) -> None:
    raw = sealed.read_bytes()
    for length in range(len(raw)):
        decrypt_tampered(sealed, raw[:length], keyring)


@pytest.mark.parametrize("kept_chunks", [1, 2, 3, 4])
def test_truncation_at_a_chunk_boundary_reports_the_missing_final_chunk(
    sealed: Path, keyring: crypto.Keyring, kept_chunks: int
) -> None:
    header, chunks = split(sealed.read_bytes())
    error = decrypt_tampered(sealed, header + b"".join(chunks[:kept_chunks]), keyring)
    assert isinstance(error, crypto.CorruptedDataError)
    assert f"ends after chunk {kept_chunks - 1} without a final chunk" in str(error)


def test_truncation_mid_chunk_names_the_cut_chunk(sealed: Path, keyring: crypto.Keyring) -> None:
    header, chunks = split(sealed.read_bytes())
    error = decrypt_tampered(sealed, header + chunks[0] + chunks[1][:40], keyring)
    assert isinstance(error, crypto.CorruptedDataError) and error.chunk == 1


@pytest.mark.parametrize("dropped", range(5))
def test_dropping_any_chunk_is_detected(sealed: Path, keyring: crypto.Keyring, dropped: int) -> None:
    header, chunks = split(sealed.read_bytes())
    decrypt_tampered(sealed, header + b"".join(chunks[:dropped] + chunks[dropped + 1 :]), keyring)


@pytest.mark.parametrize("duplicated", range(5))
def test_duplicating_any_chunk_is_detected(sealed: Path, keyring: crypto.Keyring, duplicated: int) -> None:
    header, chunks = split(sealed.read_bytes())
    edited = [*chunks[: duplicated + 1], chunks[duplicated], *chunks[duplicated + 1 :]]
    decrypt_tampered(sealed, header + b"".join(edited), keyring)


def test_swapping_any_two_chunks_is_detected(sealed: Path, keyring: crypto.Keyring) -> None:
    raw = sealed.read_bytes()
    header, chunks = split(raw)
    for first in range(5):
        for second in range(first + 1, 5):
            edited = list(chunks)
            edited[first], edited[second] = edited[second], edited[first]
            decrypt_tampered(sealed, header + b"".join(edited), keyring)


def test_data_appended_after_the_final_chunk_is_detected(sealed: Path, keyring: crypto.Keyring) -> None:
    raw = sealed.read_bytes()
    _, chunks = split(raw)
    for appended in (b"\x00", chunks[0], chunks[4], os.urandom(200)):
        error = decrypt_tampered(sealed, raw + appended, keyring)
        assert isinstance(error, crypto.CorruptedDataError) and error.chunk in (4, 5)


def test_a_chunk_spliced_from_another_file_under_the_same_key_is_detected(
    seal, sealed: Path, keyring: crypto.Keyring
) -> None:
    # same KEK, same chunk size, same plaintext: only the per-file data key and nonce prefix differ
    other = seal(PLAINTEXT, chunk_size=CHUNK, name="other.bin")
    header, chunks = split(sealed.read_bytes())
    other_header, other_chunks = split(other.read_bytes())
    for index in range(5):
        spliced = list(chunks)
        spliced[index] = other_chunks[index]
        error = decrypt_tampered(sealed, header + b"".join(spliced), keyring)
        assert isinstance(error, crypto.CorruptedDataError) and error.chunk == index
    # and another file's header (its own valid key block) on this body
    decrypt_tampered(sealed, other_header + b"".join(chunks), keyring)


def test_a_failed_decryption_leaves_an_existing_output_untouched(sealed: Path, keyring: crypto.Keyring) -> None:
    output = sealed.parent.parent / "opened.bin"
    output.write_bytes(b"previous good model")
    raw = sealed.read_bytes()
    sealed.write_bytes(flip(raw, len(raw) - 1))
    with pytest.raises(crypto.CorruptedDataError):
        crypto.decrypt_file(sealed, output, keyring)
    assert output.read_bytes() == b"previous good model"


def test_each_chunk_is_bound_to_its_position_and_to_being_last(sealed: Path, keyring: crypto.Keyring) -> None:
    """The STREAM nonce: a chunk opens only with its own counter and its own final flag."""
    raw = sealed.read_bytes()
    header = crypto.format.parse_header(io.BytesIO(raw), "x")
    data_key = AESGCM(unwrap_data_key(header, keyring, "x"))
    _, chunks = split(raw)
    nonce = crypto.format.chunk_nonce
    assert data_key.decrypt(nonce(header.nonce_prefix, 4, final=True), chunks[4], header.body_header)
    for wrong in (nonce(header.nonce_prefix, 4, final=False), nonce(header.nonce_prefix, 3, final=True)):
        with pytest.raises(InvalidTag):
            data_key.decrypt(wrong, chunks[4], header.body_header)
    assert data_key.decrypt(nonce(header.nonce_prefix, 0, final=False), chunks[0], header.body_header)
    with pytest.raises(InvalidTag):
        data_key.decrypt(nonce(header.nonce_prefix, 0, final=True), chunks[0], header.body_header)
