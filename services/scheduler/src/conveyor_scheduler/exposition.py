"""Prometheus `/metrics` of one scheduler replica, served from a thread beside the event loop.

Three parts, one private `CollectorRegistry`:

- the OpenTelemetry instruments of `telemetry.py` (submitted, completed, retried, leases,
  workers, per-replica queue depth: all observable, read at scrape time), through an OTel
  `PrometheusMetricReader` on a meter provider of the endpoint's own. OTLP export, when OTEL_*
  asks for it, runs on the global provider `configure_from_env` installed, beside this one.
- `conveyor_scheduler_beat_leader{replica}`: 1 on the replica that holds the beat lease.
- `conveyor_fleet_*`: gauges of the whole fleet read from Redis at scrape time, including the
  queue wait and run time percentiles of the activity buckets the scripts keep (which replace
  a per-replica wait histogram: no per-task cost here at all). Only the beat leader exports
  them, so `sum()` over every replica's scrape counts each queue once.

Everything here runs on the HTTP server's threads, never on the event loop, so Redis is read
with a synchronous client of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor_scheduler.keys import WORKERS_INDEX, worker_key
from conveyor_scheduler.queue_stats import SyncQueueReader
from conveyor_scheduler.redis_clients import SyncRedis, sync_client

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from opentelemetry.metrics import Meter
    from opentelemetry.sdk.metrics import MeterProvider

log = logging.getLogger(__name__)

ACTIVITY_MINUTES = 5
"""The window of the wait and run time gauges."""
MAX_QUEUES_PER_SCRAPE = 1_000
"""Most queues one scrape reads; `conveyor_fleet_queues` still counts them all."""
REDIS_TIMEOUT_S = 2.0
SERVICE_NAME = "conveyor-scheduler"


class MetricsPortError(Exception):
    """The metrics port cannot be bound (in use, or not allowed)."""


class FleetSource(Protocol):
    """One group of fleet-wide gauges read from Redis: add one to `FleetCollector.sources`."""

    def collect(self, client: SyncRedis) -> Iterable[Metric]: ...


class QueueDepth:
    """Per queue: tasks by state, queued tasks per priority, the oldest queued task's wait,
    paused or not, and the p50/p95 queue wait and run time of the last 5 minutes. Read as
    ListQueues reads them (queue_stats.SyncQueueReader), so both always agree."""

    def __init__(self, max_queues: int = MAX_QUEUES_PER_SCRAPE, clock: Callable[[], float] = time.time) -> None:
        self.max_queues = max_queues
        self.clock = clock
        self._reader: SyncQueueReader | None = None

    def collect(self, client: SyncRedis) -> Iterable[Metric]:
        if self._reader is None or self._reader.client is not client:
            self._reader = SyncQueueReader(client)
        queues, total = self._reader.queues(self.max_queues)
        now_ms = int(self.clock() * 1000)
        readings = self._reader.read(queues, now_ms, minutes=ACTIVITY_MINUTES)
        count = GaugeMetricFamily("conveyor_fleet_queues", "Queues in the registry (a scrape reads at most "
                                  f"{self.max_queues} of them).", value=total)
        tasks = GaugeMetricFamily("conveyor_fleet_queue_tasks", "Tasks per queue and state (queued, scheduled, "
                                  "active: leased; dead: dead letters).", labels=["queue", "state"])
        ready = GaugeMetricFamily("conveyor_fleet_queue_ready_tasks", "Queued tasks per queue and priority "
                                  "(priorities with none are left out).", labels=["queue", "priority"])
        oldest = GaugeMetricFamily("conveyor_fleet_queue_oldest_age_seconds", "How long the longest-waiting queued "
                                   "task has been ready, per queue with queued tasks.", labels=["queue"])
        paused = GaugeMetricFamily("conveyor_fleet_queue_paused", "1 while the queue is paused (PauseQueue).",
                                   labels=["queue"])
        wait = GaugeMetricFamily("conveyor_fleet_queue_wait_seconds", f"Queue wait (ready to leased) of the attempts "
                                 f"started in the last {ACTIVITY_MINUTES} minutes, by quantile.",
                                 labels=["queue", "quantile"])
        run = GaugeMetricFamily("conveyor_fleet_queue_run_seconds", f"Run time (lease to ack) of the attempts "
                                f"that ended in the last {ACTIVITY_MINUTES} minutes, by quantile.",
                                labels=["queue", "quantile"])
        for queue, (depth, activity) in zip(queues, readings, strict=True):
            for p, n in enumerate(depth.by_priority):
                if n:
                    ready.add_metric([queue, str(p)], n)
            for state, value in (("queued", depth.queued), ("scheduled", depth.scheduled), ("active", depth.active),
                                 ("dead", depth.dead)):
                tasks.add_metric([queue, state], value)
            if depth.oldest_ready_ms is not None:
                oldest.add_metric([queue], max(0.0, (now_ms - depth.oldest_ready_ms) / 1000))
            paused.add_metric([queue], 1 if depth.paused else 0)
            assert activity is not None
            for family, p50, p95 in ((wait, activity.wait_p50, activity.wait_p95),
                                     (run, activity.run_p50, activity.run_p95)):
                for quantile, d in (("0.5", p50), ("0.95", p95)):
                    if d.seconds or d.nanos:
                        family.add_metric([queue, quantile], d.ToNanoseconds() / 1e9)
        return (count, tasks, ready, oldest, paused, wait, run)


class WorkersOnline:
    """Workers in the registry (connected, not lapsed) and the tasks they report running."""

    def __init__(self, max_workers: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.max_workers = max_workers
        self.clock = clock

    def collect(self, client: SyncRedis) -> Iterable[Metric]:
        now_ms = int(self.clock() * 1000)
        ids = client.zrangebyscore(WORKERS_INDEX, now_ms, "+inf", start=0, num=self.max_workers)
        pipe = client.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hget(worker_key(worker_id.decode()), "at")
        running = pipe.execute() if ids else []
        online = GaugeMetricFamily("conveyor_fleet_workers_online", "Workers connected to any replica (the "
                                   "registry's live entries).", value=len(ids))
        in_flight = GaugeMetricFamily("conveyor_fleet_tasks_in_flight", "Tasks the connected workers report "
                                      "running (as of their last heartbeat).",
                                      value=sum(len(r.split(b",")) for r in running if r))
        return (online, in_flight)


class FleetCollector(Collector):
    """`conveyor_scheduler_beat_leader` always; the fleet gauges only while `is_leader()`."""

    def __init__(self, replica: str, is_leader: Callable[[], bool], redis_url: str,
                 sources: Iterable[FleetSource] = (QueueDepth(), WorkersOnline())) -> None:
        self.replica = replica
        self.is_leader = is_leader
        self.redis_url = redis_url
        self.sources = tuple(sources)
        self._client: SyncRedis | None = None

    def _redis(self) -> SyncRedis:
        if self._client is None:  # a race makes two; both work (redis-py clients are thread-safe)
            self._client = sync_client(self.redis_url, socket_timeout=REDIS_TIMEOUT_S,
                                                socket_connect_timeout=REDIS_TIMEOUT_S)
        return self._client

    def collect(self) -> Iterator[Metric]:
        leader = self.is_leader()
        beat = GaugeMetricFamily("conveyor_scheduler_beat_leader", "1 on the replica holding the beat lease; only "
                                 "it exports the conveyor_fleet_* gauges.", labels=["replica"])
        beat.add_metric([self.replica], 1 if leader else 0)
        yield beat
        if not leader:
            return
        for source in self.sources:
            try:
                yield from source.collect(self._redis())
            except redis.RedisError as exc:  # a scrape without fleet gauges, not a failed scrape
                log.warning("fleet metrics from %s not read: %s", type(source).__name__, exc)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class CertificateExpiry(Collector):
    """`conveyor_tls_certificate_expiry_timestamp_seconds{replica, certificate}`: when the served TLS
    certificate ("server") and the client CA ("client-ca", with mutual TLS) expire, as loaded now;
    `conveyor_tls_certificate_expiring{replica, certificate}`: 1 while one expires within 14 days
    (tls.EXPIRY_WARNING_DAYS) or has expired, else 0, so an alert needs no arithmetic."""

    def __init__(self, replica: str, expiry: Callable[[], dict[str, float]],
                 expiring: Callable[[], dict[str, bool]]) -> None:
        self.replica = replica
        self.expiry = expiry
        self.expiring = expiring

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("conveyor_tls_certificate_expiry_timestamp_seconds", "Not-after time (Unix "
                                  "seconds) of the TLS certificate this replica serves, and of its client CA.",
                                  labels=["replica", "certificate"])
        for certificate, when in self.expiry().items():
            gauge.add_metric([self.replica, certificate], when)
        yield gauge
        soon = GaugeMetricFamily("conveyor_tls_certificate_expiring", "1 when the TLS certificate (or client CA) "
                                 "expires within 14 days or has expired, else 0.", labels=["replica", "certificate"])
        for certificate, expiring in self.expiring().items():
            soon.add_metric([self.replica, certificate], 1.0 if expiring else 0.0)
        yield soon


class MetricsEndpoint:
    """The `/metrics` HTTP server of one replica (prometheus_client's threaded WSGI server)."""

    def __init__(self, host: str, port: int, collector: FleetCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = collector
        self.registry.register(collector)
        self._provider: MeterProvider | None = None
        self._server: WSGIServer | None = None
        self.host = host
        self.port = port

    def meter(self, name: str) -> Meter:
        """A meter whose instruments this endpoint exports (through a meter provider of its own,
        made on first use: the global one, if any, is left to OTLP export)."""
        if self._provider is None:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415 - loaded only when on
            from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
            from opentelemetry.sdk.resources import OTELResourceDetector, Resource  # noqa: PLC0415

            reader = PrometheusMetricReader(scope_info_enabled=False, registry=self.registry)
            named = OTELResourceDetector().detect().attributes.get("service.name")
            resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
            self._provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        return self._provider.get_meter(name)

    def register(self, collector: Collector) -> None:
        """Exports what `collector` (a prometheus_client Collector) yields at every scrape."""
        self.registry.register(collector)

    def start(self) -> None:
        """Binds and serves on a daemon thread (MetricsPortError when the port cannot be bound)."""
        try:
            self._server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise MetricsPortError(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self.port = int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
        self.collector.close()
