"""Builds and runs one scheduler replica: the Core, and over it the gRPC layer (servicers handed
the objects they call, the auth and telemetry interceptors), health and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor import telemetry as t
from conveyor.v1 import (
    admin_service_pb2,
    schedule_service_pb2,
    task_service_pb2,
    worker_service_pb2,
    workflow_service_pb2,
)
from conveyor_scheduler import telemetry
from conveyor_scheduler.auth import AuthInterceptor
from conveyor_scheduler.auth_source import AuthSource
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.core import Core
from conveyor_scheduler.exposition import CertificateExpiry, FleetCollector, MetricsEndpoint
from conveyor_scheduler.grpc_glue import add_servicer
from conveyor_scheduler.queue_scopes import Resolver
from conveyor_scheduler.redis_clients import async_client
from conveyor_scheduler.reflection import enable_reflection
from conveyor_scheduler.servicers.admin_service import AdminService
from conveyor_scheduler.servicers.pipeline import no_call_span
from conveyor_scheduler.servicers.schedule_service import ScheduleService
from conveyor_scheduler.servicers.task_service import TaskService
from conveyor_scheduler.servicers.worker_service import WorkerService
from conveyor_scheduler.servicers.workflow_service import WorkflowService
from conveyor_scheduler.tls import ServerCertificates

log = logging.getLogger(__name__)
SERVICE_NAMES = ("conveyor.v1.TaskService", "conveyor.v1.WorkerService", "conveyor.v1.AdminService",
                 "conveyor.v1.ScheduleService", "conveyor.v1.WorkflowService")
AUTH_METER = "conveyor.scheduler.auth"
MAX_MESSAGE = 256 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class SchedulerServer:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        if (config.tls_cert is None) != (config.tls_key is None) or (config.tls_client_ca and not config.tls_cert):
            raise ValueError("TLS needs both tls_cert and tls_key (and tls_client_ca needs them)")
        self.certificates = (ServerCertificates(config.tls_cert, config.tls_key, config.tls_client_ca)
                             if config.tls_cert and config.tls_key else None)
        self._tls_watch: asyncio.Task[None] | None = None
        # A restarted Redis leaves stale pooled connections behind: retry a command that fails
        # to reach it (scripts are safe to resend: ids are chosen before the call, and a
        # duplicate ready-list entry is dropped by claim.lua once the task is no longer QUEUED).
        self.redis = async_client(
            config.redis_url, health_check_interval=30, socket_keepalive=True,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        self.core = Core(config, self.redis)
        self.metrics = self._open_metrics()  # before telemetry.setup, which puts the instruments on it
        # One chain: auth first (a refused call does no work, not even a span), then telemetry.
        self.auth = self._auth()
        self._auth_watch: asyncio.Task[None] | None = None
        tel = self._telemetry()
        interceptors: list[grpc.aio.ServerInterceptor] = [] if self.auth is None else [self.auth]
        if tel is not None:
            interceptors.append(telemetry.TelemetryInterceptor(tel))
        self.server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
        self.health = health.aio.HealthServicer()
        self._add_servicers(tel)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection(self.server, (*SERVICE_NAMES, health.SERVICE_NAME))  # as grpc.reflection.v1 and v1alpha
        address = f"{config.host}:{config.port}"
        if self.certificates is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, self.certificates.credentials())

    async def start(self) -> None:
        await self.core.start()
        if self.auth is not None:
            self._auth_watch = asyncio.get_running_loop().create_task(self.auth.source.watch())
        await self.server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.certificates is not None:
            self._tls_watch = asyncio.create_task(self._watch_tls(), name="tls-watch")
        log.info("scheduler %s serving on %s:%d%s", self.core.scheduler_id, self.config.host, self.port,
                 "" if self.certificates is None else " over mutual TLS" if self.certificates.mutual else " over TLS")
        if self.metrics is not None:
            log.info("metrics on %s", self.metrics.url)

    def _auth(self) -> AuthInterceptor | None:
        """The auth interceptor, with its denial counter on /metrics and OTLP (None without --auth-file)."""
        if self.config.auth_file is None:
            return None
        interceptor = AuthInterceptor(AuthSource(self.config.auth_file), Resolver(self.core.router, self.core.lookup))
        if self.metrics is not None:
            interceptor.denials.register(self.metrics.meter(AUTH_METER))
        if t.metrics_enabled():
            interceptor.denials.register(t.meter(AUTH_METER))
        return interceptor

    def _telemetry(self) -> telemetry.SchedulerTelemetry | None:
        """Telemetry as a task-events hook on the core, given what it reads of the replica (None when off)."""
        config, core = self.config, self.core
        return telemetry.setup(core.events, telemetry.SchedulerView(
            limits=config.limits, redis_url=config.redis_url, redis=self.redis, queue_of=core.lookup.queue_of,
            open_sessions=core.dispatcher.open_sessions), self.metrics)

    def _add_servicers(self, tel: telemetry.SchedulerTelemetry | None) -> None:
        """The five services, each handed the objects of the core it calls."""
        config, core = self.config, self.core
        tasks = TaskService(limits=config.limits, submission=core.submission, completion=core.completion,
                            dispatcher=core.dispatcher, lookup=core.lookup, store=core.store, waiters=core.waiters,
                            watchers=core.watchers,
                            call_span=tel.pipelined_call if tel is not None else no_call_span)
        workers = WorkerService(config=config, scheduler_id=core.scheduler_id, completion=core.completion,
                                dispatcher=core.dispatcher, registry=core.registry, lookup=core.lookup,
                                store=core.store, wakes=core.wakes)
        admin = AdminService(store=core.store, queue_stats=core.queue_stats, queue_control=core.queue_control,
                             task_search=core.task_search, registry=core.registry, worker_control=core.control,
                             wakes=core.wakes, auth=self.auth.source if self.auth is not None else None)
        add_servicer(self.server, tasks, task_service_pb2.DESCRIPTOR.services_by_name["TaskService"])
        add_servicer(self.server, workers, worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"])
        add_servicer(self.server, admin, admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"])
        add_servicer(self.server, ScheduleService(core.beat),
                     schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"])
        add_servicer(self.server, WorkflowService(core.workflows),
                     workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"])

    def _open_metrics(self) -> MetricsEndpoint | None:
        """Serves /metrics when a port is set (a port that cannot be bound stops start-up)."""
        config, core = self.config, self.core
        if not config.metrics_port:
            return None
        beat = core.beat
        endpoint = MetricsEndpoint(config.metrics_host or config.host, config.metrics_port,
                                   FleetCollector(core.scheduler_id, lambda: beat.is_leader, config.redis_url))
        if self.certificates is not None:
            endpoint.register(CertificateExpiry(core.scheduler_id, self.certificates.expiry,
                                                self.certificates.expiring))
        endpoint.start()
        return endpoint

    async def _watch_tls(self) -> None:
        """Looks at the TLS files every second, so a rotation is logged and shown on /metrics even
        before a new connection asks for it, and a certificate that comes within 14 days of its
        expiry while loaded is warned about then (once per load)."""
        assert self.certificates is not None
        while True:
            await asyncio.sleep(self.certificates.check_interval)
            self.certificates.refresh()
            self.certificates.check_expiry()

    def reload_tls(self) -> None:
        """SIGHUP: re-reads the TLS files now."""
        if self.certificates is not None:
            self.certificates.refresh(force=True)

    async def stop(self, grace: float = 5.0) -> None:
        if self._tls_watch is not None:
            self._tls_watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self._auth_watch is not None:
            self._auth_watch.cancel()
        await self.core.close()
        await self.redis.aclose()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)  # shutdown() waits out the server's poll


async def serve(config: SchedulerConfig, ready: asyncio.Event | None = None) -> None:
    """Runs until SIGINT/SIGTERM."""
    server = SchedulerServer(config)
    await server.start()
    print(f"conveyor-scheduler listening on {config.host}:{server.port}", flush=True)
    if ready:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
