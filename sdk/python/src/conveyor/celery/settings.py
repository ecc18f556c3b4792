"""The settings table: every Celery setting conveyor.celery knows is supported (mapped onto
Conveyor), accepted (it asks for what Conveyor always does) or refused with the reason, and
`check_setting` holds each value to it when it is set. A name that looks like a Celery setting
(`task_*`, `worker_*`, `broker_*`, ...) but is in no table is refused too; other names are the
app's own and are kept, unused, as Celery keeps them."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Any

from conveyor.celery import options
from conveyor.celery.broker import scheduler_target
from conveyor.celery.exceptions import Unsupported
from conveyor.celery.routes import compile_routes
from conveyor.celery.schedules import beat_entries

log = logging.getLogger("conveyor.celery")

CELERY_DEFAULT_RESULT_EXPIRES = 86400.0
"""Celery's result_expires default (1 day), which is also the scheduler's --result-ttl default."""

SUPPORTED: dict[str, str] = {
    "broker_url": "the scheduler: conveyor://HOST:PORT (several, ';'-separated, for failover); the "
                  "CELERY_BROKER_URL variable wins, as in Celery; other broker URLs are refused with the mapping",
    "task_routes": "dict by task name, globs ('feeds.*') or regexes; functions; a list of them: queue and priority",
    "task_default_queue": "the queue of a task no route or option names (unset: the scheduler routes it, "
                          "then 'default'), and the queue a worker without -Q takes",
    "task_default_priority": "priority of a task that names none (0-9, higher first)",
    "task_time_limit": "hard time limit of a task that sets none (Conveyor's timeout)",
    "task_soft_time_limit": "soft time limit of a task that sets none (Conveyor's soft_timeout)",
    "task_default_rate_limit": "rate limit of a task that sets none (global across workers)",
    "task_ignore_result": "ignore_result of a task that sets none",
    "beat_schedule": "declared schedules (crontab, timedelta, seconds, schedule): conveyor-worker applies them "
                     "on start-up and the scheduler fires them; no beat process",
    "timezone": "the IANA time zone crontab entries (and naive eta datetimes) are read in; UTC by default",
    "include": "modules the worker imports at start-up (their tasks register)",
    "imports": "modules the worker imports at start-up (their tasks register)",
}
"""Settings that map onto Conveyor: what each does."""

ACCEPTED: dict[str, str] = {
    "result_backend": "results are kept by the scheduler (in its Redis) whatever this names; the URL is not used",
    "result_expires": "results live for the scheduler's --result-ttl (24 h, Celery's 1 day); another value is "
                      "logged as a warning naming the flag, since one app cannot set it",
    "task_acks_late": "Conveyor always acks an attempt after it ends (at-least-once), what True asks",
    "task_reject_on_worker_lost": "a task whose worker died runs again, retried per its max_retries",
    "task_acks_on_failure_or_timeout": "a failed or timed-out attempt is recorded and retried or failed per policy",
    "task_track_started": "STARTED is always reported",
    "task_create_missing_queues": "queues exist as soon as they are named; nothing is declared",
    "task_serializer": "'json' only; 'pickle' is refused (the message says why)",
    "result_serializer": "'json' only; 'pickle' is refused",
    "accept_content": "['json'] only",
    "result_accept_content": "['json'] only",
    "enable_utc": "True; False needs timezone (crontabs fire in a named zone, never the machine's local time)",
    "task_always_eager": "False only: True is refused, task.apply() runs a task in-process",
    "task_eager_propagates": "accepted with task.apply()'s meaning: apply().get() raises the task's error",
    "result_extended": "the task record always has name, args, kwargs, queue and retries",
    "broker_connection_retry": "producers retry reads through an outage and workers always reconnect",
    "broker_connection_retry_on_startup": "workers retry their first connection too",
}
"""Settings accepted: Conveyor does what they ask, or they do not apply. Each value is checked."""

REFUSED: dict[str, str] = {
    "task_queues": "queues need no declaration in Conveyor (kombu Queue objects are AMQP's): a task goes to the "
                   "queue its route names and a worker takes queues with -Q",
    "task_default_exchange": options.AMQP, "task_default_exchange_type": options.AMQP,
    "task_default_routing_key": options.AMQP, "task_default_delivery_mode": options.AMQP,
    "task_annotations": "options set from outside the task: give them to @app.task (or apply_async)",
    "task_compression": options.CALL_REFUSED["compression"],
    "result_compression": options.CALL_REFUSED["compression"],
    "task_publish_retry": options.CALL_REFUSED["retry_policy"],
    "task_publish_retry_policy": options.CALL_REFUSED["retry_policy"],
    "task_send_sent_event": "there are no task events: `conveyor watch ID`, the dashboard and OpenTelemetry",
    "task_protocol": "Conveyor's wire format is its gRPC contract (proto/conveyor/v1)",
    "result_backend_transport_options": "the scheduler keeps results; there is no result backend to tune",
    "beat_scheduler": "schedules live in the scheduler (conveyor schedules ..., client.schedules); there is no "
                      "beat process to plug a scheduler class into",
    "beat_schedule_filename": "schedules live in the scheduler's Redis; there is no beat process or file",
    "beat_max_loop_interval": "the scheduler's beat sleeps until the next fire time",
    "beat_sync_every": "the scheduler's beat records every firing in Redis",
}
"""Settings refused, and why."""

REFUSED_PREFIXES: dict[str, str] = {
    "worker_": "a worker setting: conveyor-worker takes flags (-c/--concurrency, --prefetch, -P/--pool, "
               "--max-tasks-per-child, --max-memory-per-child, --loglevel; see conveyor-worker --help)",
    "broker_": "a broker transport setting: there is no broker to tune; apps talk to the scheduler",
    "redis_": "Redis belongs to the scheduler (conveyor-scheduler --redis-url)",
    "result_": "the scheduler keeps results; there is no result backend to tune",
    "task_": "a Celery task setting conveyor.celery does not map",
    "beat_": "beat runs inside the scheduler",
    "event_": "there are no worker events: `conveyor watch ID`, the dashboard and OpenTelemetry show tasks",
    "control_": "worker control goes through the scheduler (app.control, conveyor worker ...)",
    "security_": "message signing is not supported: use TLS and tokens (CONVEYOR_TLS_*, CONVEYOR_TOKEN)",
    "database_": "the scheduler keeps results; there is no result backend to configure",
    "cache_": "the scheduler keeps results; there is no result backend to configure",
    "mongodb_": "the scheduler keeps results; there is no result backend to configure",
    "cassandra_": "the scheduler keeps results; there is no result backend to configure",
    "s3_": "the scheduler keeps results; there is no result backend to configure",
    "azureblockblob_": "the scheduler keeps results; there is no result backend to configure",
    "elasticsearch_": "the scheduler keeps results; there is no result backend to configure",
    "couchbase_": "the scheduler keeps results; there is no result backend to configure",
    "arangodb_": "the scheduler keeps results; there is no result backend to configure",
    "cosmosdbsql_": "the scheduler keeps results; there is no result backend to configure",
    "sqs_": "there is no broker: apps talk to the scheduler",
    "celery_": "an old-style (Celery 3) name: use the lowercase Celery 4+ name",
    "celeryd_": "an old-style (Celery 3) worker name: conveyor-worker takes flags",
    "celerybeat_": "an old-style (Celery 3) beat name: beat runs inside the scheduler",
}
"""A name with one of these prefixes in no table above is a Celery setting that is refused."""

OLD_STYLE = ("CELERY_", "CELERYD_", "CELERYBEAT_", "BROKER_", "CELERY_RESULT_")
"""Celery 3's upper-case names; without a namespace, config_from_object refuses them."""

DEFAULTS: dict[str, Any] = {
    "broker_url": None, "result_backend": None, "result_expires": dt.timedelta(days=1), "task_routes": None,
    "task_default_queue": None, "task_default_priority": None, "task_time_limit": None,
    "task_soft_time_limit": None, "task_default_rate_limit": None, "task_ignore_result": False,
    "beat_schedule": {}, "timezone": None, "include": (), "imports": (), "task_acks_late": False,
    "task_reject_on_worker_lost": False, "task_acks_on_failure_or_timeout": True, "task_track_started": False,
    "task_create_missing_queues": True, "task_serializer": "json", "result_serializer": "json",
    "accept_content": ("json",), "result_accept_content": None, "enable_utc": True, "task_always_eager": False,
    "task_eager_propagates": False, "result_extended": False, "broker_connection_retry": True,
    "broker_connection_retry_on_startup": True,
}
"""What app.conf answers for a setting never set (Celery's defaults, or None: Conveyor's own default applies)."""


def is_setting(name: str) -> bool:
    """A Celery setting name (in a table, or with a Celery prefix), as opposed to the app's own config."""
    return name in SUPPORTED or name in ACCEPTED or name in REFUSED or name.startswith(tuple(REFUSED_PREFIXES))


def _content(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None and name == "result_accept_content":
        return None
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        options.serializer(item, name)
    return ("json",)


def check_setting(name: str, value: Any) -> Any:
    """`value` as the app keeps it, after checking it against the table; raises Unsupported for a
    refused setting or a value it cannot take. Names that are not Celery settings pass as they are."""
    if name in REFUSED:
        raise Unsupported(name, REFUSED[name])
    if name not in SUPPORTED and name not in ACCEPTED:
        for prefix, why in REFUSED_PREFIXES.items():
            if name.startswith(prefix):
                raise Unsupported(name, why)
        return value
    if name == "broker_url":
        if value is not None:
            scheduler_target(str(value))
        return value
    if name == "task_routes":
        compile_routes(value)
        return value
    if name == "beat_schedule":
        beat_entries(value)
        return dict(value or {})
    if name == "timezone":
        if value is not None:
            try:
                zoneinfo.ZoneInfo(str(value))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise Unsupported(f"timezone={value!r}", "give an IANA time zone name, e.g. 'Europe/Berlin'") from None
        return None if value is None else str(value)
    if name in ("task_time_limit", "task_soft_time_limit"):
        return options.seconds(value, name)
    if name == "task_default_rate_limit":
        return options.rate_limit(value)
    if name == "task_default_priority":
        if value is not None and (not isinstance(value, int) or not 0 <= value <= 9):
            raise Unsupported(f"task_default_priority={value!r}", "Conveyor's priorities are 0 to 9, higher first")
        return value
    if name in ("include", "imports"):
        return tuple([value] if isinstance(value, str) else value or ())
    if name == "result_expires":
        ttl = options.seconds(value, name) if value is not None else None
        if ttl is not None and ttl != CELERY_DEFAULT_RESULT_EXPIRES:
            log.warning("result_expires=%s: results live for the scheduler's --result-ttl (24 h by default); "
                        "set it there (conveyor-scheduler --result-ttl %s)", value, ttl)
        return value
    if name in ("task_serializer", "result_serializer"):
        return options.serializer(value, name)
    if name in ("accept_content", "result_accept_content"):
        return _content(name, value)
    if name == "task_always_eager" and value:
        raise Unsupported("task_always_eager=True", "delay() always goes through the scheduler, so tests see what "
                          "production does (JSON payloads, routing, retries). To run a task in-process, call "
                          "task.apply(args, kwargs) (an EagerResult, retries included) or the function itself; "
                          "for a real worker, `conveyor dev -A MODULE` runs a scheduler and a worker in one command")
    return value
