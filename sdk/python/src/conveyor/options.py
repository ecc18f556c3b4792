"""Submit options and their translation into a TaskSpec (shared by every client)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.serialization import encode_call
from conveyor.v1 import task_pb2

Seconds = float | dt.timedelta


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """How to run a task; every field is optional."""

    queue: str | None = None
    """Explicit queue; None lets the scheduler's routing decide."""
    priority: int | None = None
    """0 (default) to 9; higher runs first."""
    eta: dt.datetime | None = None
    """Earliest start time (timezone-aware)."""
    countdown: Seconds | None = None
    """Earliest start, relative to now."""
    expires: dt.datetime | Seconds | None = None
    """Give up if not started by then (datetime) or within this long (seconds)."""
    timeout: Seconds | None = None
    """Hard time limit of one attempt."""
    soft_timeout: Seconds | None = None
    """Soft time limit: the handler is told (cancelled if async, a flag if sync) and may clean up."""
    rate_limit: str | None = None
    """Global limit for this task name, e.g. "100/s", "5000/m"."""
    max_retries: int | None = None
    """Retries after the first attempt."""
    retry_backoff: Seconds | None = None
    """Delay before the first retry (doubles each time, with jitter)."""
    retry_backoff_max: Seconds | None = None
    """Cap on the retry delay."""
    idempotency_key: str | None = None
    """A repeat submit with this key returns the first task's id."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers carried with the task."""
    ignore_result: bool = False
    """Do not have the outcome pushed to this client when the task ends (Celery's name): for
    tasks whose result nobody reads. It is still stored and can be read."""

    def merged(self, **overrides: Any) -> SubmitOptions:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _seconds(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _duration(value: Seconds) -> Duration:
    d = Duration()
    if isinstance(value, dt.timedelta):
        d.FromTimedelta(value)
    else:
        d.FromNanoseconds(round(float(value) * 1e9))
    return d


def _timestamp(value: dt.datetime) -> Timestamp:
    if value.tzinfo is None:
        raise ValueError("eta/expires datetimes must be timezone-aware")
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def build_spec(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None, opts: SubmitOptions, *, pushed: bool = True
) -> task_pb2.TaskSpec:
    """The TaskSpec of a call. `pushed=False` leaves push_result off whatever `ignore_result`
    says (a batch's tasks). Only the fields set are passed: each one costs the batch path."""
    spec = task_pb2.TaskSpec(name=name, payload=encode_call(args, kwargs))
    if opts.headers:
        spec.headers.update(opts.headers)
    if pushed and not opts.ignore_result:
        spec.push_result = True
    if opts.queue:
        spec.queue = opts.queue
    if opts.priority is not None:
        spec.priority = opts.priority
    if opts.eta is not None:
        spec.eta.CopyFrom(_timestamp(opts.eta))
    if opts.countdown is not None:
        spec.countdown.CopyFrom(_duration(opts.countdown))
    if opts.expires is not None:
        expires = opts.expires if isinstance(opts.expires, dt.datetime) else (
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=_seconds(opts.expires)))
        spec.expires_at.CopyFrom(_timestamp(expires))
    if opts.timeout is not None:
        spec.timeout.CopyFrom(_duration(opts.timeout))
    if opts.soft_timeout is not None:
        spec.soft_timeout.CopyFrom(_duration(opts.soft_timeout))
    if opts.rate_limit:
        spec.rate_limit = opts.rate_limit
    if opts.max_retries is not None:
        spec.retry.max_retries = opts.max_retries
        if opts.retry_backoff is not None:
            spec.retry.initial_backoff.CopyFrom(_duration(opts.retry_backoff))
        if opts.retry_backoff_max is not None:
            spec.retry.max_backoff.CopyFrom(_duration(opts.retry_backoff_max))
    if opts.idempotency_key:
        spec.idempotency_key = opts.idempotency_key
    return spec
