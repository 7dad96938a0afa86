"""`open_record_store`: MongoDB when MONGODB_URI is set, else an SQLite file in EDGE_WORK_DIR.

MONGODB_URI set: MongoDB (`MongoRecordStore`). Unset: an SQLite file in EDGE_WORK_DIR
(`EmbeddedRecordStore`), so the demo needs no server. Both answer the same `RecordQuery`, newest
first (by the run's creation time, then run id). The interface they share is in `records.query`.
"""

from __future__ import annotations

import logging

from edge_deploy.config import Settings
from edge_deploy.records.query import (
    RecordQueries,
    RecordQuery,
    RecordStore,
    RecordStoreError,
    RecordStoreUnavailable,
)

log = logging.getLogger(__name__)

EMBEDDED_FILE_NAME = "deployments.sqlite3"

# The interface, for callers that import it from here.
__all__ = [
    "EMBEDDED_FILE_NAME",
    "RecordQueries",
    "RecordQuery",
    "RecordStore",
    "RecordStoreError",
    "RecordStoreUnavailable",
    "open_record_store",
]


def open_record_store(settings: Settings) -> RecordStore:
    """MongoDB when MONGODB_URI is set, otherwise the embedded SQLite file; the choice is logged."""
    if settings.mongodb_uri is not None:
        from edge_deploy.records.mongo import MongoRecordStore

        store: RecordStore = MongoRecordStore(settings.mongodb_uri, settings.mongodb_database)
        log.info("deployment records: %s", store.where)
        return store
    from edge_deploy.records.embedded import EmbeddedRecordStore

    store = EmbeddedRecordStore(settings.work_dir / EMBEDDED_FILE_NAME)
    log.info("deployment records: %s (MONGODB_URI is not set)", store.where)
    return store
