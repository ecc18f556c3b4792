"""Jinja2 templates and the filters that turn contract values into text."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.templating import Jinja2Templates

from conveyor.v1 import task_pb2

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def ts(value: Timestamp | None) -> str:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return "—"
    return value.ToDatetime(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def ago(value: Timestamp | None) -> str:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return "—"
    return seconds(time.time() - value.ToMilliseconds() / 1000) + " ago"


def seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def duration(value: Duration | None) -> str:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return "—"
    return seconds(value.ToMilliseconds() / 1000)


def state_name(value: int) -> str:
    return task_pb2.TaskState.Name(value).removeprefix("TASK_STATE_")  # type: ignore[arg-type]


def trace_id(headers: Any) -> str | None:
    """The trace id of a W3C traceparent header (version-traceid-spanid-flags)."""
    parts = str(headers.get("traceparent", "")).split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


templates.env.filters.update(ts=ts, ago=ago, duration=duration, state=state_name, seconds=seconds)
