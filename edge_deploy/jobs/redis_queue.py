"""The job queue on Redis Streams, with one consumer group that every worker reads through.

    edge-deploy:jobs                   stream   one entry per queued job: {run_id}
    edge-deploy:job:{run_id}           hash     the job (state, attempts, worker, request, ...)
    edge-deploy:deploying:{key}        string   run id of the active job of a model commit + targets
    edge-deploy:idempotency:{key}      hash     {run_id, fingerprint} of a request, kept a day
    edge-deploy:job-outcomes           hash     ended jobs per state (for metrics)
    edge-deploy:workers, :worker:{n}   zset/hash  worker heartbeats

A worker takes an entry with XREADGROUP; the entry stays in the group's pending list, owned by that
worker, until `finish` acknowledges and deletes it. While it runs the job the worker renews its
lease (XCLAIM to itself, which resets the entry's idle time); a worker that asks for work first
takes over any entry idle for longer than the lease (XAUTOCLAIM), which is how the job of a worker
that died is taken up again. Every state change is one Lua script, so two API processes or two
workers never see half of one. Acknowledged entries are deleted, so the stream's length is what is
queued plus what is running.

This needs one Redis primary (a Lua script reads job keys it computes), and Redis persistence (AOF)
if queued jobs must survive a Redis restart.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import redis

from edge_deploy.config import Secret
from edge_deploy.jobs.model import RUNNING, Job, JobFormatError, deployment_fingerprint, deployment_key
from edge_deploy.jobs.queue import (
    CANCEL,
    CREATED,
    DUPLICATE,
    LOST,
    OWNED,
    REPLAYED,
    VANISHED,
    Claim,
    DeploymentInProgress,
    IdempotencyKeyReused,
    JobAlreadyEnded,
    JobNotFound,
    JobQueueError,
    JobQueueUnavailable,
    QueueDepth,
    QuotaExceeded,
    ReplayedRunGone,
    Submission,
    WorkerInfo,
    queued_cancel_error,
)
from edge_deploy.records.model import utc_timestamp
from edge_deploy.status.redis_status import KEY_PREFIX, redis_client, redis_where

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM = f"{KEY_PREFIX}:jobs"
GROUP = "workers"
OUTCOMES = f"{KEY_PREFIX}:job-outcomes"
WORKERS = f"{KEY_PREFIX}:workers"
IDEMPOTENCY_SECONDS = 24 * 3600
ACTIVE_SECONDS = 7 * 24 * 3600  # only bounds a key whose job vanished; `finish` deletes it
DEAD_CONSUMER_SECONDS = 3600.0  # a consumer silent this long, holding nothing, is a worker that is gone
JOB_RETENTION_SECONDS = 30 * 24 * 3600  # an ended job is kept this long (the record stays for good)
RELEASED_IDLE_MS = 10 * 365 * 24 * 3600 * 1000  # "idle for years": any worker may take it at once

REDIS_FAILURES = (redis.RedisError, OSError)


def job_key(run_id: str) -> str:
    return f"{KEY_PREFIX}:job:{run_id}"


def active_key(deployment: str) -> str:
    return f"{KEY_PREFIX}:deploying:{deployment}"


def idempotency_key(key: str) -> str:
    return f"{KEY_PREFIX}:idempotency:{key}"


def caller_key(principal: str) -> str:
    """The set of a caller's queued and running run ids (for its quota); hashed, as names are free text."""
    return f"{KEY_PREFIX}:caller-runs:{hashlib.sha256(principal.encode()).hexdigest()[:32]}"


def worker_key(name: str) -> str:
    return f"{KEY_PREFIX}:worker:{name}"


_UNLOCK = """
local function unlock(job)
  local h = redis.call('HMGET', job, 'active_key', 'run_id', 'caller_key')
  if h[1] and redis.call('GET', h[1]) == h[2] then redis.call('DEL', h[1]) end
  if h[3] then redis.call('SREM', h[3], h[2]) end
end
"""

# Deletes a deployment marker only if it still names the run (another submit may have replaced it).
_DROP_MARKER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SUBMIT = """
local idem, active, job, stream, caller = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local use_idem, request_fp, deploy_fp, run_id, job_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local idem_ttl, active_ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local function remember(existing)
  if use_idem == '1' then
    redis.call('HSET', idem, 'run_id', existing, 'fingerprint', request_fp)
    redis.call('EXPIRE', idem, idem_ttl)
  end
end
if use_idem == '1' then
  local seen = redis.call('HMGET', idem, 'run_id', 'fingerprint')
  if seen[1] then
    if seen[2] ~= request_fp then return {'reused', seen[1]} end
    return {'replayed', seen[1]}
  end
end
local current = redis.call('GET', active)
if current then
  local other = redis.call('HMGET', job_prefix .. current, 'state', 'deployment')
  if other[1] == 'queued' or other[1] == 'running' then
    if other[2] ~= deploy_fp then return {'in-progress', current} end
    remember(current)
    return {'duplicate', current}
  end
end
local max_active = tonumber(ARGV[8])
if max_active > 0 then  -- the caller's queued and running runs; ended or vanished ones are dropped
  local live = 0
  for _, id in ipairs(redis.call('SMEMBERS', caller)) do
    local state = redis.call('HGET', job_prefix .. id, 'state')
    if state == 'queued' or state == 'running' then live = live + 1 else redis.call('SREM', caller, id) end
  end
  if live >= max_active then return {'quota', tostring(live)} end
end
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', job, unpack(fields))
local entry = redis.call('XADD', stream, '*', 'run_id', run_id)
redis.call('HSET', job, 'deployment', deploy_fp, 'active_key', active, 'entry', entry, 'caller_key', caller)
redis.call('SET', active, run_id, 'EX', active_ttl)
redis.call('SADD', caller, run_id)
redis.call('EXPIRE', caller, active_ttl)
remember(run_id)
return {'created', run_id}
"""

_CLAIM = """
local job, stream = KEYS[1], KEYS[2]
local group, entry, worker, now, max_attempts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local state = redis.call('HGET', job, 'state')
if state ~= 'queued' and state ~= 'running' then
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
  return {'skip', state or 'missing'}
end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'state', 'running', 'worker', worker, 'started_at', now, 'entry', entry)
if attempts > max_attempts then return {'exhausted', tostring(attempts)} end
return {'started', tostring(attempts)}
"""

# The lease is ours while the pending entry and the job both name this worker and this attempt.
_OWNED = """
local function owned(stream, job, group, entry, worker, attempt)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  if #p == 0 or p[1][2] ~= worker then return nil end
  local h = redis.call('HMGET', job, 'worker', 'attempts', 'cancel')
  if h[1] ~= worker or h[2] ~= attempt then return nil end
  return h
end
"""

# Renewal tells a takeover (the job names another worker or attempt, or another worker holds the
# entry) from a loss (no job, or no entry and no group: Redis restarted without its data).
_RENEW = """
local stream, job, group, entry, worker, attempt = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local h = redis.call('HMGET', job, 'worker', 'attempts', 'cancel', 'state')
if not h[4] then return 'vanished' end
if h[1] ~= worker or h[2] ~= attempt or h[4] ~= 'running' then return 'lost' end
local p = redis.pcall('XPENDING', stream, group, entry, entry, 1)
if type(p) == 'table' and p.err then return 'vanished' end
if #p == 0 then return 'vanished' end
if p[1][2] ~= worker then return 'lost' end
redis.call('XCLAIM', stream, group, worker, 0, entry, 'JUSTID')
if h[3] == '1' then return 'cancel' end
return 'owned'
"""

# Writes a vanished job back from the worker's own copy (unless another attempt holds it by now),
# with a new stream entry forced into this worker's pending list, so that it is taken over if this
# worker dies too; and the deployment's marker and the caller's quota entry with it.
_REESTABLISH = """
local stream, job, active, caller = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, worker, attempt, run_id, active_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = redis.call('HMGET', job, 'worker', 'attempts', 'state')
if h[3] and (h[1] ~= worker or h[2] ~= attempt or h[3] ~= 'running') then return {'lost', ''} end
if not h[3] then
  local fields = {}
  for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', job, unpack(fields))
end
local entry = redis.call('XADD', stream, '*', 'run_id', run_id)
redis.call('XCLAIM', stream, group, worker, 0, entry, 'FORCE', 'JUSTID')
redis.call('HSET', job, 'entry', entry, 'active_key', active, 'caller_key', caller)
redis.call('SET', active, run_id, 'EX', active_ttl, 'NX')
redis.call('SADD', caller, run_id)
return {'owned', entry}
"""

_RELEASE = (
    _OWNED
    + """
local h = owned(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if not h then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[5], 'JUSTID')
redis.call('HINCRBY', KEYS[2], 'attempts', -1)
redis.call('HSET', KEYS[2], 'state', 'queued', 'worker', '')
return 1
"""
)

_FINISH = (
    _UNLOCK
    + """
local stream, job, outcomes = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', job, 'worker', 'attempts', 'state')
if h[1] ~= ARGV[3] or h[2] ~= ARGV[4] or h[3] ~= 'running' then return 0 end
redis.call('HSET', job, 'state', ARGV[5], 'error', ARGV[6], 'ended_at', ARGV[7])
redis.call('EXPIRE', job, tonumber(ARGV[8]))
redis.call('XACK', stream, ARGV[1], ARGV[2])
redis.call('XDEL', stream, ARGV[2])
unlock(job)
redis.call('HINCRBY', outcomes, ARGV[5], 1)
return 1
"""
)

_CANCEL = (
    _UNLOCK
    + """
local job, stream, outcomes = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', job, 'state', 'entry')
if not h[1] then return 'missing' end
if h[1] == 'queued' then
  redis.call('HSET', job, 'state', 'cancelled', 'cancel', '1', 'ended_at', ARGV[1], 'cancelled_by', ARGV[3])
  redis.call('HSET', job, 'error', ARGV[4])
  redis.call('EXPIRE', job, tonumber(ARGV[2]))
  if h[2] then redis.call('XDEL', stream, h[2]) end
  unlock(job)
  redis.call('HINCRBY', outcomes, 'cancelled', 1)
  return 'cancelled'
end
if h[1] == 'running' then
  redis.call('HSET', job, 'cancel', '1', 'cancelled_by', ARGV[3])
  return 'cancelling'
end
return 'ended'
"""
)


class RedisJobQueue:
    def __init__(
        self, client: redis.Redis, where: str = "Redis", lease_seconds: float = 60.0, max_attempts: int = 3
    ) -> None:
        self.client, self.where = client, where
        self.lease_ms, self.max_attempts = int(lease_seconds * 1000), max_attempts
        self._submit = client.register_script(_SUBMIT)
        self._drop_marker = client.register_script(_DROP_MARKER)
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._reestablish = client.register_script(_REESTABLISH)
        self._release = client.register_script(_RELEASE)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._group_ready = False

    @classmethod
    def from_url(cls, url: Secret | str, lease_seconds: float = 60.0, max_attempts: int = 3) -> RedisJobQueue:
        return cls(redis_client(url), redis_where(url), lease_seconds, max_attempts)

    # -- the API's side ---------------------------------------------------------------------------

    def submit(
        self,
        job: Job,
        deployment_key: str,
        deployment_fingerprint: str,
        idempotency_key_: str | None,
        max_active: int = 0,
        retried: bool = False,
    ) -> Submission:
        fields = [item for pair in job.to_fields().items() for item in pair]
        argv = [
            "1" if idempotency_key_ else "0",
            job.request.request_fingerprint(),
            deployment_fingerprint,
            job.run_id,
            job_key(""),
            IDEMPOTENCY_SECONDS,
            ACTIVE_SECONDS,
            max_active,
            *fields,
        ]
        keys = [
            idempotency_key(idempotency_key_ or "-"),
            active_key(deployment_key),
            job_key(job.run_id),
            STREAM,
            caller_key(job.principal),
        ]
        outcome, run_id = self._call("queue the job", lambda: self._submit(keys=keys, args=argv))
        if outcome == "quota":
            raise QuotaExceeded(job.principal, int(run_id), max_active)
        if outcome == "reused":
            raise IdempotencyKeyReused(run_id)
        if outcome == "in-progress":
            raise DeploymentInProgress(run_id)
        if outcome == CREATED:
            return Submission(job, CREATED)
        existing = self.get(run_id)
        if existing is not None:
            return Submission(existing, REPLAYED if outcome == "replayed" else DUPLICATE)
        # expired or evicted while its idempotency key or deployment marker was kept
        if outcome == "replayed" or retried:
            raise ReplayedRunGone(run_id)
        # a marker of a job that is gone guards nothing: drop it (only if it still names that run)
        marker = active_key(deployment_key)
        self._call("drop a stale deployment marker", lambda: self._drop_marker(keys=[marker], args=[run_id]))
        return self.submit(job, deployment_key, deployment_fingerprint, idempotency_key_, max_active, retried=True)

    def replayed(self, idempotency_key_: str, request_fingerprint: str) -> Job | None:
        seen = self._call(
            "read the idempotency key",
            lambda: self.client.hmget(idempotency_key(idempotency_key_), "run_id", "fingerprint"),
        )
        run_id, fingerprint = seen
        if run_id is None:
            return None
        if fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(run_id)
        job = self.get(run_id)
        if job is None:
            raise ReplayedRunGone(run_id)
        return job

    def get(self, run_id: str) -> Job | None:
        fields = self._call(f"read job {run_id}", lambda: self.client.hgetall(job_key(run_id)))
        return Job.from_fields(fields) if fields else None

    def request_cancel(self, run_id: str, by: str = "") -> Job:
        args = [utc_timestamp(), JOB_RETENTION_SECONDS, by, queued_cancel_error(by)]
        answer = self._call(
            f"cancel run {run_id}", lambda: self._cancel(keys=[job_key(run_id), STREAM, OUTCOMES], args=args)
        )
        job = self.get(run_id)
        if answer == "missing" or job is None:
            raise JobNotFound(f"no run {run_id!r}")
        if answer == "ended":
            raise JobAlreadyEnded(job)
        return job

    def depth(self) -> QueueDepth:
        def read() -> QueueDepth:
            self._ensure_group()
            with self.client.pipeline(transaction=False) as pipe:
                pipe.xlen(STREAM)
                pipe.xpending(STREAM, GROUP)
                length, pending = pipe.execute()
            running = int(pending["pending"])
            return QueueDepth(queued=max(0, int(length) - running), running=running)

        return self._call("read the queue depth", read)

    def outcomes(self) -> dict[str, int]:
        counts = self._call("read job outcomes", lambda: self.client.hgetall(OUTCOMES))
        return {state: int(count) for state, count in counts.items()}

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    def live_workers(self) -> list[WorkerInfo]:
        def read() -> list[WorkerInfo]:
            now = time.time()
            names = self.client.zrangebyscore(WORKERS, now - self._worker_ttl(), "+inf")
            infos = []
            for name in names:
                fields = self.client.hgetall(worker_key(name))
                if fields:
                    infos.append(_worker_info(name, fields))
            return infos

        return self._call("read worker heartbeats", read)

    # -- a worker's side --------------------------------------------------------------------------

    def claim(self, worker: str, block_seconds: float) -> Claim | None:
        def take() -> tuple[str, dict[str, str]] | None:
            self._ensure_group()
            # First the jobs of workers that stopped renewing their lease, then new ones.
            _next, entries, _deleted = self.client.xautoclaim(STREAM, GROUP, worker, self.lease_ms, "0-0", count=1)
            if entries:
                log.warning("taking over job entry %s: its worker stopped renewing its lease", entries[0][0])
                return entries[0]
            answer = self.client.xreadgroup(GROUP, worker, {STREAM: ">"}, count=1, block=int(block_seconds * 1000))
            return answer[0][1][0] if answer and answer[0][1] else None

        entry = self._call("take a job", take)
        if entry is None:
            return None
        entry_id, fields = entry
        run_id = (fields or {}).get("run_id", "")
        outcome, detail = self._call(
            f"start job {run_id}",
            lambda: self._claim(
                keys=[job_key(run_id), STREAM], args=[GROUP, entry_id, worker, utc_timestamp(), self.max_attempts]
            ),
        )
        if outcome == "skip":
            log.info("job entry %s (run %s) skipped: it is %s", entry_id, run_id or "?", detail)
            return None
        job = self.get(run_id)
        if job is None:
            return None
        return Claim(job, int(detail), worker, entry_id, exhausted=outcome == "exhausted")

    def renew(self, claim: Claim) -> str:
        answer = self._call(
            f"renew the lease on run {claim.job.run_id}",
            lambda: self._renew(
                keys=[STREAM, job_key(claim.job.run_id)], args=[GROUP, claim.entry_id, claim.worker, claim.attempt]
            ),
        )
        return {"owned": OWNED, "cancel": CANCEL, "vanished": VANISHED}.get(answer, LOST)

    def reestablish(self, claim: Claim) -> Claim:
        job = claim.job.updated(state=RUNNING, worker=claim.worker, attempts=claim.attempt)
        fields = [item for pair in job.to_fields().items() for item in pair]
        fields += ["deployment", deployment_fingerprint(job.request, job.source_commit)]
        keys = [
            STREAM,
            job_key(job.run_id),
            active_key(deployment_key(job.request, job.source_commit)),
            caller_key(job.principal),
        ]
        args = [GROUP, claim.worker, claim.attempt, job.run_id, ACTIVE_SECONDS, *fields]

        def write_back() -> list[str]:
            self._group_ready = False  # the group may be gone with the rest
            self._ensure_group()
            return self._reestablish(keys=keys, args=args)

        outcome, entry = self._call(f"re-establish run {job.run_id}", write_back)
        if outcome != "owned":
            raise JobQueueError(f"run {job.run_id} is held by another attempt now")
        log.warning(
            "run %s: the queue had lost its job (Redis restarted?); written back as attempt %d of %s",
            job.run_id,
            claim.attempt,
            claim.worker,
        )
        return replace(claim, entry_id=entry)

    def release(self, claim: Claim) -> None:
        self._call(
            f"give back run {claim.job.run_id}",
            lambda: self._release(
                keys=[STREAM, job_key(claim.job.run_id)],
                args=[GROUP, claim.entry_id, claim.worker, claim.attempt, RELEASED_IDLE_MS],
            ),
        )

    def finish(self, claim: Claim, state: str, error: str = "") -> bool:
        args = [
            GROUP,
            claim.entry_id,
            claim.worker,
            claim.attempt,
            state,
            error,
            utc_timestamp(),
            JOB_RETENTION_SECONDS,
        ]
        done = self._call(
            f"end run {claim.job.run_id}",
            lambda: self._finish(keys=[STREAM, job_key(claim.job.run_id), OUTCOMES], args=args),
        )
        return bool(done)

    def heartbeat(self, info: WorkerInfo) -> None:
        def write() -> None:
            now = time.time()
            with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(WORKERS, {info.name: now})
                pipe.hset(
                    worker_key(info.name),
                    mapping={
                        "executor": info.executor,
                        "executor_ok": "1" if info.executor_ok else "0",
                        "executor_detail": info.executor_detail,
                        "run_id": info.run_id,
                        "seen_at": repr(now),
                    },
                )
                pipe.expire(worker_key(info.name), int(self._worker_ttl()) + 1)
                pipe.zremrangebyscore(WORKERS, "-inf", now - 24 * 3600)
                pipe.execute()

        self._call("write the worker heartbeat", write)

    def forget_dead_consumers(self, after_seconds: float = DEAD_CONSUMER_SECONDS) -> list[str]:
        """Remove from the consumer group the workers gone for `after_seconds` that hold no entry
        (their entries were taken over): the group would otherwise list every worker that ever ran."""

        def prune() -> list[str]:
            self._ensure_group()
            horizon = time.time() - after_seconds
            seen = {name: score for name, score in self.client.zrange(WORKERS, 0, -1, withscores=True)}
            gone = [
                consumer["name"]
                for consumer in self.client.xinfo_consumers(STREAM, GROUP)
                if consumer["pending"] == 0
                and consumer["idle"] > after_seconds * 1000
                and seen.get(consumer["name"], 0) < horizon
            ]
            for name in gone:
                self.client.xgroup_delconsumer(STREAM, GROUP, name)
            return gone

        return self._call("forget dead consumers", prune)

    def close(self) -> None:
        self.client.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _worker_ttl(self) -> float:
        return max(3 * self.lease_ms / 1000, 10.0)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted without its data: make the group again next time
                self._group_ready = False
            raise JobQueueUnavailable(f"{what}: {self.where}: {exc}") from None
        except REDIS_FAILURES as exc:
            raise JobQueueUnavailable(f"{what}: {self.where} unreachable ({type(exc).__name__}: {exc})") from None
        except JobFormatError:
            raise


def _worker_info(name: str, fields: dict[str, str]) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        executor=fields.get("executor", ""),
        executor_ok=fields.get("executor_ok") == "1",
        executor_detail=fields.get("executor_detail", ""),
        run_id=fields.get("run_id", ""),
        seen_at=float(fields.get("seen_at") or 0),
    )
