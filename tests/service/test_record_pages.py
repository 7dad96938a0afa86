"""Pages of records, the device-class filter and the latest release, on MongoDB (SecantusDB) and SQLite."""

from __future__ import annotations

import pytest

from edge_deploy.records import FAILED, RecordFormatError, RecordQuery
from edge_deploy.records.pages import PageCursor, find_page, image_device_class, latest_release
from tests.service.records import released


def fill(store) -> list[str]:
    """30 runs of two models over 20 minutes (several created in the same minute), newest first."""
    ids = []
    for index in range(30):
        classes = ("x86_64-cpu", "arm64-cpu") if index % 3 else ("x86_64-nvidia",)
        record = released(
            f"run-{index:02d}",
            repo="detector" if index % 2 else "segmenter",
            classes=classes,
            state=FAILED if index % 7 == 0 else "succeeded",
            minute=index // 3 * 2,  # three runs share each creation minute: ties are ordered by run id
        )
        store.upsert(record)
        ids.append(record.run_id)
    return sorted(ids, key=lambda run_id: (int(run_id[4:]) // 3, run_id), reverse=True)


def all_pages(store, query: RecordQuery, device_class: str | None, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = find_page(store, query, device_class, cursor, limit)
        pages.append([record.run_id for record in page.records])
        if page.next_cursor is None:
            return pages
        cursor = PageCursor.decode(page.next_cursor.encode())  # as a client hands it back


def test_pages_cover_every_record_once_newest_first(record_store):
    newest_first = fill(record_store)
    pages = all_pages(record_store, RecordQuery(), None, limit=7)
    assert [len(page) for page in pages] == [7, 7, 7, 7, 2]
    assert [run_id for page in pages for run_id in page] == newest_first


def test_filters_hold_across_pages(record_store):
    fill(record_store)
    query = RecordQuery(model_repo="detector", state="succeeded")
    pages = all_pages(record_store, query, "arm64-cpu", limit=4)
    found = [run_id for page in pages for run_id in page]
    expected = [
        f"run-{i:02d}" for i in range(30) if i % 2 == 1 and i % 7 != 0 and i % 3 != 0
    ]  # detector, succeeded, with an arm64-cpu image
    assert sorted(found) == sorted(expected) and len(found) == len(set(found))
    for run_id in found:
        record = record_store.get(run_id)
        assert record.model.repo == "detector" and any(
            image_device_class(image.reference) == "arm64-cpu" for image in record.images.platforms
        )


def test_device_classes_of_one_platform_are_told_apart(record_store):
    fill(record_store)
    nvidia = [r.run_id for r in find_page(record_store, RecordQuery(), "x86_64-nvidia", limit=100).records]
    cpu = [r.run_id for r in find_page(record_store, RecordQuery(), "x86_64-cpu", limit=100).records]
    assert nvidia and cpu and not set(nvidia) & set(cpu), "both are linux/amd64; the tag tells them apart"
    assert find_page(record_store, RecordQuery(), "x86_64", limit=100).records == [], "no prefix matches"


def test_latest_release_is_the_newest_passing_accepted_run_with_an_image_for_the_class(record_store):
    record_store.upsert(released("old", minute=1))
    record_store.upsert(released("newest-failed", minute=9, state=FAILED))
    record_store.upsert(released("newest-other-class", minute=8, classes=("x86_64-nvidia",)))
    record_store.upsert(released("gate-failed", minute=7, passed=False))
    record_store.upsert(released("not-run-on-a-device", minute=6, acceptance="not-run"))  # never answered
    record_store.upsert(released("good", minute=5))
    record, image = latest_release(record_store, "detector", "arm64-cpu")
    assert record.run_id == "good"
    assert image.platform == "linux/arm64/v8" and image_device_class(image.reference) == "arm64-cpu"
    assert latest_release(record_store, "detector", "jetson-orin") is None
    assert latest_release(record_store, "nobody", "arm64-cpu") is None


def test_with_signing_configured_only_a_signed_image_is_answered(record_store):
    record_store.upsert(released("signed", minute=1, signed=True))
    record_store.upsert(released("newer-unsigned", minute=5))
    assert latest_release(record_store, "detector", "arm64-cpu")[0].run_id == "newer-unsigned"
    record, image = latest_release(record_store, "detector", "arm64-cpu", signed=True)
    assert record.run_id == "signed" and image.signature and image.signature.startswith("sha256:")
    stored = record_store.get("signed").images.for_platform(image.platform)  # the store keeps both digests
    assert stored.signature == image.signature and stored.provenance and stored.provenance != stored.signature
    record_store.upsert(released("only-unsigned", repo="camera", minute=2))
    assert latest_release(record_store, "camera", "arm64-cpu", signed=True) is None


def test_a_cursor_that_was_not_made_by_a_page_is_refused():
    for text in ("", "not base64 !", PageCursor("a", "b").encode()[:-3], "WzEsMl0"):
        with pytest.raises(RecordFormatError, match="cursor"):
            PageCursor.decode(text)


def test_image_device_class_reads_the_content_tag():
    tag = "a" * 24
    assert image_device_class(f"acr.example.io:443/edge/det:jetson-orin-{tag}") == "jetson-orin"
    assert image_device_class(f"localhost:5000/det:x86_64-cpu-{tag}") == "x86_64-cpu"
    assert image_device_class("localhost:5000/det:latest") is None
    assert image_device_class(f"localhost:5000/det:x86_64-cpu-{'A' * 24}") is None
    assert image_device_class("localhost:5000/det") is None
