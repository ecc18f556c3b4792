"""Celery's beat vocabulary (`celery.schedules`): `crontab`, `schedule`, and `beat_schedule`
entries, read into what Conveyor's schedules take (a cron expression or an interval).

Conveyor's scheduler fires schedules itself (one replica holds the beat lease); `conveyor-worker`
applies the app's entries on start-up, so there is no `celery beat` process to run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.celery.exceptions import Unsupported

ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
MAX_ID = 128
"""A schedule id's limit (ScheduleService): letters, digits and _.:- only."""
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_.:-]+")


def schedule_id(name: str) -> str:
    """The schedule id of a beat entry name: each run of characters a schedule id cannot hold
    (spaces, quotes, parentheses) becomes one '_' ("add every 10" is "add_every_10"); a name over
    128 characters is cut and ends with a hash of the whole."""
    text = _NOT_IN_ID.sub("_", name).strip("_") or "entry"
    if len(text) > MAX_ID:
        text = f"{text[:MAX_ID - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return text


def _cron_field(name: str, value: Any) -> str:
    if isinstance(value, bool):
        raise Unsupported(f"crontab({name}=...)", f"{value!r} is not a cron field")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise Unsupported(f"crontab({name}=...)", "an empty field")
        return text
    if isinstance(value, Iterable):
        parts = [_cron_field(name, v) for v in value]
        if not parts:
            raise Unsupported(f"crontab({name}=...)", "an empty field")
        return ",".join(parts)
    raise Unsupported(f"crontab({name}=...)", f"{value!r} is not a cron field (an int, a string like '*/15' or "
                                              "'mon-fri', or a list of ints)")


class crontab:  # noqa: N801 - Celery's name
    """Celery's crontab: fires at the times the five cron fields match, in the app's `timezone`
    (UTC by default). The fields take what Celery's take: ints, '*/15', '1-5', 'mon-fri', lists."""

    def __init__(self, minute: Any = "*", hour: Any = "*", day_of_week: Any = "*", day_of_month: Any = "*",
                 month_of_year: Any = "*", **kwargs: Any) -> None:
        for name in kwargs:
            raise Unsupported(f"crontab({name}=...)", "the scheduler evaluates cron expressions itself, in the "
                              "app's timezone (nowfun and app have no meaning there)")
        self.minute = _cron_field("minute", minute)
        self.hour = _cron_field("hour", hour)
        self.day_of_week = _cron_field("day_of_week", day_of_week)
        self.day_of_month = _cron_field("day_of_month", day_of_month)
        self.month_of_year = _cron_field("month_of_year", month_of_year)

    @property
    def expression(self) -> str:
        """The standard five-field cron expression (minute hour day-of-month month day-of-week)."""
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}"

    def __repr__(self) -> str:
        return f"<crontab: {self.expression} (m/h/dM/MY/d)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and self.expression == other.expression

    def __hash__(self) -> int:
        return hash(self.expression)


class schedule:  # noqa: N801 - Celery's name
    """Celery's interval schedule: every `run_every` (seconds or a timedelta)."""

    def __init__(self, run_every: float | dt.timedelta, relative: bool = False, **kwargs: Any) -> None:
        if relative:
            raise Unsupported("schedule(relative=True)", "an interval schedule is anchored at its start time")
        for name in kwargs:
            raise Unsupported(f"schedule({name}=...)", "the scheduler keeps the clock")
        self.seconds = interval_seconds(run_every, "schedule(run_every=...)")

    @property
    def run_every(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.seconds)

    def __repr__(self) -> str:
        return f"<freq: {self.seconds}s>"


class solar:  # noqa: N801 - Celery's name
    """Refused: Conveyor's scheduler fires intervals and cron expressions only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise Unsupported("solar", "the scheduler fires on intervals and cron expressions, not at sunrise or sunset; "
                                   "compute the times and use crontab")


def interval_seconds(value: Any, where: str) -> float:
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise Unsupported(where, f"{value!r}: give seconds, a timedelta, crontab(...) or schedule(...)")
    if seconds <= 0:
        raise Unsupported(where, f"{value!r}: an interval must be positive")
    return seconds


@dataclass(frozen=True, slots=True)
class BeatEntry:
    """One `beat_schedule` entry: its task and trigger (`every` seconds or a `cron` expression)."""

    id: str
    """The schedule id (schedule_id of the entry's name)."""
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    every: float | None = None
    cron: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """The entry's Celery options (queue, priority, ...), translated when it is applied."""


def trigger(value: Any, where: str) -> tuple[float | None, str | None]:
    """(every, cron) of a schedule value: seconds, timedelta, schedule or crontab."""
    if isinstance(value, crontab):
        return None, value.expression
    if isinstance(value, schedule):
        return value.seconds, None
    return interval_seconds(value, where), None


def beat_entries(value: Any) -> list[BeatEntry]:
    """The entries of a `beat_schedule` dict, checked (an unknown key or trigger is refused)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise Unsupported("beat_schedule", f"{value!r}: give a dict of entry name -> {{'task', 'schedule', ...}}")
    entries: list[BeatEntry] = []
    for name, entry in value.items():
        where = f"beat_schedule[{name!r}]"
        if not isinstance(entry, Mapping) or "task" not in entry or "schedule" not in entry:
            raise Unsupported(where, "an entry is a dict with at least 'task' and 'schedule'")
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise Unsupported(f"{where}: {', '.join(unknown)}", f"an entry takes {', '.join(sorted(ENTRY_KEYS))}")
        if entry.get("relative"):
            raise Unsupported(f"{where}: relative", "an interval schedule is anchored at its start time")
        every, cron = trigger(entry["schedule"], f"{where}['schedule']")
        entries.append(BeatEntry(schedule_id(str(name)), str(entry["task"]), tuple(entry.get("args") or ()),
                                 dict(entry.get("kwargs") or {}), every, cron, dict(entry.get("options") or {})))
    return entries
