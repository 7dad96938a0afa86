"""Key-encryption keys (KEKs), loaded from the environment and/or a mounted directory.

A KEK is 32 random bytes, written as base64 text (`edge-deploy keygen` makes one). Sources:
- `EDGE_KEY_<ID>`: the key in a variable; the id is the suffix lower-cased with `_` read as `-`
  (EDGE_KEY_EDGE_2026 -> edge-2026, see `key_env_vars`).
- `EDGE_KEY_<ID>_FILE`: the path of a file holding that key.
- `EDGE_KEY_DIR`: a directory with one file per key, the file name being the key id (a Kubernetes
  secret mounted as a volume). Names starting with `.` are skipped: Kubernetes keeps its
  `..data` bookkeeping there.
Key ids follow `format.KEY_ID_RULE`, so every id maps to exactly one variable name and one file
name. All sources load together, so old files stay readable while a new key is rolled out; the
same id given twice must carry the same key.

The keyring holds only AESGCM objects, never the key bytes, and its repr shows ids only.

Loading keys reads these variables (and EDGE_SEAL_KEY_ID, for sealing) and nothing else, not the
whole `Settings`: a malformed setting the keys do not need (a database URI, say) must not stop a
device or a build from opening its models.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_deploy.crypto.errors import UnknownKeyIdError
from edge_deploy.crypto.format import KEY_ID_RULE, KEY_SIZE, is_valid_key_id
from edge_deploy.errors import ConfigError

log = logging.getLogger(__name__)

_FILE_SUFFIX = "_FILE"
KEY_DIR_VARIABLE = "EDGE_KEY_DIR"
KEY_ENV_PREFIX = "EDGE_KEY_"
_KEY_ENV_NOT_KEYS = {KEY_DIR_VARIABLE}
SEAL_KEY_ID_VARIABLE = "EDGE_SEAL_KEY_ID"


def generate_key() -> bytes:
    """A new random 256-bit key."""
    return os.urandom(KEY_SIZE)


def encode_key(key: bytes) -> str:
    """The text form of a key, as it goes into a variable or a key file."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: bytes | str, source: str) -> bytes:
    """A key from its base64 text (standard or URL-safe alphabet). Errors name the source only."""
    raw = (text.encode("ascii", errors="replace") if isinstance(text, str) else text).strip()
    try:
        key = base64.b64decode(raw.translate(bytes.maketrans(b"-_", b"+/")), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{source}: not a base64 key; a key is {KEY_SIZE} random bytes in base64 "
            "(make one with `edge-deploy keygen`)"
        ) from None
    if len(key) != KEY_SIZE:
        raise ConfigError(f"{source}: a key must be {KEY_SIZE} bytes, this one decodes to {len(key)} bytes")
    return key


def write_key_file(path: Path, key: bytes, *, overwrite: bool = False) -> None:
    """Write `key` as base64 text to `path` with mode 0600, complete or not at all.

    Without `overwrite` an existing file is never replaced (a lost key means lost models).
    """
    if not overwrite and path.exists():
        raise ConfigError(f"{path} already exists; a key file is never overwritten without --force")
    import tempfile  # imported where used: the edge runtime only reads, and starts faster without it

    try:
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "w") as out:  # mkstemp made it 0600
            out.write(encode_key(key) + "\n")
            out.flush()
            os.fsync(out.fileno())
        if overwrite:
            os.replace(temp_name, path)
        else:
            os.link(temp_name, path)  # fails, rather than replaces, if the file appeared meanwhile
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)


def key_dir_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """The directory EDGE_KEY_DIR names, or None when it is unset; one that is missing is an error."""
    value = (os.environ if env is None else env).get(KEY_DIR_VARIABLE, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{KEY_DIR_VARIABLE}: {path} does not exist")
    return path


def seal_key_id_from_env(env: Mapping[str, str] | None = None) -> str:
    """The key id EDGE_SEAL_KEY_ID names: the KEK that seals models for the edge."""
    key_id = (os.environ if env is None else env).get(SEAL_KEY_ID_VARIABLE, "").strip()
    if not key_id:
        raise ConfigError(f"no edge sealing key is chosen: set {SEAL_KEY_ID_VARIABLE} to a loaded key id")
    return key_id


def key_env_vars(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Key-encryption keys given as EDGE_KEY_<ID> variables: {key id: variable name}.

    The id is the suffix lower-cased with `_` read as `-` (EDGE_KEY_EDGE_2026 -> edge-2026), so
    the ids that files in EDGE_KEY_DIR carry can be given as variables too. Only the names are
    returned; the crypto module reads the values where it uses them.
    """
    env = os.environ if env is None else env
    return {
        name[len(KEY_ENV_PREFIX) :].lower().replace("_", "-"): name
        for name in env
        if name.startswith(KEY_ENV_PREFIX) and name not in _KEY_ENV_NOT_KEYS and not name.endswith("_FILE")
    }


def key_env_var(key_id: str) -> str:
    """The variable that carries the key with this id."""
    return KEY_ENV_PREFIX + key_id.upper().replace("-", "_")


class Keyring:
    """The KEKs a process can use, by key id. Never shows, logs or pickles a key."""

    __slots__ = ("_ciphers",)

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in (keys or {}).items():
            self.add(key_id, key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Keyring:
        """Every key from EDGE_KEY_<ID>, EDGE_KEY_<ID>_FILE and EDGE_KEY_DIR; no other variable is read."""
        env = os.environ if env is None else env
        return cls.load(key_dir_from_env(env), env)

    @classmethod
    def load(cls, key_dir: Path | None, env: Mapping[str, str] | None = None) -> Keyring:
        keyring = cls()
        sources: dict[str, tuple[bytes, str]] = {}
        for key_id, key, source in [*_keys_from_env(os.environ if env is None else env), *_keys_from_dir(key_dir)]:
            if key_id in sources:
                if sources[key_id][0] != key:
                    raise ConfigError(
                        f"key id {key_id!r} is given twice with different keys: {sources[key_id][1]} and {source}"
                    )
                continue
            sources[key_id] = (key, source)
            keyring.add(key_id, key)
        log.debug("loaded key ids %s", ", ".join(keyring.ids) or "(none)")
        return keyring

    def add(self, key_id: str, key: bytes) -> None:
        if not is_valid_key_id(key_id):
            raise ConfigError(f"{key_id!r} is not a valid key id ({KEY_ID_RULE})")
        if len(key) != KEY_SIZE:
            raise ConfigError(f"the key for {key_id!r} must be {KEY_SIZE} bytes, got {len(key)} bytes")
        self._ciphers[key_id] = AESGCM(key)

    def remove(self, key_id: str) -> None:
        self._ciphers.pop(key_id, None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._ciphers))

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._ciphers

    def __len__(self) -> int:
        return len(self._ciphers)

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self.ids)!r})"

    __str__ = __repr__

    def __reduce__(self):  # keys must not travel in a pickle (a Flyte literal, a cache entry)
        raise TypeError("a Keyring cannot be pickled; load it from the environment where it is used")

    def cipher(self, key_id: str, name: str) -> AESGCM:
        """The KEK for `key_id`, or an error naming the id and where to put its key."""
        try:
            return self._ciphers[key_id]
        except KeyError:
            loaded = ", ".join(self.ids) or "none"
            raise UnknownKeyIdError(
                f"{name}: unknown key id {key_id!r} (loaded key ids: {loaded}); "
                f"set {key_env_var(key_id)} or put a file named {key_id} in EDGE_KEY_DIR",
                key_id,
            ) from None


def exported_key(key_id: str, env: Mapping[str, str] | None = None) -> str:
    """The base64 text of one KEK, from the sources `Keyring.from_env` reads, for a process that
    takes its key from a file (the acceptance stage mounts it into the image it runs, as a device
    would). The caller keeps it out of logs and removes the file it writes."""
    env = os.environ if env is None else env
    for found_id, key, _ in [*_keys_from_env(env), *_keys_from_dir(key_dir_from_env(env))]:
        if found_id == key_id:
            return encode_key(key)
    raise UnknownKeyIdError(f"no key with id {key_id!r}: set {key_env_var(key_id)} or put it in EDGE_KEY_DIR", key_id)


def _keys_from_env(env: Mapping[str, str]) -> Iterable[tuple[str, bytes, str]]:
    for key_id, variable in sorted(key_env_vars(env).items()):
        _check_id(key_id, variable)
        if not env[variable].strip():
            raise ConfigError(f"{variable} is set but empty")
        yield key_id, decode_key(env[variable], variable), variable
    for variable in sorted(env):
        if not variable.startswith(KEY_ENV_PREFIX) or not variable.endswith(_FILE_SUFFIX):
            continue
        # the same id rule as for the key itself (EDGE_KEY_DIR_FILE maps to nothing and is skipped)
        for key_id in key_env_vars({variable.removesuffix(_FILE_SUFFIX): ""}):
            _check_id(key_id, variable)
            yield key_id, decode_key(_read_key_file(Path(env[variable].strip()), variable), variable), variable


def _keys_from_dir(key_dir: Path | None) -> Iterable[tuple[str, bytes, str]]:
    if key_dir is None:
        return
    try:
        entries = sorted(key_dir.iterdir())
    except OSError as exc:
        raise ConfigError(f"EDGE_KEY_DIR: cannot list {key_dir}: {exc.strerror}") from None
    for path in entries:
        if path.name.startswith("."):
            continue
        source = f"EDGE_KEY_DIR file {path.name}"
        if not path.is_file():
            raise ConfigError(f"{source}: not a regular file; EDGE_KEY_DIR holds one key file per key id")
        if not is_valid_key_id(path.name):
            raise ConfigError(f"{source}: the file name is the key id and must be {KEY_ID_RULE}")
        yield path.name, decode_key(_read_key_file(path, source), source), source


def _check_id(key_id: str, variable: str) -> None:
    if not is_valid_key_id(key_id):
        raise ConfigError(f"{variable}: {key_id!r} is not a valid key id ({KEY_ID_RULE})")


def _read_key_file(path: Path, source: str) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        # the usual cause in a container: a 0600 root-owned file and a runtime that is not root
        uid, gid = os.getuid(), os.getgid()
        raise ConfigError(
            f"{source}: cannot read {path}: permission denied to uid {uid}; make the file readable to that user "
            f"(chmod 0444, or chown {uid}; in Kubernetes, a secret volume's defaultMode 0440 with fsGroup {gid})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path}: {exc.strerror}") from None
