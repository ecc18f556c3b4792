"""Celery's task options (`@app.task(...)`) and call options (`apply_async(...)`, `sig.set(...)`):
each one is supported (translated into Conveyor's), accepted (it asks for what Conveyor always
does) or refused with the reason. An unknown name is refused too."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.app import POOLS
from conveyor.celery.exceptions import Unsupported

AMQP = ("AMQP routing: Conveyor has no exchanges or routing keys; a task goes to the queue named by queue=, "
        "task_routes or task_default_queue, and workers take queues with -Q")

CALL_OPTIONS: dict[str, str] = {
    "countdown": "earliest start, seconds from now",
    "eta": "earliest start (a naive datetime is in the app's timezone, UTC by default)",
    "expires": "seconds or a datetime: a task not started by then never runs (REVOKED; Conveyor's EXPIRED)",
    "queue": "the queue; wins over the task's queue and task_routes",
    "priority": "0-9, higher runs first (RabbitMQ's order; Celery's Redis transport ran lower numbers first)",
    "headers": "task headers, str to str, read back as self.request.headers",
    "time_limit": "hard time limit of each attempt (Conveyor's timeout)",
    "soft_time_limit": "soft time limit of each attempt (Conveyor's soft_timeout)",
    "ignore_result": "the result is not pushed back to this producer (it is still stored and readable)",
    "serializer": "'json' only: payloads and results are JSON, readable from any language",
    "retry": "False only: a submit is sent once (see retry_policy)",
    "idempotency_key": "Conveyor's: a repeat submit with the same key returns the first task's id",
}
"""apply_async options that map onto Conveyor's submit options: what each becomes."""

CALL_REFUSED: dict[str, str] = {
    "task_id": "the scheduler assigns task ids (time-ordered ULIDs that carry the queue); to make a repeat "
               "submit a no-op, pass idempotency_key=",
    "link": "a callback is a workflow step: chain(task.s(...), callback.s()) (the callback gets the result)",
    "link_error": "an error callback is a workflow step after the task with on_failure='continue' (conveyor's "
                  "canvas), which hands it the error",
    "retry_policy": "a submit without an idempotency_key is never resent, since a resend could store it twice; "
                    "one with idempotency_key= is retried through an outage within the client's timeout",
    "shadow": "a task's name is what dispatch, routing and rate limits use; it cannot be shown as another",
    "compression": "payloads are plain JSON (1 MiB at most); put large data elsewhere and pass a reference",
    "exchange": AMQP, "exchange_type": AMQP, "routing_key": AMQP, "mandatory": AMQP, "immediate": AMQP,
    "delivery_mode": AMQP, "reply_to": AMQP, "correlation_id": AMQP,
    "connection": "a producer talks to the scheduler through the app's client; there are no broker connections",
    "producer": "a producer talks to the scheduler through the app's client; there are no kombu producers",
    "publisher": "a producer talks to the scheduler through the app's client; there are no kombu producers",
    "add_to_parent": "a task's children are not tracked: use a chain or chord to run tasks after each other",
    "parent_id": "a task's parent is not tracked: use a chain or chord to run tasks after each other",
    "root_id": "a task's root is not tracked: use a chain or chord to run tasks after each other",
}
"""apply_async options refused, and why."""

TASK_OPTIONS: dict[str, str] = {
    "name": "the task's name (default: module.function, as Celery names it)",
    "bind": "the task is passed as the first argument; self.request reads the running attempt",
    "base": "a conveyor.celery.Task subclass: its on_success, on_failure, on_retry and after_return run",
    "max_retries": "retries self.retry() and autoretry_for may ask for (3 by default; None: Conveyor's 1000)",
    "default_retry_delay": "seconds before a retry without countdown (180 by default)",
    "autoretry_for": "exceptions retried by themselves (others fail the task, as in Celery)",
    "dont_autoretry_for": "exceptions among autoretry_for that are not retried",
    "retry_kwargs": "self.retry() arguments for autoretry_for: max_retries and countdown",
    "retry_backoff": "autoretry delay doubles each time from this many seconds (True: 1)",
    "retry_backoff_max": "cap on the backoff delay (600 s by default)",
    "retry_jitter": "the backoff delay is drawn from [0, delay] (True by default, as in Celery)",
    "rate_limit": "'100/s', '10/m', '5/h' or a number per second, enforced by the scheduler for the whole "
                  "fleet (Celery's are per worker)",
    "time_limit": "hard time limit of each attempt (Conveyor's timeout)",
    "soft_time_limit": "soft time limit of each attempt (Conveyor's soft_timeout)",
    "ignore_result": "the result is not pushed back to the producer (still stored and readable)",
    "queue": "the task's queue, unless apply_async(queue=) names one",
    "priority": "the task's priority, 0-9, higher first",
    "expires": "every call expires after this many seconds unless apply_async(expires=) says otherwise",
    "serializer": "'json' only",
    "typing": "delay()/apply_async() check the arguments against the function's signature (True by default)",
    "pool": "Conveyor's: 'threads' or 'processes', the worker pool that runs this task",
}
"""@app.task options that map onto Conveyor: what each does."""

TASK_ACCEPTED: dict[str, str] = {
    "acks_late": "Conveyor always acks an attempt after it ends (at-least-once), what acks_late=True asks",
    "reject_on_worker_lost": "a task whose worker died runs again, retried per its max_retries",
    "acks_on_failure_or_timeout": "a failed or timed-out attempt is recorded and retried or failed per policy",
    "track_started": "STARTED is always reported",
    "shared": "every task is registered on its app only; shared_task registers on every app",
    "store_errors_even_if_ignored": "errors are always stored (results too: ignore_result only skips the push)",
}
"""@app.task options accepted because Conveyor always does what they ask (or nothing applies)."""

TASK_REFUSED: dict[str, str] = {
    "pydantic": "arguments and results are JSON values: convert models in the task (model_validate/model_dump)",
    "send_events": "there are no worker events: `conveyor watch ID`, the dashboard and OpenTelemetry show tasks",
    "compression": CALL_REFUSED["compression"],
    "exchange": AMQP, "routing_key": AMQP, "delivery_mode": AMQP,
    "throws": "every failure is logged the same way by the worker",
    "trail": "a task's children are not tracked: use a chain or chord to run tasks after each other",
}
"""@app.task options refused, and why."""

_RATE = re.compile(r"(\d+)(?:/([smh]))?")


def serializer(value: Any, name: str) -> str:
    """'json' passes; pickle and the rest are refused with the reason."""
    text = str(value).lower()
    if text in ("json", "application/json"):
        return "json"
    if text in ("pickle", "application/x-python-serialize"):
        raise Unsupported(f"{name}='pickle'", "a pickle runs arbitrary code in whatever unpickles it (every worker, "
                          "every producer reading a result), and only Python can read it; Conveyor's payloads and "
                          "results are JSON, readable from any language. Pass JSON values (ids, not objects)")
    raise Unsupported(f"{name}={value!r}", "payloads and results are JSON only (readable from any language)")


def rate_limit(value: Any) -> str | None:
    """A Celery rate limit as Conveyor's: '10/m' stays, a number (or '100') is per second."""
    if value is None:
        return None
    text = str(int(value)) if isinstance(value, int | float) and float(value).is_integer() else str(value).strip()
    match = _RATE.fullmatch(text)
    if not match or int(match.group(1)) < 1:
        raise Unsupported(f"rate_limit={value!r}", "Conveyor's rate limits are a whole number of tasks per "
                          "second, minute or hour: '100/s', '10/m', '5/h'")
    return f"{match.group(1)}/{match.group(2) or 's'}"


def seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise Unsupported(f"{name}={value!r}", "give seconds (a number) or a timedelta")


def aware(value: dt.datetime, timezone: str | None) -> dt.datetime:
    """A naive datetime read in the app's timezone (UTC by default), as Celery reads eta."""
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=zoneinfo.ZoneInfo(timezone) if timezone else dt.UTC)


def call_fields(options: Mapping[str, Any], timezone: str | None = None, where: str = "apply_async") -> dict[str, Any]:
    """SubmitOptions fields for Celery call options (only those given and not None); refuses the rest."""
    fields: dict[str, Any] = {}
    for name, value in options.items():
        if name in CALL_REFUSED:
            if name == "retry_policy" and not value:
                continue
            raise Unsupported(f"{where}({name}=...)", CALL_REFUSED[name])
        if name not in CALL_OPTIONS:
            raise Unsupported(f"{where}({name}=...)", "not a Celery option conveyor.celery knows (see "
                              "docs/migrating-from-celery.md for the table)")
        if value is None:
            continue
        if name in ("countdown", "time_limit", "soft_time_limit"):
            target = {"countdown": "countdown", "time_limit": "timeout", "soft_time_limit": "soft_timeout"}[name]
            fields[target] = seconds(value, name)
        elif name == "eta":
            if not isinstance(value, dt.datetime):
                raise Unsupported(f"{where}(eta={value!r})", "eta is a datetime (countdown= takes seconds)")
            fields["eta"] = aware(value, timezone)
        elif name == "expires":
            fields["expires"] = aware(value, timezone) if isinstance(value, dt.datetime) else seconds(value, name)
        elif name == "headers":
            fields["headers"] = headers(value, where)
        elif name == "serializer":
            serializer(value, f"{where}(serializer)")
        elif name == "retry":
            if value:
                raise Unsupported(f"{where}(retry=True)", CALL_REFUSED["retry_policy"])
        elif name == "ignore_result":
            fields["ignore_result"] = bool(value)
        else:  # queue, priority, idempotency_key
            fields[name] = value
    return fields


def headers(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Unsupported(f"{where}(headers=...)", "Conveyor's task headers map strings to strings (64 at most); "
                          "put other values in the task's arguments")
    return dict(value)


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """A task's Celery options, checked; Celery's defaults where none was given."""

    name: str | None = None
    bind: bool = False
    base: type | None = None
    max_retries: int | None = 3
    default_retry_delay: float = 180.0
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = field(default_factory=dict)
    retry_backoff: float = 0.0
    """0: off (the autoretry delay is retry_kwargs' countdown, else default_retry_delay)."""
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    rate_limit: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool | None = None
    """None: the app's task_ignore_result."""
    queue: str | None = None
    priority: int | None = None
    expires: float | None = None
    typing: bool = True
    pool: str | None = None


def _exceptions(value: Any, name: str) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, list | tuple) else (value,)
    if not all(isinstance(e, type) and issubclass(e, BaseException) for e in items):
        raise Unsupported(f"{name}={value!r}", "give exception classes")
    return tuple(items)


def task_settings(options: Mapping[str, Any]) -> TaskSettings:
    """The TaskSettings of `@app.task(**options)`; refuses what does not map."""
    given: dict[str, Any] = {}
    for name, value in options.items():
        if name in TASK_ACCEPTED:
            continue
        if name in TASK_REFUSED:
            raise Unsupported(f"@app.task({name}=...)", TASK_REFUSED[name])
        if name not in TASK_OPTIONS:
            raise Unsupported(f"@app.task({name}=...)", "not a Celery task option conveyor.celery knows (see "
                              "docs/migrating-from-celery.md for the table)")
        given[name] = value
    if "serializer" in given:
        serializer(given.pop("serializer"), "@app.task(serializer)")
    for name in ("autoretry_for", "dont_autoretry_for"):
        if name in given:
            given[name] = _exceptions(given[name], name)
    for name in ("default_retry_delay", "retry_backoff_max", "time_limit", "soft_time_limit", "expires"):
        if name in given:
            given[name] = seconds(given[name], name)
    if "retry_backoff" in given:
        backoff = given["retry_backoff"]
        given["retry_backoff"] = 0.0 if not backoff else 1.0 if backoff is True else seconds(backoff, "retry_backoff")
    if "rate_limit" in given:
        given["rate_limit"] = rate_limit(given["rate_limit"])
    if "retry_kwargs" in given:
        unknown = sorted(set(given["retry_kwargs"]) - {"max_retries", "countdown"})
        if unknown:
            raise Unsupported(f"retry_kwargs: {', '.join(unknown)}", "autoretry takes max_retries and countdown")
    if given.get("pool") is not None and given["pool"] not in POOLS:
        raise Unsupported(f"@app.task(pool={given['pool']!r})", f"give one of {', '.join(POOLS)}")
    if given.get("max_retries") is not None and not 0 <= given["max_retries"] <= 1000:
        raise Unsupported(f"max_retries={given['max_retries']!r}", "Conveyor allows 0 to 1000 retries")
    return TaskSettings(**given)
