"""The errors of the encryption format. Each names the file, and where it applies the key id or
the chunk index; none ever holds key material (keys are never formatted into a message)."""

from __future__ import annotations

from edge_deploy.errors import EdgeDeployError


class CryptoError(EdgeDeployError):
    """Base class: an encrypted file cannot be written, read or opened."""


class NotEncryptedError(CryptoError):
    """The file does not start with the format's magic bytes."""


class UnsupportedVersionError(CryptoError):
    """The file is in this format, but in a version this code does not read."""


class UnknownKeyIdError(CryptoError):
    """The key id the file (or the caller) names is not loaded in the keyring."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class WrongKeyError(CryptoError):
    """The key loaded under the file's key id does not open its data key (or the key block was edited)."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class CorruptedDataError(CryptoError):
    """The header or a chunk failed its checks: corrupted, truncated, reordered or tampered with.

    `chunk` is the 0-based index of the chunk that failed, or None when the header is at fault.
    """

    def __init__(self, message: str, chunk: int | None = None) -> None:
        super().__init__(message)
        self.chunk = chunk
