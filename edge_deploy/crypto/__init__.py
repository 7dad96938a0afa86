"""Model encryption: a chunked, authenticated file format (AES-256-GCM, STREAM nonces) with
envelope keys and key rotation. docs/encryption-format.md is the specification.

This package ships inside edge images, so it imports nothing but the standard library,
`cryptography` and edge_deploy's own stdlib-only modules (errors, files). Its names are loaded
on first use (PEP 562): the edge runtime, which starts on a device's clock, imports only the
modules that open a sealed file, not the directory and rewrap code.

    keyring = Keyring.from_env()                       # EDGE_KEY_<ID>, EDGE_KEY_<ID>_FILE, EDGE_KEY_DIR
    encrypt_file("model.onnx", "model.onnx.enc", keyring, "edge-2026", checksums=True)
    model = decrypt_file_to_memory("model.onnx.enc", keyring)   # one buffer, never touches the disk
    rewrap_file("model.onnx.enc", keyring, "edge-2027")        # new KEK, same body
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the submodule that defines it
_SUBMODULE = {
    "DirectoryFile": "directory",
    "decrypt_directory": "directory",
    "output_name": "directory",
    "CorruptedDataError": "errors",
    "CryptoError": "errors",
    "NotEncryptedError": "errors",
    "UnknownKeyIdError": "errors",
    "UnsupportedVersionError": "errors",
    "WrongKeyError": "errors",
    "FileInfo": "files",
    "RewrapResult": "files",
    "SealedFile": "files",
    "decrypt_file": "files",
    "decrypt_file_to_bytes": "files",
    "decrypt_file_to_memory": "files",
    "encrypt_file": "files",
    "inspect_file": "files",
    "is_encrypted": "files",
    "read_header": "files",
    "rewrap_file": "files",
    "DEFAULT_CHUNK_SIZE": "format",
    "ENCRYPTED_SUFFIX": "format",
    "Header": "format",
    "KEY_ID_RULE": "format",
    "MAGIC": "format",
    "MAX_CHUNK_SIZE": "format",
    "MIN_CHUNK_SIZE": "format",
    "VERSION": "format",
    "is_valid_key_id": "format",
    "Keyring": "keyring",
    "decode_key": "keyring",
    "encode_key": "keyring",
    "generate_key": "keyring",
    "key_dir_from_env": "keyring",
    "key_env_var": "keyring",
    "seal_key_id_from_env": "keyring",
    "write_key_file": "keyring",
    "StreamResult": "stream",
    "decrypt_stream": "stream",
    "decrypt_to_bytes": "stream",
    "encrypt_stream": "stream",
}

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ENCRYPTED_SUFFIX",
    "KEY_ID_RULE",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "VERSION",
    "CorruptedDataError",
    "CryptoError",
    "DirectoryFile",
    "FileInfo",
    "Header",
    "Keyring",
    "NotEncryptedError",
    "RewrapResult",
    "SealedFile",
    "StreamResult",
    "UnknownKeyIdError",
    "UnsupportedVersionError",
    "WrongKeyError",
    "decode_key",
    "decrypt_directory",
    "decrypt_file",
    "decrypt_file_to_bytes",
    "decrypt_file_to_memory",
    "decrypt_stream",
    "decrypt_to_bytes",
    "encode_key",
    "encrypt_file",
    "encrypt_stream",
    "generate_key",
    "inspect_file",
    "is_encrypted",
    "is_valid_key_id",
    "key_dir_from_env",
    "key_env_var",
    "output_name",
    "read_header",
    "rewrap_file",
    "seal_key_id_from_env",
    "write_key_file",
]


def __getattr__(name: str) -> object:
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from edge_deploy.crypto.directory import DirectoryFile, decrypt_directory, output_name
    from edge_deploy.crypto.errors import (
        CorruptedDataError,
        CryptoError,
        NotEncryptedError,
        UnknownKeyIdError,
        UnsupportedVersionError,
        WrongKeyError,
    )
    from edge_deploy.crypto.files import (
        FileInfo,
        RewrapResult,
        SealedFile,
        decrypt_file,
        decrypt_file_to_bytes,
        decrypt_file_to_memory,
        encrypt_file,
        inspect_file,
        is_encrypted,
        read_header,
        rewrap_file,
    )
    from edge_deploy.crypto.format import (
        DEFAULT_CHUNK_SIZE,
        ENCRYPTED_SUFFIX,
        KEY_ID_RULE,
        MAGIC,
        MAX_CHUNK_SIZE,
        MIN_CHUNK_SIZE,
        VERSION,
        Header,
        is_valid_key_id,
    )
    from edge_deploy.crypto.keyring import (
        Keyring,
        decode_key,
        encode_key,
        generate_key,
        key_dir_from_env,
        key_env_var,
        seal_key_id_from_env,
        write_key_file,
    )
    from edge_deploy.crypto.stream import StreamResult, decrypt_stream, decrypt_to_bytes, encrypt_stream
