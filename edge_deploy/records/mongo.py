"""Deployment records in MongoDB, through pymongo.

One document per run (the record's JSON form), with indexes for the product's queries: unique
run id; model + commit; status + update time; model + creation time (history and "latest").
Writes are upserts keyed by run id that never replace a newer version with an older one, so a
retried task, or a `sync` of an older record.json, changes nothing.

Network trouble (no server, a reset, a timeout, a failover) is retried a bounded number of times
with backoff; then the call fails with a message that names the database and hosts. The URI's
credentials never appear in a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConfigurationError, ConnectionFailure, DuplicateKeyError, InvalidURI, PyMongoError

from edge_deploy.config import Secret
from edge_deploy.errors import ConfigError, TransientError
from edge_deploy.records.model import DeploymentRecord
from edge_deploy.records.query import RecordQueries, RecordQuery, RecordStoreError, call_store
from edge_deploy.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTION = "deployments"
# About half a minute of trying before a record write gives up; the task's own retry comes on top.
MONGO_RETRY = RetryPolicy(attempts=4, base_delay=0.5, max_delay=4.0)
_NEWEST_FIRST = [("created_at", DESCENDING), ("run_id", DESCENDING)]
_INDEXES: list[tuple[str, list[tuple[str, int]], bool]] = [
    ("run_id_unique", [("run_id", ASCENDING)], True),
    ("model_commit", [("model.repo", ASCENDING), ("model.commit_id", ASCENDING)], False),
    ("status_updated", [("status.state", ASCENDING), ("updated_at", DESCENDING)], False),
    ("model_created", [("model.repo", ASCENDING), ("created_at", DESCENDING)], False),
]


class MongoRecordStore(RecordQueries):
    def __init__(
        self,
        uri: Secret | str,
        database: str = "edge_deploy",
        collection: str = COLLECTION,
        retry: RetryPolicy = MONGO_RETRY,
        timeout: float = 5.0,
    ) -> None:
        uri_text = uri.reveal() if isinstance(uri, Secret) else uri
        self._secrets = _uri_secrets(uri_text)
        self.retry = retry
        self.where = f"MongoDB database {database!r} on {_hosts(uri_text)}"
        milliseconds = int(timeout * 1000)
        try:
            self._client: MongoClient = MongoClient(
                uri_text,
                serverSelectionTimeoutMS=milliseconds,
                connectTimeoutMS=milliseconds,
                socketTimeoutMS=milliseconds * 2,
                appname="edge-deploy",
                connect=False,
            )
        except (ConfigurationError, InvalidURI, ValueError) as exc:  # pymongo raises ValueError for a bad port
            raise ConfigError(f"MONGODB_URI is not a usable MongoDB URI: {self._redact(str(exc))}") from None
        self._collection: Collection = self._client[database][collection]
        self._indexes_ready = False

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, record: DeploymentRecord) -> bool:
        document = record.to_dict()
        not_newer = {"run_id": record.run_id, "updated_at": {"$lte": record.updated_at}}

        def write() -> bool:
            try:
                self._collection.replace_one(not_newer, document, upsert=True)
                return True
            except DuplicateKeyError:
                # The filter missed, so the insert collided with a stored version of this run: it is
                # newer, or a concurrent writer inserted it first. Replace only if it is not newer.
                return self._collection.replace_one(not_newer, document).matched_count == 1

        return self._run(f"write deployment record {record.run_id}", write)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, run_id: str) -> DeploymentRecord | None:
        document = self._run(
            f"read deployment record {run_id}", lambda: self._collection.find_one({"run_id": run_id}, {"_id": 0})
        )
        return None if document is None else self._record(document)

    def find(self, query: RecordQuery) -> list[DeploymentRecord]:
        def read() -> list[dict[str, Any]]:
            cursor = self._collection.find(_filter(query), {"_id": 0}).sort(_NEWEST_FIRST)
            return list(cursor.limit(query.limit) if query.limit else cursor)

        return [self._record(document) for document in self._run("query deployment records", read)]

    def count(self) -> int:
        return self._run("count deployment records", lambda: self._collection.count_documents({}))

    def close(self) -> None:
        self._client.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _record(self, document: dict[str, Any]) -> DeploymentRecord:
        return DeploymentRecord.from_dict(document, f"{self.where}: record {document.get('run_id')!r}")

    def _ensure_indexes(self) -> None:
        if self._indexes_ready:
            return
        for name, keys, unique in _INDEXES:
            self._collection.create_index(keys, name=name, unique=unique)
        self._indexes_ready = True

    def _run(self, what: str, operation: Callable[[], T]) -> T:
        """Run `operation` (after making sure the indexes exist), retrying only network trouble."""

        def attempt() -> T:
            try:
                self._ensure_indexes()
                return operation()
            except PyMongoError as exc:
                detail = self._redact(_short(exc))
                if _is_transient(exc):
                    raise TransientError(f"{self.where} unreachable ({type(exc).__name__}: {detail})") from None
                raise RecordStoreError(f"{what}: {self.where} refused it ({type(exc).__name__}: {detail})") from None

        return call_store(attempt, what, self.retry)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret.reveal(), "****")
        return text


def _filter(query: RecordQuery) -> dict[str, Any]:
    conditions: dict[str, Any] = {}
    if query.model_repo is not None:
        conditions["model.repo"] = query.model_repo
    if query.prefix is not None:
        conditions["model.prefix"] = query.prefix
    if query.state is not None:
        conditions["status.state"] = query.state
    if query.platform is not None:
        conditions["images.platforms.platform"] = query.platform
    if query.since is not None:
        conditions["updated_at"] = {"$gte": query.since}
    return conditions


def _is_transient(exc: PyMongoError) -> bool:
    """Network errors, server selection and operation timeouts, and errors MongoDB labels retryable."""
    return (
        isinstance(exc, ConnectionFailure)
        or exc.timeout
        or exc.has_error_label("RetryableWriteError")
        or exc.has_error_label("TransientTransactionError")
    )


def _short(exc: PyMongoError) -> str:
    # Server selection errors append a long topology description; the first clause says what happened.
    return str(exc).split(", Timeout:", 1)[0][:300]


def _hosts(uri: str) -> str:
    """The host list of a MongoDB URI without its credentials (no DNS lookup, even for mongodb+srv)."""
    netloc = urlsplit(uri).netloc
    return netloc.rpartition("@")[2] or "(no host)"


def _uri_secrets(uri: str) -> list[Secret]:
    """The password of a URI, raw and percent-decoded, to be scrubbed from any message."""
    userinfo = urlsplit(uri).netloc.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return [Secret(value) for value in {password, unquote(password)} if value]


# -- pages (edge_deploy.records.pages) -------------------------------------------------------------


def find_page(
    store: MongoRecordStore, query: RecordQuery, device_class: str | None, after: Any, count: int
) -> list[DeploymentRecord]:
    """`count` records matching `query`, with an image for `device_class`, older than the cursor `after`."""
    from edge_deploy.records.pages import device_class_regex

    conditions = [_filter(query)]
    if device_class is not None:
        conditions.append({"images.platforms.reference": {"$regex": device_class_regex(device_class)}})
    if after is not None:
        older = {"created_at": {"$lt": after.created_at}}
        same_time = {"created_at": after.created_at, "run_id": {"$lt": after.run_id}}
        conditions.append({"$or": [older, same_time]})

    def read() -> list[dict[str, Any]]:
        if not getattr(store, "_page_index_ready", False):  # newest first across all models, without a sort
            store._collection.create_index(_NEWEST_FIRST, name="created")
            store._page_index_ready = True
        cursor = store._collection.find({"$and": conditions}, {"_id": 0}).sort(_NEWEST_FIRST).limit(count)
        return list(cursor)

    return [store._record(document) for document in store._run("query a page of deployment records", read)]
