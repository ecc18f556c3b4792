"""Schedules (beat) without Redis: validation of conveyor.v1.Schedule, fire-time arithmetic,
the plan of one firing pass, and the tasks a firing submits.

Fire times are epoch milliseconds. Cron expressions and time zones are croniter's and
zoneinfo's (with the tzdata package as the fallback database), never hand-written: a wall
time skipped by a spring-forward fires at the end of the gap, one repeated by a fall-back
fires at both instants, as croniter documents.

Interval schedules fire at ``anchor + k * interval`` (k >= 0). The anchor is start_time when
given, else creation time + interval; an update keeps it, so changing only the template or
the interval never shifts the phase.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from conveyor.v1 import schedule_service_pb2, task_pb2
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.validation import check_duration, timestamp_ms

Schedule = schedule_service_pb2.Schedule
ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
ZONE_RE = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")
CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
MAX_INTERVAL_MS = 10 * 366 * 24 * 3600 * 1000
SCAN_LIMIT = 1000
"""Most fire times one pass submits for one schedule (the rest are due at once, next pass)."""
COUNT_LIMIT = 100_000
"""Most missed cron fire times counted one by one (counts above it are not exact)."""
SKIP = schedule_service_pb2.CATCHUP_POLICY_SKIP
FIRE_ONCE = schedule_service_pb2.CATCHUP_POLICY_FIRE_ONCE
SCHEDULE_HEADER = "conveyor-schedule-id"
FIRE_TIME_HEADER = "conveyor-fire-time"
_TEMPLATE_SET_BY_FIRING = ("idempotency_key", "idempotency_window", "eta", "expires_at")
_OUTPUT_FIELDS = ("state", "next_fire_time", "last_fire_time", "last_task_id", "fire_count", "missed_count",
                  "create_time", "update_time", "last_error")


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """A validated schedule definition."""

    id: str
    blob: bytes
    """The definition as stored: a Schedule with only its definition fields, serialized deterministically."""
    message: Schedule
    interval_ms: int
    """> 0 for an interval schedule, 0 for a cron schedule."""
    cron: str
    zone: dt.tzinfo
    seconds: bool
    """The cron expression has a leading seconds field."""
    start_ms: int | None
    end_ms: int | None
    catchup: int

    @property
    def template(self) -> task_pb2.TaskSpec:
        return self.message.template

    def next_after(self, anchor_ms: int, after_ms: int) -> int | None:
        """The first fire time strictly after `after_ms` (None: none is left before end_time)."""
        if self.interval_ms:
            if after_ms < anchor_ms:
                t = anchor_ms
            else:
                t = anchor_ms + ((after_ms - anchor_ms) // self.interval_ms + 1) * self.interval_ms
        else:
            if self.start_ms is not None:
                after_ms = max(after_ms, self.start_ms - 1)
            base = dt.datetime.fromtimestamp(after_ms / 1000, dt.UTC).astimezone(self.zone)
            try:
                nxt = croniter(self.cron, base, second_at_beginning=self.seconds).get_next(dt.datetime)
            except CroniterBadDateError:  # no match within croniter's search horizon (50 years)
                return None
            t = round(nxt.timestamp() * 1000)
        if self.end_ms is not None and t > self.end_ms:
            return None
        return t

    def next_from(self, anchor_ms: int, from_ms: int) -> int | None:
        """The first fire time at or after `from_ms`."""
        return self.next_after(anchor_ms, from_ms - 1)

    def count_between(self, anchor_ms: int, first_ms: int, before_ms: int) -> int:
        """How many fire times lie in [first_ms, before_ms); first_ms must be a fire time."""
        if before_ms <= first_ms:
            return 0
        if self.interval_ms:
            last = before_ms - 1 if self.end_ms is None else min(before_ms - 1, self.end_ms)
            return (last - first_ms) // self.interval_ms + 1 if last >= first_ms else 0
        count, t = 0, first_ms
        while t is not None and t < before_ms and count < COUNT_LIMIT:
            count += 1
            t = self.next_after(anchor_ms, t)
        return count

    def anchor(self, now_ms: int, stored: int | None = None) -> int:
        """The interval anchor for a schedule created or updated at `now_ms` (0 for cron)."""
        if not self.interval_ms:
            return 0
        if self.start_ms is not None:
            return self.start_ms
        if stored and stored <= now_ms + self.interval_ms:
            return stored
        return now_ms + self.interval_ms


@dataclass(frozen=True, slots=True)
class Plan:
    """What one firing pass does for one schedule."""

    fires: list[int]
    """Fire times to submit now, ascending."""
    missed: int
    """Fire times that passed more than the grace ago and get no task of their own."""
    next_ms: int | None
    """The schedule's next fire time after this pass (None: ended)."""


def plan_firings(d: ScheduleDef, *, anchor_ms: int, next_ms: int | None, last_ms: int, now_ms: int,
                 grace_ms: int) -> Plan:
    """Decides which fire times a pass at `now_ms` submits.

    A fire time up to `grace_ms` old is on time and fires. Older ones were missed (the
    beat had no leader, or lagged): CATCHUP_POLICY_SKIP drops them, CATCHUP_POLICY_FIRE_ONCE
    fires one task for all of them, keyed by the earliest (the stored next fire time, so
    racing leaders pick the same key). Fire times at or before `last_ms` (already
    submitted) never fire again.
    """
    if next_ms is None or next_ms > now_ms:
        return Plan([], 0, next_ms)
    cutoff = now_ms - grace_ms
    on_time: list[int] = []
    t = next_ms if next_ms >= cutoff else d.next_from(anchor_ms, cutoff)
    while t is not None and t <= now_ms and len(on_time) < SCAN_LIMIT:
        on_time.append(t)
        t = d.next_after(anchor_ms, t)
    fires, missed = on_time, 0
    if next_ms < cutoff:
        missed = d.count_between(anchor_ms, next_ms, cutoff)
        if d.catchup == FIRE_ONCE:
            fires, missed = [next_ms, *on_time], missed - 1
    return Plan([f for f in fires if f > last_ms], missed, t)


def fire_time_text(ms: int) -> str:
    """UTC ISO 8601 with milliseconds, e.g. 2026-03-29T01:00:00.000Z."""
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def fire_key(schedule_id: str, fire_ms: int) -> str:
    """The idempotency key of one firing: SCHEDULE_ID@FIRE_TIME."""
    return f"{schedule_id}@{fire_time_text(fire_ms)}"


def firing_spec(d: ScheduleDef, fire_ms: int) -> task_pb2.TaskSpec:
    """The TaskSpec one firing submits: the template, its idempotency key and two headers."""
    spec = task_pb2.TaskSpec()
    spec.CopyFrom(d.template)
    spec.idempotency_key = fire_key(d.id, fire_ms)
    spec.headers[SCHEDULE_HEADER] = d.id
    spec.headers[FIRE_TIME_HEADER] = fire_time_text(fire_ms)
    return spec


def check_schedule_id(value: str, field: str) -> str:
    if not ID_RE.fullmatch(value):
        problem = "must not be empty" if not value else (
            f"must be at most 128 characters, got {len(value)}" if len(value) > 128
            else f"{value[:40]!r} may only contain letters, digits and _.:-")
        raise InvalidArgument(field, problem)
    return value


def check_zone(name: str, field: str) -> dt.tzinfo:
    """An IANA time zone ('' is UTC)."""
    if not name:
        return dt.UTC
    if len(name) > 64 or not ZONE_RE.fullmatch(name) or name in ("localtime", "posixrules"):
        raise InvalidArgument(field, f"{name[:64]!r} is not an IANA time zone name (e.g. Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(field, f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


def check_cron(expression: str, field: str, zone: dt.tzinfo, now_ms: int) -> tuple[str, bool]:
    """A cron expression croniter accepts: 5 fields, or 6 with seconds first, or an @alias."""
    expr = " ".join(expression.split())
    if not expr:
        raise InvalidArgument(field, "must not be empty")
    if len(expr) > 256:
        raise InvalidArgument(field, "must be at most 256 characters")
    if expr.startswith("@"):
        if expr.lower() not in CRON_ALIASES:
            raise InvalidArgument(field, f"{expr!r} is not one of {', '.join(sorted(CRON_ALIASES))}")
        expr, seconds = expr.lower(), False
    else:
        count = len(expr.split(" "))
        if count not in (5, 6):
            raise InvalidArgument(field, f"{expr!r} has {count} fields; a cron expression has 5 (minute hour "
                                         "day-of-month month day-of-week), or 6 with seconds first")
        seconds = count == 6
    try:
        croniter.expand(expr, second_at_beginning=seconds, strict=True)
        base = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).astimezone(zone)
        croniter(expr, base, second_at_beginning=seconds).get_next(dt.datetime)
    except CroniterBadDateError:
        raise InvalidArgument(field, f"{expr!r} never fires") from None
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidArgument(field, f"{expr!r} is not a valid cron expression ({exc})") from None
    return expr, seconds


def check_schedule(msg: Schedule, at: str, *, now_ms: int) -> ScheduleDef:
    """Validates a schedule's definition (its template's task fields are checked by the caller,
    through the normal submit validation of `firing_spec`)."""
    schedule_id = check_schedule_id(msg.id, f"{at}.id")
    which = msg.WhichOneof("trigger")
    interval_ms, cron, zone, seconds = 0, "", dt.UTC, False
    if which == "interval":
        iv = msg.interval
        if iv.seconds < 0 or iv.nanos < 0 or (iv.seconds == 0 and iv.nanos == 0):
            raise InvalidArgument(f"{at}.interval", f"must be positive, got {iv.seconds + iv.nanos / 1e9:g}s")
        check_duration(iv, f"{at}.interval")
        interval_ms = iv.seconds * 1000 + iv.nanos // 1_000_000
        if interval_ms < 1:
            raise InvalidArgument(f"{at}.interval", "must be at least 1 ms")
        if interval_ms > MAX_INTERVAL_MS:
            raise InvalidArgument(f"{at}.interval", f"must be at most {MAX_INTERVAL_MS // 86_400_000} days")
    elif which == "cron":
        zone = check_zone(msg.cron.time_zone, f"{at}.cron.time_zone")
        cron, seconds = check_cron(msg.cron.expression, f"{at}.cron.expression", zone, now_ms)
    else:
        raise InvalidArgument(f"{at}.trigger", "set interval or cron")
    start = timestamp_ms(msg.start_time, f"{at}.start_time") if msg.HasField("start_time") else None
    end = timestamp_ms(msg.end_time, f"{at}.end_time") if msg.HasField("end_time") else None
    if start is not None and end is not None and end <= start:
        raise InvalidArgument(f"{at}.end_time", "must be after start_time")
    catchup = msg.catchup or FIRE_ONCE
    if catchup not in (SKIP, FIRE_ONCE):
        raise InvalidArgument(f"{at}.catchup", f"unknown catch-up policy {msg.catchup}")
    if not msg.HasField("template"):
        raise InvalidArgument(f"{at}.template", "must be set (the task each firing submits)")
    for name in _TEMPLATE_SET_BY_FIRING:
        set_ = bool(msg.template.idempotency_key) if name == "idempotency_key" else msg.template.HasField(name)
        if set_:
            raise InvalidArgument(f"{at}.template.{name}", "must not be set on a schedule's template "
                                  "(every firing sets its own idempotency key and runs at its fire time)")
    stored = Schedule()
    stored.CopyFrom(msg)
    for name in _OUTPUT_FIELDS:
        stored.ClearField(name)
    stored.catchup = catchup  # type: ignore[assignment]
    if which == "cron":
        stored.cron.expression = cron
    return ScheduleDef(schedule_id, stored.SerializeToString(deterministic=True), stored, interval_ms, cron, zone,
                       seconds, start, end, catchup)


def load_schedule(blob: bytes) -> ScheduleDef:
    """A stored definition (validated when it was saved)."""
    msg = Schedule.FromString(blob)
    interval_ms = msg.interval.seconds * 1000 + msg.interval.nanos // 1_000_000 if msg.HasField("interval") else 0
    zone: dt.tzinfo = dt.UTC
    if msg.HasField("cron") and msg.cron.time_zone:
        zone = ZoneInfo(msg.cron.time_zone)
    cron = msg.cron.expression if msg.HasField("cron") else ""
    seconds = bool(cron) and not cron.startswith("@") and len(cron.split()) == 6
    start = timestamp_ms(msg.start_time, "start_time") if msg.HasField("start_time") else None
    end = timestamp_ms(msg.end_time, "end_time") if msg.HasField("end_time") else None
    return ScheduleDef(msg.id, blob, msg, interval_ms, cron, zone, seconds, start, end, msg.catchup or FIRE_ONCE)


def to_schedule(rec: dict[bytes, bytes]) -> Schedule:
    """The Schedule message of a stored schedule hash (see lua/beat_save.lua for its fields)."""
    msg = Schedule.FromString(rec[b"def"])
    paused = rec.get(b"pz") == b"1"
    if paused:
        msg.state = schedule_service_pb2.SCHEDULE_STATE_PAUSED
    elif b"nx" in rec:
        msg.state = schedule_service_pb2.SCHEDULE_STATE_ACTIVE
        msg.next_fire_time.FromMilliseconds(int(rec[b"nx"]))
    else:
        msg.state = schedule_service_pb2.SCHEDULE_STATE_ENDED
    if b"lf" in rec:
        msg.last_fire_time.FromMilliseconds(int(rec[b"lf"]))
        msg.last_task_id = rec.get(b"lt", b"").decode()
    msg.fire_count = int(rec.get(b"fc", 0))
    msg.missed_count = int(rec.get(b"ms", 0))
    if b"ca" in rec:
        msg.create_time.FromMilliseconds(int(rec[b"ca"]))
    if b"ua" in rec:
        msg.update_time.FromMilliseconds(int(rec[b"ua"]))
    msg.last_error = rec.get(b"le", b"").decode()
    return msg
