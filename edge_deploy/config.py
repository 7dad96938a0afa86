"""One typed settings object, read from the environment (and optionally a `.env` file) once.

Malformed values fail at load time; missing values fail only when a stage asks for them, with an
error that names the variable. Every secret is held in a `Secret`, whose repr and str never show
the value, and every secret can also come from a file (`NAME_FILE`), the way Kubernetes and Docker
mount secrets.

| variable                     | meaning                                                          |
|------------------------------|------------------------------------------------------------------|
| LAKEFS_ENDPOINT              | lakeFS server, e.g. https://lakefs.example.com (API at /api/v1)  |
| LAKEFS_ACCESS_KEY_ID         | lakeFS access key id                                             |
| LAKEFS_SECRET_ACCESS_KEY     | lakeFS secret key (or LAKEFS_SECRET_ACCESS_KEY_FILE)             |
| LAKEFS_S3_ENDPOINT           | lakeFS S3 gateway; default: LAKEFS_ENDPOINT                      |
| MONGODB_URI                  | deployment records; unset: embedded SQLite store in EDGE_WORK_DIR|
| MONGODB_DATABASE             | database name, default edge_deploy                               |
| REDIS_URL                    | live status and locks; unset: in-process status                  |
| EDGE_REGISTRY                | registry host[:port][/namespace] images are pushed to            |
| EDGE_REGISTRY_USERNAME       | registry user (ACR: service principal id or token name)          |
| EDGE_REGISTRY_PASSWORD       | registry password (or EDGE_REGISTRY_PASSWORD_FILE)               |
| EDGE_REGISTRY_INSECURE       | true: plain HTTP registry (loopback test registries)             |
| EDGE_REGISTRY_CA_BUNDLE      | CA file for a registry with a private certificate                |
| EDGE_ALLOWED_BASE_IMAGES     | repository prefixes a digest-pinned base image override may use  |
|                              | without the `policy` scope (comma-separated; see edge_deploy.policy)|
| EDGE_SIGNING_KEY             | ECDSA P-256 PEM key (or EDGE_SIGNING_KEY_FILE): every pushed image|
|                              | and index is signed (cosign format, OCI 1.1 referrers)            |
| EDGE_SIGNING_KEY_PASSWORD    | the key's password, if it is encrypted (or ..._FILE)             |
| EDGE_SIGNING_KEY_URI         | a Key Vault key that signs instead: https://<vault>/keys/<name>  |
|                              | (with AZURE_TENANT_ID, AZURE_CLIENT_ID, and a federated token    |
|                              | file or AZURE_CLIENT_SECRET; see edge_deploy.signing.keyvault)   |
| EDGE_SIGNING_PUBLIC_KEY      | PEM public key `edge-deploy verify` trusts (or ..._FILE)         |
| EDGE_KEY_DIR                 | directory of key-encryption keys, one file per key id            |
| EDGE_KEY_<ID>                | a key-encryption key in an environment variable (base64)         |
| EDGE_SEAL_KEY_ID             | the key id that seals models for the edge                        |
| EDGE_WORK_DIR                | scratch and embedded-store directory, default ~/.cache/edge-deploy|
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge_deploy.errors import ConfigError


class Secret:
    """A secret value that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # never pickle a secret into a Flyte literal or a cache
        raise TypeError("a Secret cannot be pickled; read it from the environment where it is used")


@dataclass(frozen=True)
class LakeFSSettings:
    endpoint: str
    access_key_id: str
    secret_access_key: Secret
    s3_endpoint: str

    @property
    def api_url(self) -> str:
        return self.endpoint.rstrip("/") + "/api/v1"


@dataclass(frozen=True)
class AzureIdentity:
    """An Entra ID application, for Key Vault: AKS workload identity mounts a federated token file;
    elsewhere a client secret. AZURE_* are the names Microsoft's own tools read."""

    tenant_id: str
    client_id: str
    federated_token_file: Path | None
    client_secret: Secret | None
    authority_host: str = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class RegistrySettings:
    server: str
    username: str | None
    password: Secret | None
    insecure: bool
    ca_bundle: Path | None

    @property
    def host(self) -> str:
        """The registry host[:port], without a namespace path."""
        return self.server.split("/", 1)[0]


@dataclass(frozen=True)
class Settings:
    lakefs_endpoint: str | None = None
    lakefs_access_key_id: str | None = None
    lakefs_secret_access_key: Secret | None = None
    lakefs_s3_endpoint: str | None = None
    mongodb_uri: Secret | None = None  # a URI may carry a password
    mongodb_database: str = "edge_deploy"
    redis_url: Secret | None = None
    registry: str | None = None
    registry_username: str | None = None
    registry_password: Secret | None = None
    registry_insecure: bool = False
    registry_ca_bundle: Path | None = None
    allowed_base_images: tuple[str, ...] = ()
    signing_key: Secret | None = None  # the PEM text
    signing_key_password: Secret | None = None
    signing_public_key: str | None = None  # the PEM text of the key `edge-deploy verify` trusts
    signing_key_uri: str | None = None  # a key in Azure Key Vault that signs instead (it never leaves the vault)
    azure_identity: AzureIdentity | None = None  # read when EDGE_SIGNING_KEY_URI is set
    work_dir: Path = Path.home() / ".cache" / "edge-deploy"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
        """Read and validate every setting. Values in `env` win over those in the `.env` file."""
        merged: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv else {}
        merged.update(os.environ if env is None else env)
        return _Reader(merged).settings()

    @property
    def signs(self) -> bool:
        """A key that signs is set (a PEM key, or a key in Key Vault)."""
        return self.signing_key is not None or self.signing_key_uri is not None

    @property
    def signing_configured(self) -> bool:
        """A signing key, or the public key of one, is set: releases are signed and only signed ones count."""
        return any(value is not None for value in (self.signing_key, self.signing_key_uri, self.signing_public_key))

    def require_lakefs(self) -> LakeFSSettings:
        missing = [
            name
            for name, value in (
                ("LAKEFS_ENDPOINT", self.lakefs_endpoint),
                ("LAKEFS_ACCESS_KEY_ID", self.lakefs_access_key_id),
                ("LAKEFS_SECRET_ACCESS_KEY", self.lakefs_secret_access_key),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"lakeFS is not configured: set {', '.join(missing)}")
        assert self.lakefs_endpoint and self.lakefs_access_key_id and self.lakefs_secret_access_key
        return LakeFSSettings(
            endpoint=self.lakefs_endpoint,
            access_key_id=self.lakefs_access_key_id,
            secret_access_key=self.lakefs_secret_access_key,
            s3_endpoint=self.lakefs_s3_endpoint or self.lakefs_endpoint,
        )

    def require_registry(self) -> RegistrySettings:
        if not self.registry:
            raise ConfigError("no registry is configured: set EDGE_REGISTRY (host[:port][/namespace])")
        if bool(self.registry_username) != bool(self.registry_password):
            raise ConfigError("set both EDGE_REGISTRY_USERNAME and EDGE_REGISTRY_PASSWORD, or neither")
        return RegistrySettings(
            server=self.registry,
            username=self.registry_username,
            password=self.registry_password,
            insecure=self.registry_insecure,
            ca_bundle=self.registry_ca_bundle,
        )


class _Reader:
    """Reads typed values out of a flat mapping, naming the variable in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> Secret | None:
        """A secret from NAME, or from the file named by NAME_FILE (a mounted secret)."""
        direct, file_name = self.env.get(name), self.text(name + "_FILE")
        if direct and file_name:
            raise ConfigError(f"set {name} or {name}_FILE, not both")
        if file_name:
            try:
                return Secret(Path(file_name).read_text().strip())
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None
        return Secret(direct.strip()) if direct and direct.strip() else None

    def public_text(self, name: str) -> str | None:
        """Like `secret` (NAME, or a file named by NAME_FILE), for a value that is not secret."""
        value = self.secret(name)
        return value.reveal() if value else None

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL with a host, got {value!r}")
        return value.rstrip("/")

    def secret_url(self, name: str, schemes: tuple[str, ...]) -> Secret | None:
        value = self.secret(name)
        if value is None:
            return None
        parts = urlsplit(value.reveal())
        if parts.scheme not in schemes or not parts.hostname:
            # the URL may hold a password: name the variable and the scheme, never the value
            raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL with a host (scheme was {parts.scheme!r})")
        return value

    def flag(self, name: str) -> bool:
        value = (self.text(name) or "false").lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    def prefixes(self, name: str) -> tuple[str, ...]:
        """Comma-separated image repository prefixes (host[:port]/path, no scheme, no tag)."""
        values = tuple(part.strip() for part in (self.text(name) or "").split(",") if part.strip())
        for value in values:
            if "://" in value or "@" in value or any(c.isspace() for c in value) or "/" not in value:
                raise ConfigError(f"{name}: {value!r} is not a repository prefix such as myacr.azurecr.io/base/")
        return values

    def azure_identity(self) -> AzureIdentity:
        missing = [name for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID") if not self.text(name)]
        token_file = self.path("AZURE_FEDERATED_TOKEN_FILE", must_exist=True)
        secret = self.secret("AZURE_CLIENT_SECRET")
        if token_file is None and secret is None:
            missing.append("AZURE_FEDERATED_TOKEN_FILE (workload identity) or AZURE_CLIENT_SECRET")
        if missing:
            raise ConfigError(f"EDGE_SIGNING_KEY_URI needs an Entra ID application: set {', '.join(missing)}")
        authority = self.url("AZURE_AUTHORITY_HOST", ("https",)) or AzureIdentity.authority_host
        return AzureIdentity(
            self.text("AZURE_TENANT_ID") or "", self.text("AZURE_CLIENT_ID") or "", token_file, secret, authority
        )

    def path(self, name: str, must_exist: bool = False) -> Path | None:
        value = self.text(name)
        if value is None:
            return None
        path = Path(value).expanduser()
        if must_exist and not path.exists():
            raise ConfigError(f"{name}: {path} does not exist")
        return path

    def settings(self) -> Settings:
        registry = self.text("EDGE_REGISTRY")
        if registry and "://" in registry:
            raise ConfigError(f"EDGE_REGISTRY is a host[:port][/namespace], not a URL: {registry!r}")
        signing_key_uri = self.url("EDGE_SIGNING_KEY_URI", ("https",))
        if signing_key_uri and (self.text("EDGE_SIGNING_KEY") or self.text("EDGE_SIGNING_KEY_FILE")):
            raise ConfigError("set EDGE_SIGNING_KEY_URI (a key in Key Vault) or EDGE_SIGNING_KEY(_FILE), not both")
        return Settings(
            lakefs_endpoint=self.url("LAKEFS_ENDPOINT", ("http", "https")),
            lakefs_access_key_id=self.text("LAKEFS_ACCESS_KEY_ID"),
            lakefs_secret_access_key=self.secret("LAKEFS_SECRET_ACCESS_KEY"),
            lakefs_s3_endpoint=self.url("LAKEFS_S3_ENDPOINT", ("http", "https")),
            mongodb_uri=self.secret_url("MONGODB_URI", ("mongodb", "mongodb+srv")),
            mongodb_database=self.text("MONGODB_DATABASE") or "edge_deploy",
            redis_url=self.secret_url("REDIS_URL", ("redis", "rediss", "unix")),
            registry=registry,
            registry_username=self.text("EDGE_REGISTRY_USERNAME"),
            registry_password=self.secret("EDGE_REGISTRY_PASSWORD"),
            registry_insecure=self.flag("EDGE_REGISTRY_INSECURE"),
            registry_ca_bundle=self.path("EDGE_REGISTRY_CA_BUNDLE", must_exist=True),
            allowed_base_images=self.prefixes("EDGE_ALLOWED_BASE_IMAGES"),
            signing_key=self.secret("EDGE_SIGNING_KEY"),
            signing_key_password=self.secret("EDGE_SIGNING_KEY_PASSWORD"),
            signing_public_key=self.public_text("EDGE_SIGNING_PUBLIC_KEY"),
            signing_key_uri=signing_key_uri,
            azure_identity=self.azure_identity() if signing_key_uri else None,
            work_dir=self.path("EDGE_WORK_DIR") or Path.home() / ".cache" / "edge-deploy",
        )


def read_dotenv(path: Path) -> dict[str, str]:
    """A minimal `.env` reader: KEY=VALUE lines, `#` comments, optional quotes, `export ` prefix."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
