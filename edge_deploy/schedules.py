"""Nightly redeploys as data: which models a cluster redeploys on a schedule, and who hears of failures.

The file (workflows/schedules.yaml, or the one EDGE_SCHEDULES_FILE names) lists one entry per model; the
Flyte launch plans in workflows/launch_plans.py are made from it when `pyflyte register` loads them. Every
problem is reported at once, naming the file, the entry and the field, so a typo fails at registration
and not at 2 am. Targets are checked against the platform matrix here for the same reason.

    schema_version: 1
    defaults: {cron: "0 2 * * *", prefix: model/}
    nightly:
      - name: detector           # launch plan deploy_model_nightly_detector
        repo: models             # lakeFS repository
        branch: main             # its head is redeployed
        targets: [x86_64-cpu, arm64-cpu]
        repository: edge/detector  # image repository under EDGE_REGISTRY
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_deploy.errors import ConfigError

SCHEMA_VERSION = 1
DEFAULT_CRON = "0 2 * * *"  # 02:00 UTC: the Flyte scheduler reads cron expressions in UTC
DEFAULT_RECIPIENTS = ("edge-deploy-alerts@example.com",)  # a reserved domain: no mail leaves until configured
# It names the launch plan and is a Kubernetes label value on its executions.
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
EMAIL_PATTERN = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
ENTRY_FIELDS = {"name", "repo", "branch", "prefix", "targets", "repository", "publish_branch", "cron"}
DEFAULT_FIELDS = {"cron", "prefix", "branch"}


@dataclass(frozen=True)
class NightlyDeploy:
    """One model redeployed on a schedule: the workflow's fixed inputs and the cron expression."""

    name: str
    repo: str
    branch: str
    prefix: str
    targets: tuple[str, ...]
    repository: str
    publish_branch: str
    cron: str


def load_schedules(path: Path, known_targets: Iterable[str] | None = None) -> list[NightlyDeploy]:
    """Read and check the schedules file; `known_targets` are the device classes targets must be among."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"schedules file {path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"schedules file {path}: not valid YAML: {exc}") from None
    return parse_schedules(document, str(path), known_targets)


def parse_schedules(document: Any, source: str, known_targets: Iterable[str] | None = None) -> list[NightlyDeploy]:
    problems: list[str] = []
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: expected a mapping with schema_version and nightly")
    unknown = set(document) - {"schema_version", "defaults", "nightly"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    if document.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version must be {SCHEMA_VERSION}, got {document.get('schema_version')!r}")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping) or set(defaults) - DEFAULT_FIELDS:
        problems.append(f"defaults: a mapping of {sorted(DEFAULT_FIELDS)} only")
        defaults = {}
    entries = document.get("nightly")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        problems.append("nightly: expected a list of models")
        entries = []
    known = set(known_targets) if known_targets is not None else None
    deploys = [_entry(index, entry, defaults, known, problems) for index, entry in enumerate(entries)]
    names = [e["name"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("name"), str)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"names must be unique (one launch plan each): {duplicates} appear more than once")
    if problems:
        listing = "\n  - ".join(problems)
        raise ConfigError(f"{source}: {len(problems)} problem(s):\n  - {listing}")
    return [deploy for deploy in deploys if deploy is not None]


def _entry(
    index: int, entry: Any, defaults: Mapping[str, Any], known: set[str] | None, problems: list[str]
) -> NightlyDeploy | None:
    if not isinstance(entry, Mapping):
        problems.append(f"nightly[{index}]: expected a mapping")
        return None
    label = f"nightly[{index}] ({entry.get('name', 'unnamed')})"
    before = len(problems)
    for key in sorted(set(entry) - ENTRY_FIELDS):
        problems.append(f"{label}: unknown field {key!r} (known: {', '.join(sorted(ENTRY_FIELDS))})")

    def text(field: str, required: bool = False, default: str = "") -> str:
        value = entry.get(field, defaults.get(field, default))
        if not isinstance(value, str) or (required and not value.strip()):
            problems.append(f"{label}: {field} must be a {'non-empty ' if required else ''}string, got {value!r}")
            return ""
        return value.strip()

    name = text("name", required=True)
    if name and not NAME_PATTERN.match(name):
        problems.append(f"{label}: name must be lower-case letters, digits, - and _ (at most 63), got {name!r}")
    targets = entry.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t.strip() for t in targets):
        problems.append(f"{label}: targets must be a non-empty list of device classes, got {targets!r}")
        targets = []
    elif known is not None and set(targets) - known:
        unknown = sorted(set(targets) - known)
        problems.append(f"{label}: unknown targets {unknown} (the platform matrix has {', '.join(sorted(known))})")
    deploy = NightlyDeploy(
        name=name,
        repo=text("repo", required=True),
        branch=text("branch", required=True, default="main"),
        prefix=text("prefix", required=True, default="model/"),
        targets=tuple(t.strip() for t in targets),
        repository=text("repository", required=True),
        publish_branch=text("publish_branch"),
        cron=text("cron", required=True, default=DEFAULT_CRON),
    )
    return deploy if len(problems) == before else None


def notification_recipients(value: str | None, variable: str, default: tuple[str, ...] = ()) -> list[str]:
    """Comma-separated addresses from `variable` (EDGE_NOTIFY_EMAILS, EDGE_NOTIFY_SLACK); unset: `default`."""
    if value is None or not value.strip():
        return list(default)
    addresses = [item.strip() for item in value.split(",") if item.strip()]
    bad = [address for address in addresses if not EMAIL_PATTERN.match(address)]
    if bad:
        raise ConfigError(f"{variable}: not e-mail addresses: {', '.join(bad)} (give a comma-separated list)")
    return addresses
