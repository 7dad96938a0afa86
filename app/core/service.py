"""The service's parts, opened once per process from the settings, and closed with it.

Where each part lives depends on the environment:

| REDIS_URL | queue                     | live status and events     | worker                         |
|-----------|---------------------------|----------------------------|--------------------------------|
| set       | Redis Streams             | Redis (hash + stream)      | `edge-deploy worker` processes |
| unset     | in this process           | in this process            | one thread of `serve` itself   |

Records are in MongoDB when MONGODB_URI is set, else in the SQLite file in EDGE_WORK_DIR. With
neither variable, `edge-deploy serve` alone is a working service (the embedded default). The API
reads status straight from Redis (a Redis outage is a 503, not an empty answer); only job processes
use the best-effort status of the library.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from app.api.events import EventFeed, InProcessEventFeed, RedisEventFeed
from app.core.auth import Authenticator
from app.core.config import ServiceSettings
from app.core.metrics import ServiceMetrics
from app.run.executors import JOB_COMMAND, executor_health
from edge_deploy.jobs.memory_queue import InProcessJobQueue
from edge_deploy.jobs.queue import JobQueue
from edge_deploy.jobs.redis_queue import RedisJobQueue
from edge_deploy.jobs.worker import Worker, WorkerConfig
from edge_deploy.platforms import PlatformMatrix
from edge_deploy.records import RecordStore, open_record_store
from edge_deploy.retry import RetryPolicy
from edge_deploy.status import PROCESS_STATUS, StatusBackend
from edge_deploy.status.redis_status import RedisStatus
from edge_deploy.storage import LakeFSStore

log = logging.getLogger(__name__)

# A request waits for lakeFS a few seconds at most; a worker retries longer.
LAKEFS_REQUEST_RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=0.5)


def open_queue(settings: ServiceSettings) -> JobQueue:
    if settings.base.redis_url is None:
        return InProcessJobQueue(settings.max_attempts)
    return RedisJobQueue.from_url(settings.base.redis_url, settings.lease_seconds, settings.max_attempts)


def open_status(settings: ServiceSettings) -> StatusBackend:
    if settings.base.redis_url is None:
        return PROCESS_STATUS
    return RedisStatus.from_url(settings.base.redis_url)


@dataclass
class Service:
    settings: ServiceSettings
    queue: JobQueue
    records: RecordStore
    status: StatusBackend
    feed: EventFeed
    auth: Authenticator
    metrics: ServiceMetrics
    matrix: PlatformMatrix
    lakefs: LakeFSStore | None = None
    worker: Worker | None = None
    _worker_thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: ServiceSettings) -> Service:
        queue = open_queue(settings)
        redis_url = settings.base.redis_url
        lakefs = None
        if settings.base.lakefs_endpoint:
            lakefs = LakeFSStore(settings.base.require_lakefs(), retry=LAKEFS_REQUEST_RETRY, timeout=10.0)
        service = cls(
            settings=settings,
            queue=queue,
            records=open_record_store(settings.base),
            status=open_status(settings),
            feed=RedisEventFeed(redis_url) if redis_url else InProcessEventFeed(PROCESS_STATUS),
            auth=Authenticator.from_settings(settings),
            metrics=ServiceMetrics(queue),
            matrix=PlatformMatrix.load(),
            lakefs=lakefs,
        )
        log.info(
            "deployment service: queue %s, records %s, status %s, executor %s, auth %s",
            queue.where,
            service.records.where,
            service.status.where,
            settings.executor,
            "configured" if service.auth.configured else "none (loopback only)",
        )
        return service

    @property
    def runs_worker(self) -> bool:
        """Without Redis the queue lives in this process, so this process runs its worker."""
        return isinstance(self.queue, InProcessJobQueue)

    def start_worker(self) -> None:
        config = WorkerConfig(
            child_command=JOB_COMMAND,
            executor=self.settings.executor,
            lease_seconds=self.settings.lease_seconds,
            forward_status=True,
        )
        self.worker = Worker(self.queue, self.records, self.status, config, lambda: executor_health(self.settings))
        self._worker_thread = threading.Thread(target=self.worker.run, name="embedded-worker", daemon=True)
        self._worker_thread.start()

    def close(self) -> None:
        if self.worker is not None and self._worker_thread is not None:
            self.worker.stop()
            self._worker_thread.join(timeout=self.worker.config.stop_grace_seconds + 5)
        self.queue.close()
        self.records.close()
