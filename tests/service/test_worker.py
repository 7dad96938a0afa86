"""The worker against job processes that crash, hang, lie or succeed (tests/service/job_programs.py),
with the in-process queue and status of the embedded default and a real SQLite record store."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from edge_deploy.jobs.executor import ExecutorHealth
from edge_deploy.jobs.memory_queue import InProcessJobQueue
from edge_deploy.jobs.model import CANCELLED, ENDED_STATES, FAILED, SUCCEEDED
from edge_deploy.jobs.worker import Worker, WorkerConfig
from edge_deploy.records.embedded import EmbeddedRecordStore
from edge_deploy.status import InProcessStatus
from edge_deploy.status.events import RUN_FAILED, RUN_SUCCEEDED, STAGE_STARTED
from tests.fixtures.s3 import PROJECT_ROOT
from tests.service.conftest import make_job, submit


class Harness:
    def __init__(self, tmp_path, monkeypatch, behaviour: str, lease: float = 2.0, command=None) -> None:
        monkeypatch.setenv("EDGE_WORK_DIR", str(tmp_path))
        monkeypatch.delenv("MONGODB_URI", raising=False)
        monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
        self.queue = InProcessJobQueue(max_attempts=3)
        self.records = EmbeddedRecordStore(tmp_path / "deployments.sqlite3")
        self.status = InProcessStatus()
        config = WorkerConfig(
            child_command=command or [sys.executable, "-m", "tests.service.job_programs", behaviour],
            lease_seconds=lease,
            stop_grace_seconds=5.0,
            forward_status=True,
        )
        self.worker = Worker(self.queue, self.records, self.status, config, lambda: ExecutorHealth(True, "test"))
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def wait_for(self, run_id: str, states=ENDED_STATES, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while (job := self.queue.get(run_id)).state not in states:
            assert time.monotonic() < deadline, f"run {run_id} is still {job.state}"
            time.sleep(0.1)
        return job

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        self.records.close()


@pytest.fixture
def harness(tmp_path, monkeypatch):
    made = []

    def make(behaviour: str, lease: float = 2.0, command=None) -> Harness:
        made.append(Harness(tmp_path, monkeypatch, behaviour, lease, command))
        return made[-1]

    yield make
    for item in made:
        item.close()


def kinds(status, run_id: str) -> list[str]:
    return [event.kind for event in status.events(run_id)]


def test_a_crashing_job_fails_its_run_with_the_signal_and_the_worker_goes_on(harness):
    work = harness("segfault")
    first, second = make_job(), make_job(targets=("arm64-cpu",))
    submit(work.queue, first)
    submit(work.queue, second)
    ended = work.wait_for(first.run_id)
    assert ended.state == FAILED and "killed by SIGSEGV" in ended.error
    record = work.records.get(first.run_id)
    assert record.status.state == "failed" and record.status.failed_stage == "convert"
    assert "SIGSEGV" in record.status.error
    assert kinds(work.status, first.run_id) == [STAGE_STARTED, RUN_FAILED], "followers are told it ended"
    assert work.wait_for(second.run_id).state == FAILED, "the worker took the next job"
    assert work.thread.is_alive()


def test_a_failed_local_directory_job_is_recorded_by_the_model_s_name(harness, tmp_path):
    model_dir = tmp_path / "models" / "lane-detector"
    model_dir.mkdir(parents=True)
    (model_dir / "manifest.yaml").write_text("name: lane-net  # as the team calls it\n")
    work = harness("segfault")
    job = make_job(repo="", commit="", local_dir=str(model_dir))
    submit(work.queue, job)
    assert work.wait_for(job.run_id).state == FAILED
    model = work.records.get(job.run_id).model
    assert (model.repo, model.ref) == ("lane-net", str(model_dir))


def test_a_job_process_that_cannot_start_fails_its_run_and_the_worker_goes_on(harness, tmp_path):
    work = harness("", command=[str(tmp_path / "no-such-program")])
    first, second = make_job(), make_job(targets=("arm64-cpu",))
    submit(work.queue, first)
    submit(work.queue, second)
    ended = work.wait_for(first.run_id)
    assert ended.state == FAILED and "could not be started: FileNotFoundError" in ended.error
    record = work.records.get(first.run_id)
    assert record.status.state == "failed" and "could not be started" in record.status.error
    assert kinds(work.status, first.run_id)[-1] == RUN_FAILED, "followers are told it ended"
    assert work.wait_for(second.run_id).state == FAILED and work.thread.is_alive()


def test_a_job_process_that_exits_before_reading_its_job_is_failed_with_its_exit_code(harness):
    work = harness("", command=[sys.executable, "-c", "import sys; sys.exit(7)"])
    job = make_job(options={"padding": "x" * 200_000})  # more than a pipe holds: the write breaks
    submit(work.queue, job)
    ended = work.wait_for(job.run_id)
    assert ended.state == FAILED and "exited with code 7" in ended.error
    assert work.thread.is_alive()


def test_a_job_that_exits_without_an_outcome_is_failed_saying_so(harness):
    work = harness("exit-silently")
    job = make_job()
    submit(work.queue, job)
    ended = work.wait_for(job.run_id)
    assert ended.state == FAILED and "exited with code 3" in ended.error


def test_a_job_that_claims_success_without_a_record_is_failed(harness):
    work = harness("claim-success")
    job = make_job()
    submit(work.queue, job)
    ended = work.wait_for(job.run_id)
    assert ended.state == FAILED and "without a succeeded deployment record" in ended.error
    assert work.records.get(job.run_id).status.failed_stage == "record"


def test_a_succeeding_job_ends_succeeded_with_its_events_forwarded(harness):
    work = harness("succeed")
    job = make_job()
    submit(work.queue, job)
    assert work.wait_for(job.run_id).state == SUCCEEDED
    assert work.records.get(job.run_id).status.state == "succeeded"
    assert kinds(work.status, job.run_id) == [STAGE_STARTED, "stage-finished", RUN_SUCCEEDED]
    assert work.queue.outcomes() == {SUCCEEDED: 1}


def test_cancel_stops_a_running_job_process(harness):
    work = harness("hang", lease=1.0)
    job = make_job()
    submit(work.queue, job)
    work.wait_for(job.run_id, states=("running",))
    deadline = time.monotonic() + 30
    while STAGE_STARTED not in kinds(work.status, job.run_id):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    work.queue.request_cancel(job.run_id)
    ended = work.wait_for(job.run_id, timeout=30)
    assert ended.state == CANCELLED and time.monotonic() - started < 10
    record = work.records.get(job.run_id)
    assert (record.status.failed_stage, record.status.error) == ("convert", "cancelled by request")
    assert kinds(work.status, job.run_id)[-1] == RUN_FAILED


def test_a_job_taken_up_too_often_is_failed_without_running(harness, tmp_path):
    work = harness("succeed")
    job = make_job()
    work.queue.max_attempts = 0  # as if every earlier worker had died under it
    submit(work.queue, job)
    ended = work.wait_for(job.run_id)
    assert ended.state == FAILED and "given up after 0 attempts" in ended.error
    assert work.records.get(job.run_id).status.failed_stage == "worker"


GRANDPARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True, stdout=sys.stdout)
time.sleep(600)
"""
JOB_WITH_A_HELPER = """
import os, subprocess, sys, time
from edge_deploy.jobs.child import die_with_parent
die_with_parent(os.getppid())
helper = subprocess.Popen(["sleep", "600"])  # what a job starts: a converter, a docker client
print(helper.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("blocked", [False, True], ids=["idle", "inside-a-long-c-call"])
def test_a_job_and_the_processes_it_started_die_with_their_worker(tmp_path, blocked):
    import os
    import signal
    import subprocess

    job = JOB_WITH_A_HELPER
    if blocked:  # the main thread never returns to Python: only the watchdog thread can act
        job = job.replace("time.sleep(600)", "import ctypes; ctypes.CDLL(None).sleep(600)")
    worker = subprocess.Popen(
        [sys.executable, "-c", GRANDPARENT, job],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        helper = int(worker.stdout.readline())
        os.kill(worker.pid, signal.SIGKILL)  # the worker dies without a word
        worker.wait()
        deadline = time.monotonic() + 10
        while _alive(helper):
            assert time.monotonic() < deadline, "the job's helper process outlived the worker"
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
