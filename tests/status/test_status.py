"""Live status on both backends: progress, the event feed in order, follow-along, the Redis keys and TTL."""

from __future__ import annotations

import threading

import pytest

from edge_deploy.config import Secret, Settings
from edge_deploy.status import PROCESS_STATUS, BestEffortStatus, RunTracker, open_status
from edge_deploy.status.backend import StatusBackend
from edge_deploy.status.events import RUN_FAILED, RUN_SUCCEEDED, STAGE_FAILED, STAGE_FINISHED, STAGE_STARTED
from edge_deploy.status.redis_status import RedisStatus, events_key, run_key
from tests.fixtures.redis import RedisServer

PLAN = ("download", "convert", "validate", "build")


def _run_pipeline(status: StatusBackend, run_id: str) -> RunTracker:
    tracker = RunTracker(status, run_id, plan=PLAN)
    for stage in PLAN:
        with tracker.stage(stage):
            pass
    tracker.succeeded()
    return tracker


def test_the_event_feed_replays_a_runs_stages_in_order(status_backend: StatusBackend, run_id: str) -> None:
    tracker = _run_pipeline(status_backend, run_id)
    events = status_backend.events(run_id)
    expected = [(kind, stage) for stage in PLAN for kind in (STAGE_STARTED, STAGE_FINISHED)]
    assert [(e.kind, e.stage) for e in events] == [*expected, (RUN_SUCCEEDED, "build")]
    assert [e.seconds for e in events if e.kind == STAGE_FINISHED] == [tracker.timings[s] for s in PLAN]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert len({e.event_id for e in events}) == len(events)
    # a follower arriving after the run gets the same feed, and stops at the run's end
    assert list(status_backend.follow(run_id)) == events


def test_progress_reports_the_stage_and_fraction_done(status_backend: StatusBackend, run_id: str) -> None:
    tracker = RunTracker(status_backend, run_id, plan=PLAN)
    assert status_backend.progress(run_id) is None
    with tracker.stage("download"):
        assert (status_backend.progress(run_id).stage, status_backend.progress(run_id).progress) == ("download", 0.0)
    tracker.start_stage("convert")
    progress = status_backend.progress(run_id)
    assert (progress.stage, progress.state, progress.progress) == ("convert", "running", 0.25)
    tracker.succeeded()
    assert (status_backend.progress(run_id).state, status_backend.progress(run_id).progress) == ("succeeded", 1.0)


def test_a_failing_stage_is_reported_and_the_error_still_raised(status_backend: StatusBackend, run_id: str) -> None:
    tracker = RunTracker(status_backend, run_id, plan=PLAN)
    with pytest.raises(ValueError, match="dets differ"), tracker.stage("validate"):
        raise ValueError("dets differ by 0.3")
    tracker.failed("validate", "parity gate failed")
    events = status_backend.events(run_id)
    assert [(e.kind, e.stage) for e in events] == [
        (STAGE_STARTED, "validate"),
        (STAGE_FAILED, "validate"),
        (RUN_FAILED, "validate"),
    ]
    assert events[1].error == "ValueError: dets differ by 0.3" and events[1].seconds is not None
    progress = status_backend.progress(run_id)
    assert (progress.state, progress.error) == ("failed", "parity gate failed")


def test_a_follower_sees_stages_live_as_they_happen(status_backend: StatusBackend, run_id: str) -> None:
    seen: list[str] = []
    first_seen = threading.Event()

    def follow() -> None:
        for event in status_backend.follow(run_id, idle_timeout=30):
            seen.append(f"{event.kind}:{event.stage}")
            first_seen.set()

    follower = threading.Thread(target=follow)
    follower.start()
    tracker = RunTracker(status_backend, run_id, plan=PLAN)
    tracker.start_stage("download")
    assert first_seen.wait(10), "the follower never saw the first event"
    tracker.finish_stage("download", 1.5)
    tracker.succeeded()
    follower.join(10)
    assert not follower.is_alive()
    assert seen == ["stage-started:download", "stage-finished:download", "run-succeeded:download"]


def test_follow_stops_after_the_idle_timeout_when_nothing_happens(status_backend: StatusBackend, run_id: str) -> None:
    assert list(status_backend.follow(run_id, idle_timeout=0.2)) == []


def test_redis_keeps_a_hash_and_a_stream_per_run_that_expire(
    redis_status: RedisStatus, redis_server: RedisServer, run_id: str
) -> None:
    _run_pipeline(redis_status, run_id)
    with redis_server.client() as client:
        fields = client.hgetall(f"edge-deploy:run:{run_id}")
        assert run_key(run_id) == f"edge-deploy:run:{run_id}"
        assert fields["stage"] == "build" and fields["state"] == "succeeded" and float(fields["progress"]) == 1.0
        assert fields["updated"].endswith("Z")
        assert 0 < client.ttl(run_key(run_id)) <= 600
        assert 0 < client.ttl(events_key(run_id)) <= 600
        assert client.xlen(f"edge-deploy:events:{run_id}") == 2 * len(PLAN) + 1


def test_without_redis_url_status_is_in_process_and_shared(tmp_path) -> None:
    assert open_status(Settings(work_dir=tmp_path)) is PROCESS_STATUS


def test_with_redis_url_status_is_redis_wrapped_best_effort(redis_server: RedisServer, tmp_path, caplog) -> None:
    caplog.set_level("INFO", logger="edge_deploy.status")
    status = open_status(Settings(redis_url=Secret(redis_server.url), work_dir=tmp_path))
    assert isinstance(status, BestEffortStatus) and status.where == f"Redis at 127.0.0.1:{redis_server.port}/0"
    assert f"live status: Redis at 127.0.0.1:{redis_server.port}/0" in caplog.text
