"""Request validation: every field is checked before anything touches Redis.

Errors are InvalidArgument naming the field the way a caller wrote it
(``tasks[3].priority``), so a person can act on the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.ids import BadTaskId, parse_task_id
from conveyor_scheduler.keys import PRIORITY_LEVELS
from conveyor_scheduler.routing import QUEUE_RE, Router

NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
IDEMPOTENCY_RE = re.compile(r"[\x21-\x7e]{1,200}")
JSON_TYPE = "application/json"
MAX_RETRIES = 1000
RATE_RE = re.compile(r"(\d{1,7})\s*/\s*(s|sec|second|m|min|minute|h|hour)")
RATE_PERIOD_MS = {"s": 1000, "sec": 1000, "second": 1000, "m": 60_000, "min": 60_000, "minute": 60_000,
                  "h": 3_600_000, "hour": 3_600_000}
MAX_WINDOW_MS = 30 * 24 * 3600 * 1000
MAX_DELAY_MS = 12 * MAX_WINDOW_MS
"""How far in the future a task may be due (360 days): the bound of countdown and eta alike."""
MAX_NANOS = 999_999_999


@dataclass(slots=True)
class NewTask:
    """A validated TaskSpec, ready for submit.lua."""

    queue: str
    priority: int
    due_ms: int
    idempotency_key: str
    idempotency_window_ms: int
    fields: list[str | bytes | int]
    timeout_ms: int = 0
    matchable: bool = True
    """May be leased straight to a waiting worker (no rate limit, not delayed, not expired)."""
    name: str = ""
    """The task name (sync match offers only a worker that declares it)."""


def check_name(value: str, field: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise InvalidArgument(field, _pattern_problem(value, 200, "letters, digits and _.:-"))
    return value


MAX_TASK_NAMES = 1000


def check_task_names(names: Sequence[str], field: str) -> tuple[str, ...]:
    """The task names a worker or Poll client declares (name-aware dispatch)."""
    if len(names) > MAX_TASK_NAMES:
        raise InvalidArgument(field, f"must hold at most {MAX_TASK_NAMES} names, got {len(names)}")
    return tuple(dict.fromkeys(check_name(n, f"{field}[{i}]") for i, n in enumerate(names)))


def check_queue(value: str, field: str) -> str:
    if not QUEUE_RE.fullmatch(value):
        raise InvalidArgument(field, _pattern_problem(value, 64, "letters, digits and _.-"))
    return value


MAX_LEASE_TOKEN = 64
"""The longest lease token accepted; the scheduler's own are about 20 characters."""


def check_lease_token(token: str, field: str) -> None:
    if not 1 <= len(token) <= MAX_LEASE_TOKEN:
        raise InvalidArgument(field, f"must be 1 to {MAX_LEASE_TOKEN} characters, got {len(token)}")


def check_task_id(value: str, field: str = "task_id") -> int:
    """Returns the queue code carried by the id."""
    try:
        return parse_task_id(value)[1]
    except BadTaskId as exc:
        raise InvalidArgument(field, f"{value[:40]!r} is not a Conveyor task id ({exc})") from None


def parse_rate(value: str, field: str) -> str:
    """Turns "100/s", "5000/m" or "10/h" into the Lua form "count/period-ms"."""
    match = RATE_RE.fullmatch(value.strip())
    if not match or int(match.group(1)) < 1:
        raise InvalidArgument(field, f"{value[:40]!r} is not a rate limit like '100/s', '5000/m' or '10/h'")
    return f"{int(match.group(1))}/{RATE_PERIOD_MS[match.group(2)]}"


def check_duration(msg: object, field: str) -> None:
    """Refuses a Duration that is negative or not normalized: protobuf allows nanos only in
    -999,999,999..999,999,999, and a larger value would silently add whole seconds."""
    seconds, nanos = msg.seconds, msg.nanos  # type: ignore[attr-defined]
    if seconds < 0 or nanos < 0:
        raise InvalidArgument(field, "must not be negative")
    if nanos > MAX_NANOS:
        raise InvalidArgument(field, f"nanos must be 0 to {MAX_NANOS:,}, got {nanos:,}")


def duration_ms(msg: object, field: str, *, minimum: int, maximum: int) -> int:
    """A request's Duration in whole ms (sub-ms parts are dropped), within [minimum, maximum]."""
    check_duration(msg, field)
    ms = msg.seconds * 1000 + msg.nanos // 1_000_000  # type: ignore[attr-defined]
    if ms < minimum:
        raise InvalidArgument(field, f"must be at least {minimum} ms")
    if ms > maximum:
        raise InvalidArgument(field, f"must be at most {maximum} ms")
    return ms


def timestamp_ms(msg: object, field: str) -> int:
    seconds, nanos = msg.seconds, msg.nanos  # type: ignore[attr-defined]
    if seconds < 0 or not 0 <= nanos < 1_000_000_000 or seconds > 253402300799:
        raise InvalidArgument(field, "is not a valid timestamp")
    return seconds * 1000 + nanos // 1_000_000


def check_spec(
    spec: task_pb2.TaskSpec, at: str, *, limits: Limits, router: Router, now_ms: int,
    default_timeout_ms: int, default_window_ms: int, rate_limits: dict[str, str] | None = None,
) -> NewTask:
    """Validates one TaskSpec and turns it into the task hash fields."""
    name = check_name(spec.name, f"{at}.name")
    queue = check_queue(spec.queue, f"{at}.queue") if spec.queue else router.route(name)
    if not 0 <= spec.priority < PRIORITY_LEVELS:
        raise InvalidArgument(
            f"{at}.priority", f"must be 0 to {PRIORITY_LEVELS - 1}, got {spec.priority}"
        )
    if len(spec.payload) > limits.max_payload_bytes:
        raise InvalidArgument(
            f"{at}.payload",
            f"is {len(spec.payload)} bytes, over the limit of {limits.max_payload_bytes}",
        )
    if len(spec.content_type) > 100:
        raise InvalidArgument(f"{at}.content_type", "must be at most 100 characters")
    fields: list[str | bytes | int] = ["n", name, "d", spec.payload]
    if spec.content_type and spec.content_type != JSON_TYPE:
        fields += ["ct", spec.content_type]
    if spec.headers:
        fields += ["h", _headers(spec.headers, f"{at}.headers", limits)]
    if spec.priority:
        fields += ["p", spec.priority]
    timeout = default_timeout_ms
    if spec.HasField("timeout"):
        timeout = duration_ms(spec.timeout, f"{at}.timeout", minimum=1, maximum=limits.max_timeout_ms)
    fields += ["to", timeout]
    if spec.HasField("soft_timeout"):
        soft = duration_ms(spec.soft_timeout, f"{at}.soft_timeout", minimum=1, maximum=limits.max_timeout_ms)
        if soft >= timeout:
            raise InvalidArgument(f"{at}.soft_timeout", f"must be below the timeout ({timeout} ms)")
        fields += ["st2", soft]
    if spec.rate_limit:
        fields += ["rl", parse_rate(spec.rate_limit, f"{at}.rate_limit")]
    elif rate_limits and name in rate_limits:
        fields += ["rl", rate_limits[name]]
    due = _due_ms(spec, at, now_ms)
    if due > now_ms:
        fields += ["eta", due]
    expires = 0
    if spec.HasField("expires_at"):
        expires = timestamp_ms(spec.expires_at, f"{at}.expires_at")
        if due and expires <= due:
            raise InvalidArgument(f"{at}.expires_at", "must be after the task's eta/countdown")
        fields += ["x", expires]
    if spec.HasField("retry"):
        fields += _retry_fields(spec.retry, f"{at}.retry")
    window = 0
    if spec.idempotency_key:
        if not IDEMPOTENCY_RE.fullmatch(spec.idempotency_key):
            raise InvalidArgument(
                f"{at}.idempotency_key", "must be 1 to 200 printable ASCII characters without spaces"
            )
        window = default_window_ms
        if spec.HasField("idempotency_window"):
            window = duration_ms(
                spec.idempotency_window, f"{at}.idempotency_window", minimum=1, maximum=MAX_WINDOW_MS
            )
        fields += ["k", spec.idempotency_key]
    elif spec.HasField("idempotency_window"):
        raise InvalidArgument(f"{at}.idempotency_window", "is set without an idempotency_key")
    matchable = due <= now_ms and "rl" not in fields[::2] and not 0 < expires <= now_ms
    return NewTask(queue, spec.priority, due, spec.idempotency_key, window, fields, timeout, matchable, name)


def _due_ms(spec: task_pb2.TaskSpec, at: str, now_ms: int) -> int:
    if spec.HasField("eta") and spec.HasField("countdown"):
        raise InvalidArgument(f"{at}.countdown", "set either eta or countdown, not both")
    if spec.HasField("eta"):
        eta = timestamp_ms(spec.eta, f"{at}.eta")  # a past eta simply runs now
        if eta > now_ms + MAX_DELAY_MS:
            raise InvalidArgument(f"{at}.eta", f"must be at most {MAX_DELAY_MS // 86_400_000} days in the future "
                                  f"(as countdown), got {(eta - now_ms) / 86_400_000:,.1f} days")
        return eta
    if spec.HasField("countdown"):
        return now_ms + duration_ms(spec.countdown, f"{at}.countdown", minimum=0, maximum=MAX_DELAY_MS)
    return 0


def _retry_fields(retry: task_pb2.RetryPolicy, at: str) -> list[str | bytes | int]:
    if retry.max_retries > MAX_RETRIES:
        raise InvalidArgument(f"{at}.max_retries", f"must be at most {MAX_RETRIES}")
    fields: list[str | bytes | int] = ["mr", retry.max_retries]
    initial = maximum = None
    if retry.HasField("initial_backoff"):
        initial = duration_ms(retry.initial_backoff, f"{at}.initial_backoff", minimum=0, maximum=MAX_WINDOW_MS)
        fields += ["ib", initial]
    if retry.HasField("max_backoff"):
        maximum = duration_ms(retry.max_backoff, f"{at}.max_backoff", minimum=0, maximum=MAX_WINDOW_MS)
        fields += ["mb", maximum]
    if initial is not None and maximum is not None and initial > maximum:
        raise InvalidArgument(f"{at}.max_backoff", "must not be below initial_backoff")
    if retry.multiplier:
        if not 1.0 <= retry.multiplier <= 100.0:
            raise InvalidArgument(f"{at}.multiplier", f"must be 1 to 100, got {retry.multiplier}")
        fields += ["mu", repr(retry.multiplier)]
    if retry.no_jitter:
        fields += ["nj", 1]
    return fields


def _headers(headers: object, at: str, limits: Limits) -> str:
    items = dict(headers)  # type: ignore[call-overload]
    if len(items) > limits.max_headers:
        raise InvalidArgument(at, f"has {len(items)} entries, over the limit of {limits.max_headers}")
    size = sum(len(k) + len(v) for k, v in items.items())
    if size > limits.max_header_bytes:
        raise InvalidArgument(at, f"is {size} bytes, over the limit of {limits.max_header_bytes}")
    for key in items:
        if not key or len(key) > 128:
            raise InvalidArgument(at, f"key {key[:40]!r} must be 1 to 128 characters")
    return json.dumps(items, separators=(",", ":"))


def _pattern_problem(value: str, max_len: int, allowed: str) -> str:
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"must be at most {max_len} characters, got {len(value)}"
    return f"{value[:40]!r} may only contain {allowed}"
