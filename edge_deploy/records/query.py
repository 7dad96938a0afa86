"""What a record store is: the `RecordStore` interface, the `RecordQuery` filter, the product's named
queries written once over `find`, and the errors and retry rule every store shares.

The stores themselves are `embedded` (SQLite) and `mongo`; `store.open_record_store` picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from edge_deploy.errors import EdgeDeployError, TransientError
from edge_deploy.records.model import (
    RUN_STATES,
    SUCCEEDED,
    DeploymentRecord,
    RecordFormatError,
    directory_prefix,
    utc_timestamp,
)
from edge_deploy.retry import RetryPolicy, call_with_retry

T = TypeVar("T")


class RecordStoreError(EdgeDeployError):
    """The record store refused a request (bad credentials, a corrupt file); retrying will not help."""


class RecordStoreUnavailable(RecordStoreError, TransientError):
    """The record store could not be reached after bounded retries; a later retry may succeed."""


@dataclass(frozen=True)
class RecordQuery:
    """A filter over records; every field that is set must match. Results come newest first."""

    model_repo: str | None = None
    prefix: str | None = None
    state: str | None = None
    platform: str | None = None  # the record has an image for this OCI platform
    since: str | None = None  # updated at or after this time (ISO 8601)
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in RUN_STATES:
            raise RecordFormatError(f"status must be one of {', '.join(RUN_STATES)}, got {self.state!r}")
        if self.prefix is not None:
            object.__setattr__(self, "prefix", directory_prefix(self.prefix))
        if self.since is not None:
            object.__setattr__(self, "since", utc_timestamp(self.since))
        if self.limit is not None and self.limit < 1:
            raise RecordFormatError(f"limit must be at least 1, got {self.limit}")


class RecordStore(Protocol):
    where: str  # a human description of the store, without credentials

    def upsert(self, record: DeploymentRecord) -> bool:
        """Write `record` keyed by run id: True if stored, False if the store holds a newer version."""
        ...

    def get(self, run_id: str) -> DeploymentRecord | None: ...

    def find(self, query: RecordQuery) -> list[DeploymentRecord]: ...

    def latest_successful(
        self, model_repo: str, prefix: str | None = None, platform: str | None = None
    ) -> DeploymentRecord | None: ...

    def history(self, model_repo: str, limit: int | None = None) -> list[DeploymentRecord]: ...

    def by_status(self, state: str, since: str | None = None, limit: int | None = None) -> list[DeploymentRecord]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class RecordQueries:
    """The product's named queries, written once over each store's `find`."""

    def find(self, query: RecordQuery) -> list[DeploymentRecord]:
        raise NotImplementedError

    def latest_successful(
        self, model_repo: str, prefix: str | None = None, platform: str | None = None
    ) -> DeploymentRecord | None:
        """The newest succeeded run of the model (under `prefix`, with an image for `platform`)."""
        found = self.find(
            RecordQuery(model_repo=model_repo, prefix=prefix, state=SUCCEEDED, platform=platform, limit=1)
        )
        return found[0] if found else None

    def history(self, model_repo: str, limit: int | None = None) -> list[DeploymentRecord]:
        return self.find(RecordQuery(model_repo=model_repo, limit=limit))

    def by_status(self, state: str, since: str | None = None, limit: int | None = None) -> list[DeploymentRecord]:
        return self.find(RecordQuery(state=state, since=since, limit=limit))


def call_store(attempt: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Run one store operation; `attempt` raises TransientError for what a retry can cure (it is
    retried within `policy`) and RecordStoreError for the rest. Retries used up: RecordStoreUnavailable."""
    try:
        return call_with_retry(attempt, what, policy)
    except RecordStoreError:
        raise
    except TransientError as exc:
        raise RecordStoreUnavailable(str(exc)) from None
