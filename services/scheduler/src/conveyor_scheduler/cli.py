"""`conveyor-scheduler`: run one scheduler replica (or check one with --check)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor import event_loop
from conveyor.channels import is_loopback_host
from conveyor.telemetry import configure_from_env
from conveyor_scheduler import auth_file as auth_files
from conveyor_scheduler import redis_clients
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.embedded_redis import EmbeddedRedis
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.exposition import MetricsPortError
from conveyor_scheduler.routing import parse_route
from conveyor_scheduler.server import serve
from conveyor_scheduler.tls import TLSFileError, check_channel
from conveyor_scheduler.validation import check_name, check_queue, parse_rate

P = "CONVEYOR_SCHEDULER_"



def check(host: str, port: int, tls_cert: Path | None = None) -> bool:
    """True when the scheduler at host:port reports SERVING; over TLS when it serves `tls_cert`
    (trusting CONVEYOR_TLS_CA, presenting CONVEYOR_TLS_CERT/KEY: see tls.check_channel)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        channel = check_channel(host, port, tls_cert) if tls_cert else grpc.insecure_channel(f"{host}:{port}")
    except TLSFileError as exc:
        print(f"health check over TLS not possible: {exc}", file=sys.stderr)
        return False
    try:
        with channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            return resp.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError as exc:
        print(f"not serving: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return False


def _check_binding(host: str, tls: bool, auth: bool, insecure: bool) -> None:
    """Only TLS with tokens may face a network; without them, loopback unless --insecure."""
    if tls and auth:
        logging.info("TLS and tokens configured: listening on %s", host)
        return
    missing = " and ".join(what for what, have in (("TLS (--tls-cert/--tls-key)", tls), ("tokens (--auth-file)", auth))
                           if not have)
    if is_loopback_host(host):
        logging.info("no %s configured: listening on loopback only", missing)
        return
    if not insecure:
        raise click.UsageError(f"no {missing} configured, so the scheduler listens on loopback only; configure "
                               f"them, or pass --insecure to bind {host} anyway")
    logging.warning("no %s configured: anyone who reaches %s can submit and run tasks", missing, host)


def _rate_limits(texts: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    tasks: dict[str, str] = {}
    queues: dict[str, str] = {}
    for item in (i for text in texts for i in text.split()):
        target, sep, rate = item.rpartition("=")
        try:
            if not sep or not target:
                raise InvalidArgument("--rate-limit", f"{item!r} is not NAME=RATE")
            if target.startswith("queue:"):
                queues[check_queue(target.removeprefix("queue:"), "--rate-limit")] = parse_rate(rate, "--rate-limit")
            else:
                tasks[check_name(target, "--rate-limit")] = parse_rate(rate, "--rate-limit")
        except InvalidArgument as exc:
            raise click.BadParameter(str(exc), param_hint="--rate-limit") from None
    return tasks, queues


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, envvar=P + "HOST", help="Address to bind.")
@click.option("--port", default=50051, show_default=True, envvar=P + "PORT", type=int, help="gRPC port (0: any).")
@click.option("--metrics-port", default=9464, show_default=True, envvar=P + "METRICS_PORT",
              type=click.IntRange(0, 65535),
              help="Port of the Prometheus /metrics endpoint, on --host (0: off). Replicas on one host need "
                   "a port each; one that cannot be bound stops start-up.")
@click.option("--redis-url", envvar="CONVEYOR_REDIS_URL", default=None,
              help="Redis/Valkey URL (redis://, rediss://, unix://), or a Redis Cluster's "
                   "redis+cluster://HOST:PORT,HOST:PORT (rediss+cluster:// over TLS). Unset: start a private "
                   "embedded Redis.")
@click.option("--redis-client", type=click.Choice(["hiredis", "redis-py"]), default="hiredis", show_default=True,
              envvar=P + "REDIS_CLIENT",
              help="The hot path's Redis client: Conveyor's hiredis connection, or redis-py's client (slower; "
                   "for comparison).")
@click.option("--redis-wait-replicas", default=0, show_default=True, envvar=P + "REDIS_WAIT_REPLICAS",
              type=click.IntRange(0, 16),
              help="Answer a submit or an ack only once this many Redis replicas have it (WAIT), so a "
                   "primary's failover cannot lose it; 0: once the primary has it.")
@click.option("--redis-wait-timeout", default=1.0, show_default=True, envvar=P + "REDIS_WAIT_TIMEOUT",
              type=click.FloatRange(min=0.001),
              help="Seconds a WAIT may take; too few replicas by then fails the call with UNAVAILABLE.")
@click.option("--data-dir", default=".conveyor", show_default=True, envvar="CONVEYOR_DATA_DIR",
              type=click.Path(path_type=Path), help="Data folder of the embedded Redis.")
@click.option("--route", "routes", multiple=True, envvar=P + "ROUTES",
              help="Routing rule GLOB=QUEUE (repeatable; env: space-separated).")
@click.option("--result-ttl", default=86400.0, show_default=True, envvar=P + "RESULT_TTL", type=float,
              help="Seconds finished tasks and results are kept.")
@click.option("--lease-ttl", default=30.0, show_default=True, envvar=P + "LEASE_TTL", type=float,
              help="Seconds a streamed lease lasts without a heartbeat.")
@click.option("--heartbeat-interval", default=10.0, show_default=True, envvar=P + "HEARTBEAT_INTERVAL", type=float)
@click.option("--reaper-interval", default=1.0, show_default=True, envvar=P + "REAPER_INTERVAL", type=float)
@click.option("--default-timeout", default=300.0, show_default=True, envvar=P + "DEFAULT_TIMEOUT", type=float,
              help="Seconds an attempt may run when the task sets no timeout.")
@click.option("--rate-limit", "rate_limits", multiple=True, envvar=P + "RATE_LIMITS",
              help="NAME=RATE for a task name, or queue:NAME=RATE for a queue, e.g. 'emails.send=100/s' "
                   "(repeatable; env: space-separated).")
@click.option("--beat-lease", default=5.0, show_default=True, envvar=P + "BEAT_LEASE", type=click.FloatRange(min=0.1),
              help="Seconds of the beat leader's lease (renewed every third); a replica takes over when it lapses.")
@click.option("--scheduler-id", default="", envvar=P + "ID", help="Name of this replica.")
@click.option("--tls-cert", envvar=P + "TLS_CERT", type=click.Path(path_type=Path), default=None,
              help="PEM certificate chain: serve gRPC over TLS (with --tls-key). Re-read when it changes or on "
                   "SIGHUP.")
@click.option("--tls-key", envvar=P + "TLS_KEY", type=click.Path(path_type=Path), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--tls-client-ca", envvar=P + "TLS_CLIENT_CA", type=click.Path(path_type=Path), default=None,
              help="PEM CA bundle: require client certificates signed by it (mutual TLS).")
@click.option("--auth-file", envvar=P + "AUTH_FILE", type=click.Path(path_type=Path), default=None,
              help="TOML file of [[token]] (and, with mutual TLS, [[cert]]) entries with roles and queue globs; "
                   "every call then needs a credential it lists. Re-read when it changes.")
@click.option("--insecure", is_flag=True, envvar=P + "INSECURE",
              help="Allow binding a non-loopback address without TLS and tokens.")
@click.option("--check", "check_only", is_flag=True,
              help="Exit 0 if a scheduler at --host/--port is serving, else 1 (over TLS when --tls-cert is given, "
                   "trusting CONVEYOR_TLS_CA, presenting CONVEYOR_TLS_CERT/CONVEYOR_TLS_KEY).")
@click.option("--log-level", default="INFO", show_default=True, envvar=P + "LOG_LEVEL")
@event_loop.option(envvar=P + "LOOP")
def main(host: str, port: int, metrics_port: int, redis_url: str | None, data_dir: Path,
         routes: tuple[str, ...], result_ttl: float,
         lease_ttl: float, heartbeat_interval: float, reaper_interval: float, default_timeout: float,
         rate_limits: tuple[str, ...], scheduler_id: str, insecure: bool, check_only: bool, log_level: str,
         beat_lease: float, loop: str, tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None,
         auth_file: Path | None, redis_client: str, redis_wait_replicas: int, redis_wait_timeout: float) -> None:
    """Run a Conveyor scheduler replica."""
    if check_only:
        sys.exit(0 if check(host, port, tls_cert) else 1)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_from_env("conveyor-scheduler")  # exports traces/metrics only when OTEL_* says so
    _check_binding(host, tls_cert is not None, auth_file is not None, insecure)
    try:
        rules = tuple(parse_route(r) for text in routes for r in text.split())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--route") from None
    task_rates, queue_rates = _rate_limits(rate_limits)
    if auth_file is not None:
        try:
            auth_files.load(auth_file)  # refused here, before anything starts; served by the reloading AuthSource
        except auth_files.AuthFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--auth-file") from None
    if redis_url:
        try:
            redis_clients.check_url(redis_url, redis_client, redis_wait_replicas)
        except ValueError as exc:
            flag, _, message = str(exc).partition(": ")
            raise click.BadParameter(message, param_hint=flag) from None
    embedded = None
    if not redis_url:
        embedded = EmbeddedRedis(data_dir / "redis")
        embedded.start()
        redis_url = embedded.url
    config = SchedulerConfig(
        beat_lease_ms=int(beat_lease * 1000), metrics_port=metrics_port,
        redis_url=redis_url, host=host, port=port, scheduler_id=scheduler_id, routes=rules,
        result_ttl_ms=int(result_ttl * 1000), lease_ttl_ms=int(lease_ttl * 1000),
        heartbeat_interval_ms=int(heartbeat_interval * 1000), reaper_interval_ms=int(reaper_interval * 1000),
        default_timeout_ms=int(default_timeout * 1000), task_rate_limits=task_rates, queue_rate_limits=queue_rates,
        tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca, auth_file=auth_file,
        redis_client=redis_client, redis_wait_replicas=redis_wait_replicas,
        redis_wait_timeout_ms=int(redis_wait_timeout * 1000))
    try:
        event_loop.run(serve(config), loop)
    except MetricsPortError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics-port") from None
    except TLSFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key/--tls-client-ca") from None
    finally:
        if embedded:
            embedded.stop()


if __name__ == "__main__":
    main()
