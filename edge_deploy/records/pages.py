"""Reading records a page at a time, by device class, and the release a device class should run.

Added for the deployment service (GET /api/v1/deployments and .../releases/latest): results come
newest first, as `RecordStore.find` returns them, and an opaque cursor (the creation time and run
id of the last record of a page) continues where a page ended, so a record written meanwhile never
shifts a page. Each store answers the page query itself (`find_page` at the end of embedded.py and
mongo.py); another store is paged through `find`.

A record does not name device classes, but its images do: an image tag is `<device class>-<24 hex
digest>` (edge_deploy.images.tags), so "an image for device class D" is an image whose tag says D.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from edge_deploy.records.model import SUCCEEDED, DeploymentRecord, PlatformImage, RecordFormatError
from edge_deploy.records.query import RecordQuery, RecordStore

MAX_PAGE = 500
TAG_DIGEST_HEX = 24  # edge_deploy.images.tags.TAG_DIGEST_LENGTH
_DEVICE_CLASS = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class PageCursor:
    """Where the next page starts: after the record created at `created_at` with `run_id`."""

    created_at: str
    run_id: str

    def encode(self) -> str:
        text = json.dumps([self.created_at, self.run_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            created_at, run_id = json.loads(raw)
            if not isinstance(created_at, str) or not isinstance(run_id, str):
                raise ValueError
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise RecordFormatError(
                "cursor: not a cursor from an earlier page (pass next_cursor back as it came)"
            ) from None
        return cls(created_at, run_id)


@dataclass(frozen=True)
class RecordPage:
    records: list[DeploymentRecord]
    next_cursor: PageCursor | None


def image_device_class(reference: str) -> str | None:
    """The device class an image's content tag names (`registry/repo:arm64-cpu-<hex>` -> arm64-cpu)."""
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    name, _, digest = tag.rpartition("-")
    if len(digest) != TAG_DIGEST_HEX or any(c not in "0123456789abcdef" for c in digest):
        return None
    return name if _DEVICE_CLASS.match(name) else None


def image_for_device_class(record: DeploymentRecord, device_class: str) -> PlatformImage | None:
    if record.images is None:
        return None
    return next((i for i in record.images.platforms if image_device_class(i.reference) == device_class), None)


def check_device_class(device_class: str) -> str:
    if not _DEVICE_CLASS.match(device_class):
        raise RecordFormatError(f"device class {device_class!r}: lower-case letters, digits, '_' and '-'")
    return device_class


def find_page(
    store: RecordStore,
    query: RecordQuery,
    device_class: str | None = None,
    after: PageCursor | None = None,
    limit: int = 20,
) -> RecordPage:
    """Up to `limit` records matching `query` (and with an image for `device_class`), after `after`."""
    if not 1 <= limit <= MAX_PAGE:
        raise RecordFormatError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if device_class is not None:
        check_device_class(device_class)
    query = RecordQuery(**{**query.__dict__, "limit": None})
    records = _pager(store)(store, query, device_class, after, limit + 1)
    more = len(records) > limit
    records = records[:limit]
    cursor = PageCursor(records[-1].created_at, records[-1].run_id) if more and records else None
    return RecordPage(records, cursor)


def _pager(store: RecordStore) -> Callable[..., list[DeploymentRecord]]:
    """The store's own page query; a store module that is not loaded cannot have made `store`."""
    embedded = sys.modules.get("edge_deploy.records.embedded")
    if embedded is not None and isinstance(store, embedded.EmbeddedRecordStore):
        return embedded.find_page
    mongo = sys.modules.get("edge_deploy.records.mongo")
    if mongo is not None and isinstance(store, mongo.MongoRecordStore):
        return mongo.find_page
    return _page_through_find


def _page_through_find(
    store: RecordStore, query: RecordQuery, device_class: str | None, after: PageCursor | None, count: int
) -> list[DeploymentRecord]:
    matched = []
    for record in store.find(query):
        if after is not None and (record.created_at, record.run_id) >= (after.created_at, after.run_id):
            continue
        if device_class is not None and image_for_device_class(record, device_class) is None:
            continue
        matched.append(record)
        if len(matched) == count:
            break
    return matched


def latest_release(
    store: RecordStore, model_repo: str, device_class: str, prefix: str | None = None, *, signed: bool = False
) -> tuple[DeploymentRecord, PlatformImage] | None:
    """The newest succeeded run of the model that passed validation and has an image for the class that
    passed acceptance (run as a device on the gate's photos): no other image is ever answered. With
    `signed` (signing is configured), only an image the release signed."""
    query = RecordQuery(model_repo=model_repo, prefix=prefix, state=SUCCEEDED)
    cursor = None
    while True:
        page = find_page(store, query, device_class, cursor, limit=10)
        for record in page.records:
            image = image_for_device_class(record, device_class)
            if image is None or record.validation is None or not record.validation.passed or not accepted(image):
                continue
            if not signed or image.signature:
                return record, image
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor


def accepted(image: PlatformImage) -> bool:
    return image.acceptance is not None and image.acceptance.status == "accepted"


def device_class_glob(device_class: str) -> str:
    """An SQLite GLOB matching an image reference whose tag is `<device class>-<24 hex>`."""
    return f"*:{check_device_class(device_class)}-" + "[0-9a-f]" * TAG_DIGEST_HEX


def device_class_regex(device_class: str) -> str:
    return f":{re.escape(check_device_class(device_class))}-[0-9a-f]{{{TAG_DIGEST_HEX}}}$"
