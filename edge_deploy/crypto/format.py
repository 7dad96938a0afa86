"""Version 1 of the encrypted file format: constants, the header, nonces and size arithmetic.

docs/encryption-format.md is the specification; this module is its executable form. Layout
(integers big-endian):

    body header (20 bytes, the associated data of every chunk)
      magic 8 | version 1 | chunk size 4 | nonce prefix 7
    key block (61 + n bytes, replaced by `rewrap`)
      key id length 1 | key id n | wrap nonce 12 | wrapped data key 48
    chunks: AES-256-GCM(data key, nonce = prefix 7 | counter 4 | final flag 1, aad = body header)

Every chunk holds exactly `chunk size` plaintext bytes except the final one, which holds fewer
(possibly zero), so an empty file is the header plus one 16-byte tag.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from edge_deploy.crypto.errors import CorruptedDataError, CryptoError, NotEncryptedError, UnsupportedVersionError

MAGIC = b"\x89EDGEENC"  # the high first byte keeps it from ever reading as text
VERSION = 1
KEY_SIZE = 32  # AES-256, for key-encryption keys and data keys alike
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
WRAP_NONCE_SIZE = 12
WRAPPED_KEY_SIZE = KEY_SIZE + TAG_SIZE
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64 * 1024 * 1024  # bounds what a crafted header can make a reader allocate
DEFAULT_CHUNK_SIZE = 1024 * 1024  # chosen from benchmarks/crypto_throughput.py, see the docs
MAX_CHUNKS = 2**32  # the counter is 32 bits wide
ENCRYPTED_SUFFIX = ".enc"

_BODY_HEADER = struct.Struct(">8sBI7s")
BODY_HEADER_SIZE = _BODY_HEADER.size  # 20
MAX_KEY_ID_LENGTH = 64  # the header stores the length in one byte; 64 keeps ids readable
KEY_ID_RULE = f"1-{MAX_KEY_ID_LENGTH} characters of a-z, 0-9 and '-', not starting with '-'"
_KEY_ID = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{MAX_KEY_ID_LENGTH - 1}}}")


def is_valid_key_id(key_id: str) -> bool:
    return bool(_KEY_ID.fullmatch(key_id))


def check_chunk_size(chunk_size: int) -> int:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise CryptoError(f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, got {chunk_size}")
    return chunk_size


def chunk_nonce(prefix: bytes, index: int, final: bool) -> bytes:
    """STREAM nonce: the file's random prefix, the chunk counter, and whether this chunk is the last."""
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


@dataclass(frozen=True)
class Header:
    """A parsed header. The nonces and the wrapped key are not secret, but they stay out of reprs."""

    version: int
    chunk_size: int
    key_id: str
    nonce_prefix: bytes = field(repr=False)
    wrap_nonce: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)

    @property
    def body_header(self) -> bytes:
        """The associated data of every chunk; `rewrap` never changes it."""
        return _BODY_HEADER.pack(MAGIC, self.version, self.chunk_size, self.nonce_prefix)

    @property
    def wrap_aad(self) -> bytes:
        """What the wrapped data key is bound to: the body header and the key id."""
        key_id = self.key_id.encode("ascii")
        return self.body_header + bytes([len(key_id)]) + key_id

    def encode(self) -> bytes:
        return self.wrap_aad + self.wrap_nonce + self.wrapped_key

    @property
    def size(self) -> int:
        return BODY_HEADER_SIZE + 1 + len(self.key_id) + WRAP_NONCE_SIZE + WRAPPED_KEY_SIZE

    def ciphertext_size(self, plaintext_size: int) -> int:
        """The size of a whole file holding `plaintext_size` bytes."""
        chunks = plaintext_size // self.chunk_size + 1
        return self.size + plaintext_size + chunks * TAG_SIZE

    def layout(self, file_size: int, name: str) -> tuple[int, int]:
        """(chunk count, plaintext size) implied by a file's length; checked only when decrypted.

        A length no whole file can have fails as decrypting it would: naming the chunk cut short.
        """
        body = max(0, file_size - self.size)
        full_chunks, final_length = divmod(body, self.chunk_size + TAG_SIZE)  # the final chunk is short
        if final_length < TAG_SIZE:  # the final chunk always has a tag
            raise truncation_error(name, full_chunks, final_length)
        return full_chunks + 1, full_chunks * self.chunk_size + final_length - TAG_SIZE


def truncation_error(name: str, index: int, count: int) -> CorruptedDataError:
    """Chunk `index` has only `count` bytes where a chunk (at least its tag) should be."""
    if count == 0 and index > 0:
        message = f"{name}: truncated: it ends after chunk {index - 1} without a final chunk"
    else:
        message = f"{name}: truncated: chunk {index} is cut short"
    return CorruptedDataError(message, chunk=index)


def parse_header(stream: BinaryIO, name: str) -> Header:
    """Read and check a header from the start of `stream`, leaving it at the first chunk."""
    body = read_exactly(stream, BODY_HEADER_SIZE)
    if len(body) < len(MAGIC) or body[: len(MAGIC)] != MAGIC:
        raise NotEncryptedError(f"{name} is not an edge-deploy encrypted file (its magic bytes are missing)")
    if len(body) < BODY_HEADER_SIZE:
        raise CorruptedDataError(f"{name}: the header is truncated")
    _, version, chunk_size, prefix = _BODY_HEADER.unpack(body)
    if version != VERSION:
        raise UnsupportedVersionError(f"{name} is in encryption format version {version}; this build reads {VERSION}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise CorruptedDataError(f"{name}: the header is corrupted (chunk size {chunk_size} is out of range)")
    key_id_length = read_exactly(stream, 1)
    if not key_id_length:
        raise CorruptedDataError(f"{name}: the header is truncated")
    raw_key_id = read_exactly(stream, key_id_length[0])
    key_id = raw_key_id.decode("ascii", errors="replace")
    if len(raw_key_id) < key_id_length[0] or not is_valid_key_id(key_id):
        raise CorruptedDataError(f"{name}: the header is corrupted or truncated (no valid key id)")
    rest = read_exactly(stream, WRAP_NONCE_SIZE + WRAPPED_KEY_SIZE)
    if len(rest) < WRAP_NONCE_SIZE + WRAPPED_KEY_SIZE:
        raise CorruptedDataError(f"{name}: the header is truncated")
    return Header(
        version=version,
        chunk_size=chunk_size,
        key_id=key_id,
        nonce_prefix=prefix,
        wrap_nonce=rest[:WRAP_NONCE_SIZE],
        wrapped_key=rest[WRAP_NONCE_SIZE:],
    )


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at end of stream (a pipe or socket may return short reads)."""
    parts, remaining = [], size
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `stream`; less than full only at end of stream."""
    filled, size = 0, len(buffer)
    readinto = getattr(stream, "readinto", None)
    while filled < size:
        if readinto is not None:
            count = readinto(buffer[filled:])
        else:
            part = stream.read(size - filled)
            count = len(part)
            buffer[filled : filled + count] = part
        if not count:
            break
        filled += count
    return filled
