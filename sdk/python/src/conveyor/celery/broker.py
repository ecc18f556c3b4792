"""The broker URL names the scheduler: `conveyor://host:port` is what producers and workers
talk to. Conveyor has no broker of its own to point at; the scheduler owns Redis."""

from __future__ import annotations

from conveyor.celery.exceptions import Unsupported

SCHEME = "conveyor://"
DEFAULT_PORT = 50051
_OTHER_BROKERS = {
    "redis": "Redis", "rediss": "Redis", "valkey": "Valkey", "amqp": "RabbitMQ", "amqps": "RabbitMQ",
    "pyamqp": "RabbitMQ", "librabbitmq": "RabbitMQ", "sqs": "Amazon SQS", "memory": "in-memory (kombu)",
    "filesystem": "filesystem (kombu)", "sqla": "SQLAlchemy", "qpid": "Qpid", "kafka": "Kafka",
}


def scheduler_target(url: str) -> str:
    """The scheduler address(es) a broker URL names, as Client takes them ("host:port", several
    comma-separated for failover). Takes `conveyor://host:port`, several joined by `;` (Celery's
    failover list) or `,`; raises Unsupported, explaining the mapping, for any other broker."""
    targets: list[str] = []
    for part in (p.strip() for p in url.replace(";", ",").split(",")):
        if not part:
            continue
        if not part.startswith(SCHEME):
            scheme = part.partition("://")[0] if "://" in part else ""
            what = f"a {_OTHER_BROKERS[scheme]} broker" if scheme in _OTHER_BROKERS else "no Conveyor scheduler"
            raise Unsupported(
                f"broker_url={part!r}", f"it names {what}. With Conveyor, producers and workers talk to the scheduler, "
                "which keeps every task in its own Redis (conveyor-scheduler --redis-url redis://...): give "
                "broker='conveyor://SCHEDULER_HOST:50051' (several for failover: 'conveyor://a:50051;conveyor://b:50051')")
        host = part.removeprefix(SCHEME).rstrip("/")
        if not host or "/" in host or "@" in host:
            raise Unsupported(f"broker_url={part!r}", "give conveyor://HOST:PORT (no path, no credentials: a "
                                            "token goes in CONVEYOR_TOKEN, TLS in CONVEYOR_TLS_*)")
        targets.append(host if _has_port(host) else f"{host}:{DEFAULT_PORT}")
    if not targets:
        raise Unsupported(f"broker_url={url!r}", "it names no scheduler: give conveyor://HOST:PORT")
    return ",".join(targets)


def _has_port(host: str) -> bool:
    if host.startswith("["):  # [::1]:50051
        return "]:" in host
    return ":" in host
