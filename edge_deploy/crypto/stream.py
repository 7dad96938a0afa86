"""Sealing and opening the format between binary streams, one chunk in memory at a time.

Decrypting to a stream writes each chunk once it has been authenticated, but truncation and
trailing data show only at the end: a caller that writes to a stream it cannot take back must
discard the output on error (the file functions in `files` do this with temp + rename).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_deploy.crypto.errors import CorruptedDataError, CryptoError, WrongKeyError
from edge_deploy.crypto.format import (
    DEFAULT_CHUNK_SIZE,
    KEY_SIZE,
    MAX_CHUNKS,
    NONCE_PREFIX_SIZE,
    TAG_SIZE,
    VERSION,
    WRAP_NONCE_SIZE,
    Header,
    check_chunk_size,
    chunk_nonce,
    parse_header,
    read_into,
)
from edge_deploy.crypto.keyring import Keyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamResult:
    """What one encryption or decryption moved."""

    key_id: str
    chunk_size: int
    chunks: int
    plaintext_size: int
    ciphertext_size: int


def new_header(keyring: Keyring, key_id: str, chunk_size: int, name: str) -> tuple[Header, AESGCM]:
    """A header for a new file with a fresh data key wrapped under `key_id`, and that data key."""
    kek = keyring.cipher(key_id, name)
    check_chunk_size(chunk_size)
    data_key = AESGCM.generate_key(KEY_SIZE * 8)
    unsealed = Header(VERSION, chunk_size, key_id, os.urandom(NONCE_PREFIX_SIZE), b"", b"")
    header = wrap_data_key(unsealed, kek, data_key)
    return header, AESGCM(data_key)


def wrap_data_key(header: Header, kek: AESGCM, data_key: bytes) -> Header:
    """`header` with `data_key` sealed under `kek`, bound to the body header and the key id."""
    wrap_nonce = os.urandom(WRAP_NONCE_SIZE)
    wrapped = kek.encrypt(wrap_nonce, data_key, header.wrap_aad)
    return Header(header.version, header.chunk_size, header.key_id, header.nonce_prefix, wrap_nonce, wrapped)


def unwrap_data_key(header: Header, keyring: Keyring, name: str) -> bytes:
    kek = keyring.cipher(header.key_id, name)
    try:
        return kek.decrypt(header.wrap_nonce, header.wrapped_key, header.wrap_aad)
    except InvalidTag:
        raise WrongKeyError(
            f"{name}: the key loaded as {header.key_id!r} does not open this file: it is not the key the file "
            "was sealed with, or the file's header was altered",
            header.key_id,
        ) from None


def open_data_key(header: Header, keyring: Keyring, name: str) -> AESGCM:
    return AESGCM(unwrap_data_key(header, keyring, name))


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    keyring: Keyring,
    key_id: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    name: str = "<stream>",
) -> StreamResult:
    """Seal everything `src` yields into `dst` under a new data key wrapped by KEK `key_id`."""
    header, data_cipher = new_header(keyring, key_id, chunk_size, name)
    dst.write(header.encode())
    aad = header.body_header
    plain, sealed = bytearray(chunk_size), bytearray(chunk_size + TAG_SIZE)
    plain_view, sealed_view = memoryview(plain), memoryview(sealed)
    index = plaintext_size = 0
    while True:
        count = read_into(src, plain_view)
        final = count < chunk_size  # only the final chunk is short, so a full one is never last
        if index >= MAX_CHUNKS:
            raise CryptoError(f"{name}: too large for {chunk_size}-byte chunks (more than 2^32 chunks)")
        nonce = chunk_nonce(header.nonce_prefix, index, final)
        data_cipher.encrypt_into(nonce, plain_view[:count], aad, sealed_view[: count + TAG_SIZE])
        dst.write(sealed_view[: count + TAG_SIZE])
        plaintext_size += count
        if final:
            break
        index += 1
    return StreamResult(key_id, chunk_size, index + 1, plaintext_size, header.ciphertext_size(plaintext_size))


def decrypt_stream(src: BinaryIO, dst: BinaryIO, keyring: Keyring, *, name: str = "<stream>") -> StreamResult:
    """Open a sealed stream into `dst`; see the module docstring about output on error."""
    header = parse_header(src, name)
    data_cipher = open_data_key(header, keyring, name)
    return _decrypt_chunks(src, dst.write, header, data_cipher, name)


def _decrypt_chunks(src: BinaryIO, write, header: Header, data_cipher: AESGCM, name: str) -> StreamResult:
    chunk_size, aad = header.chunk_size, header.body_header
    sealed, plain = bytearray(chunk_size + TAG_SIZE), bytearray(chunk_size)
    sealed_view, plain_view = memoryview(sealed), memoryview(plain)
    index = plaintext_size = 0
    while True:
        count = read_into(src, sealed_view)  # short only at the end of the stream: appended data makes it longer
        if count < TAG_SIZE:
            raise _truncated(name, index, count)
        final = count < chunk_size + TAG_SIZE
        if index >= MAX_CHUNKS:
            raise CorruptedDataError(f"{name}: more than 2^32 chunks (corrupted)", chunk=index)
        try:
            data_cipher.decrypt_into(
                chunk_nonce(header.nonce_prefix, index, final), sealed_view[:count], aad, plain_view[: count - TAG_SIZE]
            )
        except InvalidTag:
            raise _chunk_failed(name, index, final) from None
        write(plain_view[: count - TAG_SIZE])
        plaintext_size += count - TAG_SIZE
        if final:
            break
        index += 1
    return StreamResult(header.key_id, chunk_size, index + 1, plaintext_size, header.ciphertext_size(plaintext_size))


def _truncated(name: str, index: int, count: int) -> CorruptedDataError:
    if count == 0 and index > 0:
        message = f"{name}: truncated: it ends after chunk {index - 1} without a final chunk"
    else:
        message = f"{name}: truncated: chunk {index} is cut short"
    return CorruptedDataError(message, chunk=index)


def _chunk_failed(name: str, index: int, final: bool) -> CorruptedDataError:
    where = "the last chunk present" if final else "a full chunk"
    return CorruptedDataError(
        f"{name}: chunk {index} ({where}) failed authentication: "
        "the file is corrupted, truncated, extended or was tampered with",
        chunk=index,
    )


def decrypt_to_bytes(src: BinaryIO, keyring: Keyring, *, name: str = "<stream>") -> bytes:
    """The whole plaintext in memory (the edge runtime's path: the model never touches the disk).

    Peak memory is about twice the plaintext while the final `bytes` is assembled.
    """
    header = parse_header(src, name)
    data_cipher = open_data_key(header, keyring, name)
    parts: list[bytes] = []
    _decrypt_chunks(src, lambda view: parts.append(bytes(view)), header, data_cipher, name)
    log.debug("decrypted %s in memory under key id %s", name, header.key_id)
    return b"".join(parts)
