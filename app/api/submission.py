"""From a POST /deployments body to a queued job: check every field, resolve the model version, queue.

Each problem is answered with the field to fix: an unknown target names `body.targets[i]` and the
supported device classes, a malformed lakeFS URI names `body.uri`, a repository or ref lakeFS does
not have names `body.repo` or `body.ref`. The ref is resolved to its commit now, and the job runs
that commit (a branch that moves meanwhile does not change what this request deploys); the
artifacts go to `publish_branch`, or to the requested branch when none is given.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from app.api.errors import ApiError, invalid
from app.api.schemas import REF_PATTERN, REPO_PATTERN, DeploymentCreate
from app.core.auth import POLICY, Principal
from app.core.service import Service
from edge_deploy.errors import ConfigError, NotFoundError, StorageError, TransientError
from edge_deploy.jobs.model import DeploymentRequest, Job, deployment_fingerprint, deployment_key, new_run_id
from edge_deploy.jobs.queue import Submission
from edge_deploy.platforms import KNOWN_BACKENDS, detect_targets
from edge_deploy.policy import loosened
from edge_deploy.storage import LakeFSLocation, describe_local_directory
from edge_deploy.validation.errors import ValidationError
from edge_deploy.validation.report import ValidationSettings

BACKEND = KNOWN_BACKENDS[0]  # the deploy backend every device class builds today (onnxruntime)


def deployment_request(body: DeploymentCreate, service: Service, principal: Principal) -> DeploymentRequest:
    targets, options = _device_classes(body.targets, service), _options(body, service)
    _check_policy(options, principal, service)
    repo, ref, prefix = body.repo or "", body.ref, body.prefix
    if body.uri is not None:
        repo, ref, prefix = _parse_uri(body.uri)
    local_dir = _local_dir(body.local_dir, service) if body.local_dir is not None else ""
    if local_dir and service.settings.executor == "flyte":
        raise invalid("body.local_dir", "this service runs deployments on a Flyte cluster: give a model in lakeFS")
    if repo and service.lakefs is None:
        field = "body.uri" if body.uri is not None else "body.repo"
        raise invalid(field, "this service has no lakeFS configured (LAKEFS_ENDPOINT and its keys are unset)")
    return DeploymentRequest(
        repo=repo,
        ref=ref if repo else "",
        prefix=prefix if repo else "",
        local_dir=local_dir,
        targets=targets,
        repository=body.repository,
        publish_branch=body.publish_branch,
        options=options,
    )


def _parse_uri(uri: str) -> tuple[str, str, str]:
    expected = "expected lakefs://<repository>/<ref>/<prefix>"
    try:
        location = LakeFSLocation.parse(uri)
    except StorageError:
        raise invalid("body.uri", f"not a lakeFS URI: {expected}, got {uri!r}") from None
    if not re.match(REPO_PATTERN, location.repo):
        raise invalid(
            "body.uri", f"{location.repo!r} is not a lakeFS repository name (3-63 of a-z, 0-9, '-'); {expected}"
        )
    if not re.match(REF_PATTERN, location.ref):
        raise invalid("body.uri", f"{location.ref!r} is not a branch, tag or commit; {expected}")
    return location.repo, location.ref, location.prefix


def _local_dir(relative: str, service: Service) -> str:
    root = service.settings.local_model_root
    if root is None:
        raise invalid(
            "body.local_dir", "local model directories are not enabled here (EDGE_API_LOCAL_MODEL_ROOT is unset)"
        )
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise invalid("body.local_dir", f"{relative!r} is outside the local model root")
    if not path.is_dir():
        raise invalid("body.local_dir", f"{relative!r} is not a directory under the local model root")
    return str(path)


def _device_classes(targets: list[str] | None, service: Service) -> tuple[str, ...]:
    classes: list[str] = []
    for index, target in enumerate(targets or []):
        try:
            (build,) = detect_targets([target], BACKEND, service.matrix)
        except ConfigError as exc:
            raise invalid(f"body.targets[{index}]", str(exc)) from None
        if build.name not in classes:
            classes.append(build.name)
    return tuple(classes)


def _options(body: DeploymentCreate, service: Service) -> dict:
    options = body.options.model_dump()
    for name in options["base_images"]:
        if name not in service.matrix.platforms:
            raise invalid(
                f"body.options.base_images.{name}", f"unknown device class; {service.matrix.describe_supported()}"
            )
    try:
        ValidationSettings(**options["validation"])
    except ValidationError as exc:
        raise invalid("body.options.validation", str(exc)) from None
    return options


def _check_policy(options: dict, principal: Principal, service: Service) -> None:
    """A request that loosens a safety check needs the `policy` scope (403 naming the first such setting)."""
    found = loosened(
        ValidationSettings(**options["validation"]), options["base_images"], service.settings.base.allowed_base_images
    )
    if found and POLICY not in principal.scopes:
        field = f"body.options.{found[0].setting}"
        raise ApiError(
            403,
            f"{field}: {found[0]}; loosening a safety check needs the `policy` scope, which {principal.name} lacks",
            field,
        )


def resolve_source(request: DeploymentRequest, service: Service) -> str:
    """The commit the model is taken from: the ref's commit in lakeFS, or the local directory's digest."""
    if request.local_dir:
        try:
            return describe_local_directory(Path(request.local_dir)).commit_id
        except StorageError as exc:
            raise invalid("body.local_dir", str(exc)) from None
    assert service.lakefs is not None
    try:
        return service.lakefs.resolve_commit(request.repo, request.ref)
    except NotFoundError:
        if _repository_missing(request.repo, service):
            raise invalid("body.repo", f"lakeFS has no repository {request.repo!r}") from None
        raise invalid(
            "body.ref", f"lakeFS repository {request.repo!r} has no branch, tag or commit {request.ref!r}"
        ) from None
    except TransientError:
        raise
    except StorageError as exc:  # lakeFS refused our own credentials: not the caller's to fix
        raise ApiError(502, f"lakeFS refused the lookup: {exc}") from None


def _repository_missing(repo: str, service: Service) -> bool:
    assert service.lakefs is not None
    try:
        service.lakefs.branch_head(repo, "main")  # 404 only for a missing repository
    except NotFoundError:
        return True
    return False


def idempotency_scope(principal: Principal, key: str | None) -> str | None:
    """Keys are per caller: two clients choosing the same key never see each other's runs."""
    if key is None:
        return None
    return hashlib.sha256(f"{principal.name}\n{key}".encode()).hexdigest()


def submit(
    request: DeploymentRequest, commit: str, principal: Principal, key: str | None, service: Service
) -> Submission:
    job = Job(new_run_id(), request, commit, principal=principal.name)
    return service.queue.submit(
        job,
        deployment_key(request, commit),
        deployment_fingerprint(request, commit),
        key,
        max_active=service.settings.max_active_runs,
    )
