"""`edge-deploy worker`: take jobs from the queue one at a time and run each in a child process.

One job per worker at a time; each job runs in a child process of its own (its own session), so a
crash, a segfault or the kernel's OOM killer in a conversion ends that job, not the worker. While
the child runs, the worker renews its lease on the job every quarter lease; if it dies, the lease
runs out and another worker takes the job up again under the same run id (the child dies with its
worker, see `edge_deploy.jobs.child`). A job ends once: only the holder of the current lease can
end it, and a worker that takes up a job whose run already left a final record ends it from that
record instead of running it again.

However the child ends, the run ends with a record and a final event: the workflow writes them
itself (its failure handler included); when the child was killed or cancelled before it could, the
worker writes a failed record naming what happened and publishes the run's end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_deploy.jobs.child import FORWARD_STATUS_VARIABLE, PARENT_PID_VARIABLE, PIPE_FD_VARIABLE, read_messages
from edge_deploy.jobs.executor import ExecutionOutcome, ExecutorHealth
from edge_deploy.jobs.fence import FENCE_VARIABLE, fence_token
from edge_deploy.jobs.liveness import AliveMarker
from edge_deploy.jobs.model import CANCELLED, FAILED, SUCCEEDED, Job
from edge_deploy.jobs.queue import (
    CANCEL,
    LOST,
    OWNED,
    VANISHED,
    Claim,
    JobQueue,
    JobQueueError,
    JobQueueUnavailable,
    WorkerInfo,
)
from edge_deploy.records import DeploymentRecord, ModelSource, RecordStore, RecordStoreError
from edge_deploy.records.model import FAILED as RECORD_FAILED
from edge_deploy.records.model import SUCCEEDED as RECORD_SUCCEEDED
from edge_deploy.status.backend import StatusBackend
from edge_deploy.status.events import RunProgress, StageEvent
from edge_deploy.status.tracker import RunTracker
from edge_deploy.storage.results import local_model_name

log = logging.getLogger(__name__)

EXECUTOR_CHECK_SECONDS = 30.0
FINISH_PATIENCE_SECONDS = 120.0  # how long a finished job waits for the queue to answer again
PRUNE_EVERY_SECONDS = 300.0  # how often a worker looks for dead consumers in the group
END_EVENT_PATIENCE_SECONDS = 300.0  # how long the end event of a run is retried while Redis does not answer


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    child_command: Sequence[str]  # runs one job: reads it as JSON on stdin (app/run/job.py)
    executor: str = "local"
    name: str = field(default_factory=default_worker_name)
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    stop_grace_seconds: float = 10.0
    forward_status: bool = False  # embedded mode: the child's status reaches this process over its pipe
    alive_file: Path | None = None  # renewed at every turn of the loop, for a liveness probe (`liveness`)

    @property
    def renew_seconds(self) -> float:
        return self.lease_seconds / 4


@dataclass
class _ChildEnd:
    returncode: int
    outcome: ExecutionOutcome | None
    cancelled: bool = False
    lost: bool = False
    claim: Claim | None = None  # the claim as it ended (re-established when the queue had lost the job)


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        records: RecordStore,
        status: StatusBackend,
        config: WorkerConfig,
        executor_check: Callable[[], ExecutorHealth],
    ) -> None:
        self.queue, self.records, self.status, self.config = queue, records, status, config
        self.executor_check = executor_check
        self.stopping = threading.Event()
        self._health = ExecutorHealth(False, "not checked yet")
        self._health_checked = 0.0
        self._current = ""
        self._queue_down_since: float | None = None
        self._alive = AliveMarker(config.alive_file) if config.alive_file else None

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Take and run jobs until `stop()`; a queue outage is waited out, never fatal."""
        log.info(
            "worker %s: taking jobs from %s (executor %s)", self.config.name, self.queue.where, self.config.executor
        )
        pause, pruned = 0.5, 0.0
        while not self.stopping.is_set():
            try:
                self._heartbeat()
                if time.monotonic() - pruned > PRUNE_EVERY_SECONDS:
                    pruned = time.monotonic()
                    for name in self.queue.forget_dead_consumers():
                        log.info("worker %s: forgot dead consumer %s", self.config.name, name)
                claim = self.queue.claim(self.config.name, self.config.poll_seconds)
                self._queue_up()
                pause = 0.5
            except JobQueueUnavailable as exc:
                self._queue_down(exc)
                self.stopping.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            if claim is None:
                continue
            try:
                self.process(claim)
            except Exception as exc:  # never the end of the worker: the job fails, saying why, and the next one runs
                log.exception("worker %s: run %s failed unexpectedly", self.config.name, claim.job.run_id)
                self._fail_unexpectedly(claim, exc)
        log.info("worker %s stopped", self.config.name)

    def stop(self) -> None:
        self.stopping.set()

    def _taken_over(self, claim: Claim) -> bool:
        try:
            return self.queue.renew(claim) == LOST
        except JobQueueUnavailable:
            return False  # cannot tell: the job is ended as this attempt saw it, and finish() checks again

    def _latest(self, job: Job) -> Job:
        try:
            return self.queue.get(job.run_id) or job
        except JobQueueUnavailable:
            return job

    def _fail_unexpectedly(self, claim: Claim, exc: Exception) -> None:
        error = f"the worker failed while running it: {type(exc).__name__}: {exc}"
        try:
            self._end(claim, FAILED, self._fail_record(claim.job, error, None))
        except Exception:  # the queue or the store is down too: the lease lapses and another attempt runs it
            log.exception("run %s: could not be ended as failed", claim.job.run_id)

    def process(self, claim: Claim) -> None:
        job = claim.job
        self._current = job.run_id
        try:
            log.info("run %s: attempt %d of %s", job.run_id, claim.attempt, job.request.source)
            if claim.exhausted:
                error = f"given up after {claim.attempt - 1} attempts: its worker died each time while running it"
                self._end(claim, FAILED, self._fail_record(job, error, "worker"))
                return
            if job.cancel_requested:
                self._end(claim, CANCELLED, self._fail_record(job, job.cancel_reason, None))
                return
            earlier = self._final_record(job.run_id)
            if earlier is not None:  # an earlier attempt finished, its worker died before saying so
                log.info("run %s already has a %s record; ending the job from it", job.run_id, earlier.status.state)
                succeeded = earlier.status.state == RECORD_SUCCEEDED
                stage = earlier.status.failed_stage or ("record" if succeeded else "run")
                self._ensure_run_end(job.run_id, stage, earlier.status.error or "", succeeded=succeeded)
                self._end(claim, _job_state(earlier), earlier.status.error or "")
                return
            try:
                end = self._run_child(claim)
            except OSError as exc:  # the job's process could not be started (fork, exec, fds, memory)
                error = f"the job's process could not be started: {type(exc).__name__}: {exc}"
                self._end(claim, FAILED, self._fail_record(job, error, None))
                return
            claim = end.claim or claim
            if end.lost or self._taken_over(claim):  # its new holder ends it: no record, no end event from here
                log.warning("run %s: another worker took the job over; this attempt stopped", job.run_id)
                return
            if self.stopping.is_set() and end.outcome is None and not end.cancelled:
                self._give_back(claim)
                return
            state, error = self._judge(job, end)
            self._end(claim, state, error)
        finally:
            self._current = ""

    # -- the child process -------------------------------------------------------------------------

    def _run_child(self, claim: Claim) -> _ChildEnd:
        job = claim.job
        read_end, write_end = os.pipe()
        env = {
            **os.environ,
            "EDGE_RUN_ID": job.run_id,
            PIPE_FD_VARIABLE: str(write_end),
            PARENT_PID_VARIABLE: str(os.getpid()),
            FORWARD_STATUS_VARIABLE: "1" if self.config.forward_status else "0",
            FENCE_VARIABLE: fence_token(claim.worker, claim.attempt),
        }
        try:
            child = subprocess.Popen(
                list(self.config.child_command),
                stdin=subprocess.PIPE,
                env=env,
                pass_fds=(write_end,),
                start_new_session=True,  # its own process group: a stop reaches the processes it starts too
                text=True,
            )
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        outcome: list[ExecutionOutcome | None] = [None]
        reader = threading.Thread(target=self._read_pipe, args=(read_end, outcome), daemon=True, name="job-pipe")
        reader.start()
        assert child.stdin is not None
        try:
            child.stdin.write(job.to_json())
            child.stdin.close()
        except BrokenPipeError:  # the child exited before reading its job: its exit code says why
            log.warning("run %s: its process exited before it read the job", job.run_id)
            with contextlib.suppress(OSError):
                child.stdin.close()
        end = self._watch(claim, child)
        reader.join(timeout=10)
        end.outcome = outcome[0]
        return end

    def _read_pipe(self, fd: int, outcome: list[ExecutionOutcome | None]) -> None:
        with os.fdopen(fd, "r") as stream:
            outcome[0] = read_messages(stream, self._republish)

    def _republish(self, event: StageEvent, progress: RunProgress | None) -> None:
        if self.config.forward_status and progress is not None:
            self.status.publish(event.with_id(""), progress)

    def _watch(self, claim: Claim, child: subprocess.Popen) -> _ChildEnd:
        """Wait for the child, renewing the lease; stop it on cancel, on a lost lease, or on shutdown.
        A job the queue lost (Redis restarted without its data) is written back, and the child goes on."""
        next_renewal = time.monotonic() + self.config.renew_seconds
        while True:
            try:
                returncode = child.wait(timeout=min(0.5, self.config.renew_seconds))
                return _ChildEnd(returncode, None, claim=claim)
            except subprocess.TimeoutExpired:
                pass
            if self.stopping.is_set():
                return _ChildEnd(self._stop_child(child), None, claim=claim)
            if time.monotonic() < next_renewal:
                continue
            next_renewal = time.monotonic() + self.config.renew_seconds
            try:
                self._heartbeat()
                lease = self.queue.renew(claim)
                if lease == VANISHED:
                    claim, lease = self.queue.reestablish(claim), OWNED
                self._queue_up()
            except JobQueueUnavailable as exc:
                self._queue_down(exc)  # the child goes on; the lease is checked again when the queue is back
                continue
            except JobQueueError as exc:  # another attempt holds it by now
                log.warning("run %s: %s", claim.job.run_id, exc)
                lease = LOST
            if lease == CANCEL:
                log.info("run %s: cancel requested; stopping its process", claim.job.run_id)
                return _ChildEnd(self._stop_child(child), None, cancelled=True, claim=claim)
            if lease == LOST:
                return _ChildEnd(self._stop_child(child), None, lost=True, claim=claim)

    def _stop_child(self, child: subprocess.Popen) -> int:
        """SIGTERM to the child's process group (the flyte executor terminates its execution), then SIGKILL."""
        _signal_group(child.pid, signal.SIGTERM)
        try:
            return child.wait(timeout=self.config.stop_grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(child.pid, signal.SIGKILL)
            return child.wait()

    # -- how a job ended ---------------------------------------------------------------------------

    def _judge(self, job: Job, end: _ChildEnd) -> tuple[str, str]:
        """(job state, error) from what the child said and the record it left."""
        if end.cancelled:  # the job as the queue holds it now: it names who cancelled it
            latest = self._latest(job)
            return CANCELLED, self._fail_record(latest, latest.cancel_reason, None)
        record = self._final_record(job.run_id)
        if end.outcome is not None and end.outcome.state == SUCCEEDED:
            if record is not None and record.status.state == RECORD_SUCCEEDED:
                self._ensure_run_end(job.run_id, "record", "", succeeded=True)
                return SUCCEEDED, ""
            return FAILED, self._fail_record(job, "the workflow ended without a succeeded deployment record", "record")
        if record is not None and record.status.state == RECORD_FAILED:
            self._ensure_run_end(job.run_id, record.status.failed_stage or "run", record.status.error or "")
            return FAILED, record.status.error or "failed"
        if end.outcome is not None:
            return FAILED, self._fail_record(job, end.outcome.error or "the run failed", None)
        return FAILED, self._fail_record(job, _describe_exit(end.returncode), None)

    def _fail_record(self, job: Job, error: str, stage: str | None) -> str:
        """Write the run's failed record (unless it already has a final one) and end its live status."""
        progress = self._progress(job.run_id)
        stage = stage or (progress.stage if progress and progress.stage else "queued")
        request = job.request
        source = ModelSource(
            request.repo or local_model_name(Path(request.local_dir)),
            request.ref if request.repo else request.local_dir,
            job.source_commit,
            request.prefix,
        )
        try:
            earlier = self.records.get(job.run_id)
            if earlier is None or earlier.status.state not in (RECORD_SUCCEEDED, RECORD_FAILED):
                record = DeploymentRecord.new(job.run_id, source)
                if earlier is not None:
                    record = record.updated(created_at=earlier.created_at)
                self.records.upsert(record.failed(stage, error))
        except RecordStoreError as exc:
            log.error("run %s: could not write its failed record (%s): %s", job.run_id, error, exc)
        self._ensure_run_end(job.run_id, stage, error)
        return error

    def _ensure_run_end(self, run_id: str, stage: str, error: str, succeeded: bool = False) -> None:
        """Followers of the run's events stop at its end event: publish one if nobody did (the child's
        own status may have lost it, e.g. while Redis restarted). Retried, with backoff, until it lands
        or END_EVENT_PATIENCE_SECONDS pass: a follower left without an end would wait for ever."""
        deadline, pause = time.monotonic() + END_EVENT_PATIENCE_SECONDS, 0.5
        while True:
            try:
                events = self.status.events(run_id)
                if events and events[-1].ends_run:
                    return
                tracker = RunTracker(self.status, run_id)
                tracker.current_stage = stage
                if succeeded:
                    tracker.succeeded()
                else:
                    tracker.failed(stage, error)
                return
            except Exception as exc:  # Redis down or restarting: the record already holds the outcome
                if time.monotonic() >= deadline or self.stopping.is_set():
                    log.error("run %s: could not publish its end to %s: %s", run_id, self.status.where, exc)
                    return
                log.warning("run %s: publishing its end to %s failed (%s); retrying", run_id, self.status.where, exc)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _final_record(self, run_id: str) -> DeploymentRecord | None:
        try:
            record = self.records.get(run_id)
        except RecordStoreError as exc:
            log.warning("run %s: cannot read its record from %s: %s", run_id, self.records.where, exc)
            return None
        return record if record is not None and record.status.state != "running" else None

    def _progress(self, run_id: str) -> RunProgress | None:
        try:
            return self.status.progress(run_id)
        except Exception as exc:  # best effort, as above
            log.warning("run %s: cannot read its progress from %s: %s", run_id, self.status.where, exc)
            return None

    def _end(self, claim: Claim, state: str, error: str) -> None:
        """Tell the queue the job ended, waiting out a queue outage for a while."""
        deadline, pause = time.monotonic() + FINISH_PATIENCE_SECONDS, 0.5
        while True:
            try:
                finished = self.queue.finish(claim, state, error)
                if not finished and self.queue.get(claim.job.run_id) is None:
                    # the queue lost the job while it ran (Redis restarted): write it back, then end it
                    claim = self.queue.reestablish(claim)
                    finished = self.queue.finish(claim, state, error)
                if finished:
                    log.info("run %s: %s%s", claim.job.run_id, state, f" ({error})" if error else "")
                else:
                    log.warning("run %s ended %s, but its lease had passed to another worker", claim.job.run_id, state)
                self._queue_up()
                return
            except JobQueueUnavailable as exc:
                self._queue_down(exc)
                if time.monotonic() >= deadline:
                    log.error(
                        "run %s ended %s but %s did not answer for %.0f s; the job stays pending and the next "
                        "worker ends it from its record",
                        claim.job.run_id,
                        state,
                        self.queue.where,
                        FINISH_PATIENCE_SECONDS,
                    )
                    return
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            except JobQueueError as exc:  # another attempt holds the job now: it ends it
                log.warning("run %s ended %s, but: %s", claim.job.run_id, state, exc)
                return

    def _give_back(self, claim: Claim) -> None:
        try:
            self.queue.release(claim)
            log.info("run %s: given back to the queue (worker shutting down)", claim.job.run_id)
        except JobQueueUnavailable as exc:
            log.warning("run %s: could not give it back (%s); its lease will run out instead", claim.job.run_id, exc)

    # -- health ------------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        if self._alive is not None:
            self._alive.mark()  # first: the loop turns, whether or not Redis answers
        now = time.monotonic()
        if now - self._health_checked >= EXECUTOR_CHECK_SECONDS or not self._health_checked:
            self._health_checked = now
            try:
                self._health = self.executor_check()
            except Exception as exc:  # a check must never stop the worker
                self._health = ExecutorHealth(False, f"{type(exc).__name__}: {exc}")
        info = WorkerInfo(self.config.name, self.config.executor, self._health.ok, self._health.detail, self._current)
        self.queue.heartbeat(info)

    def _queue_down(self, exc: JobQueueUnavailable) -> None:
        if self._queue_down_since is None:
            self._queue_down_since = time.monotonic()
            log.warning("worker %s: the queue does not answer (%s); waiting for it", self.config.name, exc)

    def _queue_up(self) -> None:
        if self._queue_down_since is not None:
            log.info(
                "worker %s: the queue answers again after %.1f s",
                self.config.name,
                time.monotonic() - self._queue_down_since,
            )
            self._queue_down_since = None


def _job_state(record: DeploymentRecord) -> str:
    return SUCCEEDED if record.status.state == RECORD_SUCCEEDED else FAILED


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (the kernel's OOM killer sends this when memory runs out)" if name == "SIGKILL" else ""
        return f"the job's process was killed by {name}{hint}"
    return f"the job's process exited with code {returncode} without saying how the run ended"


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
