"""Prometheus metrics of the service: requests and latencies per route, queue depth, workers, run outcomes.

Request metrics are this process's own. The queue's figures (jobs queued and running, live workers,
jobs ended per outcome) are read from the queue when /metrics is scraped, so every API replica
reports the same cluster-wide values: aggregate them with max(), not sum().
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge_deploy.jobs.model import ENDED_STATES
from edge_deploy.jobs.queue import JobQueue, JobQueueUnavailable

log = logging.getLogger(__name__)

# Label values come from a closed set, so no caller can add series: any other method is `other`,
# and a path is its route's template (or `unmatched`).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class QueueCollector:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def describe(self) -> list[Metric]:
        return []  # nothing at registration: the queue is read only when scraped

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("edge_deploy_queue_up", "1 if the job queue answered this scrape")
        try:
            depth, outcomes, workers = self.queue.depth(), self.queue.outcomes(), self.queue.live_workers()
        except JobQueueUnavailable as exc:
            log.warning("metrics: the job queue does not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("edge_deploy_queue_jobs", "Jobs in the queue, by state", labels=["state"])
        jobs.add_metric(["queued"], depth.queued)
        jobs.add_metric(["running"], depth.running)
        yield jobs
        runs = CounterMetricFamily("edge_deploy_runs", "Jobs that ended, by outcome", labels=["outcome"])
        for outcome in ENDED_STATES:
            runs.add_metric([outcome], outcomes.get(outcome, 0))
        yield runs
        live = GaugeMetricFamily("edge_deploy_workers", "Workers with a fresh heartbeat", labels=["executor_ok"])
        live.add_metric(["true"], sum(1 for worker in workers if worker.executor_ok))
        live.add_metric(["false"], sum(1 for worker in workers if not worker.executor_ok))
        yield live


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue: JobQueue) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edge_deploy_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edge_deploy_http_request_duration_seconds",
            "Time to answer an HTTP request (for event streams: how long the stream stayed open)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(QueueCollector(queue))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
