"""Scheduler configuration: frozen dataclasses, filled from the CLI/environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Limits:
    """Input bounds; requests outside them get INVALID_ARGUMENT before touching Redis."""

    max_payload_bytes: int = 1024 * 1024
    """Largest task payload (and result) in bytes."""
    max_batch: int = 10_000
    """Most tasks in one Submit (and acks in one Ack)."""
    max_headers: int = 64
    """Most header entries on one task."""
    max_header_bytes: int = 16 * 1024
    """Largest total size of one task's header keys and values."""
    max_timeout_ms: int = 7 * 24 * 3600 * 1000
    """Longest allowed task timeout (hard limit of one attempt)."""
    max_poll_wait_ms: int = 60_000
    """Longest long-poll in Poll."""
    max_result_wait_ms: int = 3600_000
    """Longest wait in GetResult."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Everything a scheduler replica needs to run."""

    redis_url: str
    """Redis (or Valkey) URL shared by all replicas: redis://, rediss://, unix://, or a Redis
    Cluster's redis+cluster://host:port,host:port (redis_clients.py)."""
    redis_client: str = "hiredis"
    """The hot path's client: "hiredis" (FastRedis, or FastCluster on a cluster) or "redis-py"
    (redis-py's, as everything off the hot path; slower, kept to measure the difference)."""
    redis_wait_replicas: int = 0
    """Submits and acks answer only once this many replicas have them (Redis WAIT); 0: once the
    primary has them (asynchronous replication: a failover can lose the last writes)."""
    redis_wait_timeout_ms: int = 1_000
    """How long a WAIT may take; fewer replicas by then fails the call with UNAVAILABLE."""
    host: str = "127.0.0.1"
    """Address the gRPC server binds."""
    port: int = 50051
    """gRPC port; 0 picks a free one."""
    metrics_port: int = 9464
    """Port of the Prometheus /metrics endpoint; 0: none."""
    metrics_host: str = ""
    """Address /metrics binds; empty: `host`."""
    scheduler_id: str = ""
    """Name of this replica (shown to workers); defaults to host-pid."""
    routes: tuple[tuple[str, str], ...] = ()
    """(task-name glob, queue) rules, first match wins; unmatched names go to 'default'."""
    default_timeout_ms: int = 300_000
    """Hard limit of one attempt when a task sets none."""
    result_ttl_ms: int = 24 * 3600 * 1000
    """How long finished tasks and their results are kept."""
    lease_ttl_ms: int = 30_000
    """A streamed lease lapses this long after the worker's last heartbeat."""
    heartbeat_interval_ms: int = 10_000
    """How often workers are asked to heartbeat."""
    reaper_interval_ms: int = 1_000
    """How often lapsed leases are looked for."""
    idempotency_window_ms: int = 24 * 3600 * 1000
    """Default memory of idempotency keys."""
    dispatch_batch: int = 256
    """Most tasks claimed for one worker in one script call."""
    beat_lease_ms: int = 5_000
    """The beat leader's Redis lease, renewed every third of it; a follower takes over when it lapses."""
    beat_misfire_grace_ms: int = 1_000
    """A fire time found later than this counts as missed and follows the schedule's catch-up policy."""
    task_rate_limits: dict[str, str] = field(default_factory=dict)
    """Task name -> rate ("count/period-ms") for tasks that set none themselves."""
    queue_rate_limits: dict[str, str] = field(default_factory=dict)
    """Queue -> rate ("count/period-ms") shared by all of the queue's tasks."""
    limits: Limits = field(default_factory=Limits)
    tls_cert: Path | None = None
    """PEM certificate chain served over TLS (with tls_key); None: plaintext gRPC."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    tls_client_ca: Path | None = None
    """PEM CA bundle that client certificates must chain to (mutual TLS); None: none asked for."""
    auth_file: Path | None = None
    """Tokens and certificate subjects with their roles (auth_file.py); None: no authentication."""
