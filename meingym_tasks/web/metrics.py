"""``/metrics``: the registry and the brokers in Prometheus' text format (prometheus-client).

Gauges are read at scrape time: jobs per queue, name and state; queue depth in
the broker; consumers alive and their workers. Job durations are a real
histogram (monotonic counters, as Prometheus expects): each scrape observes
the jobs that finished since the previous one, read from the registry with a
short lag, because consumers write their transitions a moment late. The
histogram therefore counts what finished while this web process was up; a
restart is a counter reset, which ``rate()`` handles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meingym_tasks.access import throttle
from meingym_tasks.names import QUEUES
from meingym_tasks.queue.queues import ALL_QUEUES
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.web import queries

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
#: Finished jobs younger than this are observed at a later scrape (buffered transitions, clock skew).
DEFAULT_LAG = timedelta(seconds=10)


class RegistryCollector(Collector):
    """Gauges computed from the registry and the brokers at each scrape."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric names without values: registering the collector must not query anything."""
        yield GaugeMetricFamily("meingym_jobs", "", labels=["queue", "name", "state"])
        yield GaugeMetricFamily("meingym_queue_depth", "", labels=["queue", "kind"])
        yield GaugeMetricFamily("meingym_consumers_alive", "", labels=["queue"])
        yield GaugeMetricFamily("meingym_consumer_workers", "", labels=["queue"])
        yield GaugeMetricFamily("meingym_auth_locked", "", labels=["kind"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "meingym_jobs", "Job records in the registry by queue, name and state", labels=["queue", "name", "state"]
        )
        for queue, name, state, number in queries.counts_by_name():
            jobs.add_metric([queue, name, state], number)
        yield jobs

        depth = GaugeMetricFamily(
            "meingym_queue_depth",
            "Jobs waiting in the broker: pending (ready to run) and scheduled (delayed, ETA or retry)",
            labels=["queue", "kind"],
        )
        for name, queue in ALL_QUEUES.items():
            depth.add_metric([name, "pending"], queue.pending_count())
            depth.add_metric([name, "scheduled"], queue.scheduled_count())
        yield depth

        consumers = registry_queries.consumers_alive()
        alive = GaugeMetricFamily("meingym_consumers_alive", "Consumers with a recent heartbeat", labels=["queue"])
        workers = GaugeMetricFamily(
            "meingym_consumer_workers", "Worker threads or processes of the live consumers", labels=["queue"]
        )
        for name in QUEUES:
            mine = [c for c in consumers if c["queue"] == name]
            alive.add_metric([name], len(mine))
            workers.add_metric([name], sum(c["workers"] for c in mine))
        yield alive
        yield workers

        locked = GaugeMetricFamily(
            "meingym_auth_locked",
            "Client addresses and token names locked out after failed authentication (all web workers)",
            labels=["kind"],
        )
        for kind, number in throttle.locked().items():
            locked.add_metric([kind], number)
        yield locked


class Metrics:
    """One Prometheus registry per app (so several apps in one process do not clash)."""

    def __init__(self, lag: timedelta = DEFAULT_LAG) -> None:
        self.lag = lag
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(RegistryCollector())
        self.durations = Histogram(
            "meingym_job_duration_seconds",
            "Run time of the last attempt of jobs that completed or failed, observed since this process started",
            ["queue", "name", "state"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "meingym_auth_failures",
            "Failed authentication attempts seen by this process, by way in (bearer, login)",
            ["via"],
            registry=self.registry,
        )
        self.auth_lockouts = Counter(
            "meingym_auth_lockouts",
            "Lockouts started by this process, by what was locked (address, token)",
            ["kind"],
            registry=self.registry,
        )
        for via in ("bearer", "login"):
            self.auth_failures.labels(via)
        for kind in (throttle.ADDRESS, throttle.TOKEN):
            self.auth_lockouts.labels(kind)
        self._lock = threading.Lock()
        self._mark = registry_queries.utcnow() - lag

    def auth_failed(self, via: str, lockouts: list[str]) -> None:
        """Count a failed authentication (``via``: bearer or login) and the lockouts it started."""
        self.auth_failures.labels(via).inc()
        for kind in lockouts:
            self.auth_lockouts.labels(kind).inc()

    def render(self) -> bytes:
        """Observe newly finished jobs, then the whole registry in the text format (call inside a connection)."""
        with self._lock:
            until = registry_queries.utcnow() - self.lag
            if until > self._mark:
                for queue, name, state, seconds in queries.finished_between(self._mark, until):
                    self.durations.labels(queue, name, state).observe(seconds)
                self._mark = until
            return generate_latest(self.registry)
