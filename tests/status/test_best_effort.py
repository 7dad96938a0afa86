"""Redis going away never fails a deployment: status carries on in-process after exactly one warning."""

from __future__ import annotations

import logging
import time

import pytest

from edge_deploy.status.backend import InProcessStatus
from edge_deploy.status.best_effort import BestEffortStatus
from edge_deploy.status.events import RUN_SUCCEEDED, STAGE_FINISHED
from edge_deploy.status.redis_status import RedisStatus
from edge_deploy.status.tracker import RunTracker
from tests.fixtures.redis import RedisServer

PLAN = ("download", "convert", "validate", "build", "publish")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_redis_stopped_mid_run_costs_one_warning_and_the_run_finishes(
    redis_server: RedisServer, run_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    status = BestEffortStatus(RedisStatus.from_url(redis_server.url), InProcessStatus())
    tracker = RunTracker(status, run_id, plan=PLAN)
    caplog.set_level(logging.DEBUG)
    for stage in PLAN[:2]:
        with tracker.stage(stage):
            pass
    assert [e.stage for e in status.events(run_id) if e.kind == STAGE_FINISHED] == ["download", "convert"]
    assert not status.degraded

    with redis_server.stopped():
        for stage in PLAN[2:]:
            with tracker.stage(stage):
                pass
            assert status.progress(run_id).stage == stage
        tracker.succeeded()
        assert status.progress(run_id).state == "succeeded"
        after_outage = status.events(run_id)
        followed = list(status.follow(run_id, idle_timeout=5))

    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"Redis at 127.0.0.1:{redis_server.port}/0 failed" in warnings[0]
    assert "the deployment is not affected" in warnings[0]
    assert status.degraded and status.where.startswith("in-process status")
    assert [e.stage for e in after_outage if e.kind == STAGE_FINISHED] == ["validate", "build", "publish"]
    assert followed == after_outage and followed[-1].kind == RUN_SUCCEEDED
    assert set(tracker.timings) == set(PLAN)


def test_redis_is_tried_again_after_an_interval_and_gets_what_it_missed(
    redis_server: RedisServer, run_id: str, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    status = BestEffortStatus(RedisStatus.from_url(redis_server.url), InProcessStatus(), retry_seconds=1.0)
    tracker = RunTracker(status, run_id)
    with redis_server.stopped():
        tracker.start_stage("download")
    assert len(_warnings(caplog)) == 1
    caplog.clear()
    tracker.start_stage("convert")  # Redis is back, but within the interval it is not asked
    with redis_server.client() as client:
        assert client.exists(f"edge-deploy:events:{run_id}") == 0
    time.sleep(1.2)
    tracker.succeeded()  # after it: the missed events first, in order, then this one
    assert _warnings(caplog) == [] and not status.degraded
    with redis_server.client() as client:
        kinds = [(fields["kind"], fields["stage"]) for _, fields in client.xrange(f"edge-deploy:events:{run_id}")]
    assert kinds == [("stage-started", "download"), ("stage-started", "convert"), ("run-succeeded", "convert")]
