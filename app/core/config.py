"""The service's own settings, read from the environment beside `edge_deploy.config.Settings`.

Every variable, its meaning and default (docs/user-guide.md's configuration table has the same rows):

    EDGE_API_HOST, EDGE_API_PORT    where `edge-deploy serve` listens (127.0.0.1, 8000)
    EDGE_API_TOKENS_FILE            static API tokens (YAML: name, sha256, scopes), e.g. a mounted Secret
    EDGE_API_TOKENS                 the same document in a variable (a Secret given as env)
    EDGE_API_OIDC_ISSUER            accepted JWT issuer (`iss`), e.g. https://login.microsoftonline.com/<tenant>/v2.0
    EDGE_API_OIDC_AUDIENCE          accepted audiences (`aud`), comma-separated (required with the issuer)
    EDGE_API_OIDC_JWKS_URL          the issuer's signing keys (required with the issuer)
    EDGE_API_OIDC_READ_ROLES        `roles`/`scp` values that grant `read` (read,Deployments.Read)
    EDGE_API_OIDC_DEPLOY_ROLES      `roles`/`scp` values that grant `deploy` (deploy,Deployments.Deploy)
    EDGE_API_OIDC_POLICY_ROLES      `roles`/`scp` values that grant `policy` (policy,Deployments.Policy)
    EDGE_API_MAX_ACTIVE_RUNS        queued + running runs one caller may have at once; more is a 429 (10)
    EDGE_API_MAX_BODY_BYTES         larger request bodies are refused with 413 (65536)
    EDGE_API_LOCAL_MODEL_ROOT       directory under which requests may name a `local_dir` model (none: refused)
    EDGE_API_PUBLIC_METRICS         true: /metrics without a token, for a cluster-internal scraper (false)
    EDGE_EXECUTOR                   `local` (the workflow in the job's process) or `flyte` (a Flyte cluster)
    EDGE_FLYTE_CONFIG               flytekit config file of the cluster (else flytekit's FLYTE_* variables)
    EDGE_FLYTE_PROJECT, _DOMAIN     where the launch plan is registered (edge-deploy, development)
    EDGE_FLYTE_LAUNCH_PLAN          the launch plan to execute (deploy_model_on_demand)
    EDGE_FLYTE_LAUNCH_PLAN_VERSION  its version (the latest)
    EDGE_FLYTE_POLL_SECONDS         how often a running execution is looked at (10)
    EDGE_JOB_LEASE_SECONDS          a job whose worker stopped renewing it for this long is taken over (60)
    EDGE_JOB_MAX_ATTEMPTS           a job taken up more often than this is failed (3)
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_deploy.config import Secret, Settings, _Reader, read_dotenv
from edge_deploy.errors import ConfigError
from edge_deploy.jobs.executor import EXECUTOR_NAMES

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_ACTIVE_RUNS = 10


@dataclass(frozen=True)
class OIDCSettings:
    issuer: str
    audiences: tuple[str, ...]
    jwks_url: str
    read_roles: tuple[str, ...]
    deploy_roles: tuple[str, ...]
    policy_roles: tuple[str, ...] = ("policy", "Deployments.Policy")


@dataclass(frozen=True)
class FlyteSettings:
    config_file: Path | None = None
    project: str = "edge-deploy"
    domain: str = "development"
    launch_plan: str = "deploy_model_on_demand"
    launch_plan_version: str | None = None
    poll_seconds: float = 10.0


@dataclass(frozen=True)
class ServiceSettings:
    base: Settings
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens_file: Path | None = None
    tokens_document: Secret | None = None
    oidc: OIDCSettings | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    local_model_root: Path | None = None
    public_metrics: bool = False
    executor: str = "local"
    flyte: FlyteSettings = FlyteSettings()
    lease_seconds: float = 60.0
    max_attempts: int = 3
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> ServiceSettings:
        merged: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv else {}
        merged.update(os.environ if env is None else env)
        return _ServiceReader(merged).service_settings()

    @property
    def embedded(self) -> bool:
        """No Redis and no MongoDB: an in-process queue and worker on the SQLite store."""
        return self.base.redis_url is None and self.base.mongodb_uri is None

    @property
    def auth_configured(self) -> bool:
        return self.tokens_file is not None or self.tokens_document is not None or self.oidc is not None

    def check_bind(self, host: str) -> None:
        """Without any authentication configured, only loopback may be served."""
        if not self.auth_configured and not is_loopback(host):
            raise ConfigError(
                f"refusing to listen on {host}: no authentication is configured, so only a loopback address "
                "(127.0.0.1, ::1, localhost) may be served; set EDGE_API_TOKENS_FILE or EDGE_API_OIDC_ISSUER "
                "(with EDGE_API_OIDC_AUDIENCE and EDGE_API_OIDC_JWKS_URL)"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere, or 0.0.0.0's friends


class _ServiceReader(_Reader):
    def integer(self, name: str, default: int, minimum: int) -> int:
        return int(self._number(name, default, int, minimum, "a whole number"))

    def seconds(self, name: str, default: float) -> float:
        return self._number(name, default, float, 0.001, "a number of seconds")

    def _number(self, name: str, default: float, parse: type, minimum: float, what: str) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = parse(value)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {value!r}") from None
        if not number >= minimum:  # also refuses NaN
            raise ConfigError(f"{name} must be at least {minimum:g}, got {value!r}")
        return number

    def names(self, name: str, default: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in (self.text(name) or default).split(",") if item.strip())

    def tokens_document(self) -> Secret | None:
        # Not `secret()`: EDGE_API_TOKENS_FILE is re-read when it changes (a rotated Secret), so it is a path.
        value = self.env.get("EDGE_API_TOKENS", "").strip()
        if value and self.text("EDGE_API_TOKENS_FILE"):
            raise ConfigError("set EDGE_API_TOKENS or EDGE_API_TOKENS_FILE, not both")
        return Secret(value) if value else None

    def oidc(self) -> OIDCSettings | None:
        issuer = self.url("EDGE_API_OIDC_ISSUER", ("https", "http"))
        audiences = self.names("EDGE_API_OIDC_AUDIENCE", "")
        jwks_url = self.url("EDGE_API_OIDC_JWKS_URL", ("https", "http"))
        if issuer is None:
            if audiences or jwks_url:
                raise ConfigError("EDGE_API_OIDC_AUDIENCE and EDGE_API_OIDC_JWKS_URL need EDGE_API_OIDC_ISSUER")
            return None
        if not audiences or jwks_url is None:
            raise ConfigError(
                "with EDGE_API_OIDC_ISSUER set, also set EDGE_API_OIDC_AUDIENCE and EDGE_API_OIDC_JWKS_URL"
            )
        return OIDCSettings(
            issuer=self.text("EDGE_API_OIDC_ISSUER") or issuer,  # exactly as given: `iss` is compared as text
            audiences=audiences,
            jwks_url=jwks_url,
            read_roles=self.names("EDGE_API_OIDC_READ_ROLES", "read,Deployments.Read"),
            deploy_roles=self.names("EDGE_API_OIDC_DEPLOY_ROLES", "deploy,Deployments.Deploy"),
            policy_roles=self.names("EDGE_API_OIDC_POLICY_ROLES", "policy,Deployments.Policy"),
        )

    def flyte(self) -> FlyteSettings:
        return FlyteSettings(
            config_file=self.path("EDGE_FLYTE_CONFIG", must_exist=True),
            project=self.text("EDGE_FLYTE_PROJECT") or "edge-deploy",
            domain=self.text("EDGE_FLYTE_DOMAIN") or "development",
            launch_plan=self.text("EDGE_FLYTE_LAUNCH_PLAN") or "deploy_model_on_demand",
            launch_plan_version=self.text("EDGE_FLYTE_LAUNCH_PLAN_VERSION"),
            poll_seconds=self.seconds("EDGE_FLYTE_POLL_SECONDS", 10.0),
        )

    def service_settings(self) -> ServiceSettings:
        executor = self.text("EDGE_EXECUTOR") or "local"
        if executor not in EXECUTOR_NAMES:
            raise ConfigError(f"EDGE_EXECUTOR must be one of {', '.join(EXECUTOR_NAMES)}, got {executor!r}")
        root = self.path("EDGE_API_LOCAL_MODEL_ROOT", must_exist=True)
        return ServiceSettings(
            base=self.settings(),
            host=self.text("EDGE_API_HOST") or DEFAULT_HOST,
            port=self.integer("EDGE_API_PORT", DEFAULT_PORT, 0),
            tokens_file=self.path("EDGE_API_TOKENS_FILE", must_exist=True),
            tokens_document=self.tokens_document(),
            oidc=self.oidc(),
            max_body_bytes=self.integer("EDGE_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024),
            local_model_root=root.resolve() if root else None,
            public_metrics=self.flag("EDGE_API_PUBLIC_METRICS"),
            executor=executor,
            flyte=self.flyte(),
            lease_seconds=self.seconds("EDGE_JOB_LEASE_SECONDS", 60.0),
            max_attempts=self.integer("EDGE_JOB_MAX_ATTEMPTS", 3, 1),
            max_active_runs=self.integer("EDGE_API_MAX_ACTIVE_RUNS", DEFAULT_MAX_ACTIVE_RUNS, 1),
        )
