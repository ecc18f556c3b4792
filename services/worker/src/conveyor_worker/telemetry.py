"""OpenTelemetry in the worker: a CONSUMER span around each attempt, and run-time metrics.

`process(leased, attempt)` runs one attempt (the `execute(...)` coroutine, not yet started)
inside a "process {queue}" span whose parent is the task's context from its headers (the
producer's span), so every attempt of a task, retries included, lands in the producer's
trace. The span is current while the handler runs: async handlers see it directly, sync
handlers through `ContextThreadPool`, so spans a handler starts are its children. A failed
attempt sets the span's status to ERROR and records the exception from the ack;
conveyor.task.outcome says succeeded, failed, cancelled (stopped on a cancel request: not an
error) or interrupted (handed back at shutdown).

Metrics (meter "conveyor.worker"): messaging.process.duration (the run time of an attempt,
by queue, task name and error.type) and conveyor.worker.tasks.active (attempts in progress).

With no SDK installed (no OTEL_* exporter configured) `process` only awaits the attempt.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from conveyor import telemetry as t
from conveyor.v1 import task_pb2

R = TypeVar("R")
MAX_CACHED_ATTRIBUTE_SETS = 10_000


class ContextThreadPool(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose jobs run in the submitter's contextvars context (as
    asyncio.to_thread does), so a sync handler runs inside its attempt's span."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


class _Metrics:
    def __init__(self) -> None:
        meter = t.meter("conveyor.worker")
        self.duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Run time of one task attempt on a worker.",
            explicit_bucket_boundaries_advisory=t.DURATION_BUCKETS)
        self.active = meter.create_up_down_counter(
            "conveyor.worker.tasks.active", unit="{task}", description="Task attempts running on this worker.")
        self._attrs: dict[tuple[str, str, str], dict[str, str]] = {}

    def attrs(self, queue: str, name: str, error_type: str = "") -> dict[str, str]:
        key = (queue, name, error_type)
        cached = self._attrs.get(key)
        if cached is None:
            cached = {t.MESSAGING_SYSTEM: t.SYSTEM, t.OPERATION_NAME: "process", t.DESTINATION: queue,
                      t.TASK_NAME: name}
            if error_type:
                cached[t.ERROR_TYPE] = error_type
            if len(self._attrs) < MAX_CACHED_ATTRIBUTE_SETS:
                self._attrs[key] = cached
        return cached


_metrics: _Metrics | None = None
_metrics_checked = False


def _get_metrics() -> _Metrics | None:
    global _metrics, _metrics_checked  # noqa: PLW0603 - instruments are created once, when first needed
    if not _metrics_checked:
        _metrics_checked = True
        _metrics = _Metrics() if t.metrics_enabled() else None
    return _metrics


def enabled() -> bool:
    """True when an SDK records spans or metrics, i.e. when attempts must go through `process`."""
    return t.tracer() is not None or _get_metrics() is not None


async def process(leased: task_pb2.LeasedTask, attempt: Awaitable[task_pb2.TaskAck]) -> task_pb2.TaskAck:
    """Awaits `attempt` (one run of `leased`) inside its CONSUMER span; returns its ack."""
    tracer = t.tracer()
    metrics = _get_metrics()
    if tracer is None and metrics is None:
        return await attempt
    task = leased.task
    started = time.perf_counter()
    if metrics is not None:
        metrics.active.add(1, metrics.attrs(task.queue, task.name))
    span = None
    token = None
    if tracer is not None:
        span = tracer.start_span(t.span_name("process", task.queue), context=t.extract(task.headers),
                                 kind=SpanKind.CONSUMER)
        if span.is_recording():
            span.set_attributes({
                t.MESSAGING_SYSTEM: t.SYSTEM, t.OPERATION_NAME: "process", t.OPERATION_TYPE: "process",
                t.DESTINATION: task.queue, t.MESSAGE_ID: task.id, t.TASK_NAME: task.name,
                t.TASK_ATTEMPT: task.attempt, t.TASK_PRIORITY: task.priority})
        token = otel_context.attach(trace.set_span_in_context(span))
    error_type = ""
    try:
        ack = await attempt
    except BaseException as exc:  # cancelled (handed back at shutdown, or the task was cancelled)
        error_type = type(exc).__name__
        if span is not None:
            span.set_attribute(t.TASK_OUTCOME, "interrupted")
            span.set_attribute(t.ERROR_TYPE, error_type)
        raise
    else:
        outcome = ack.WhichOneof("outcome")
        if outcome == "failure":
            error_type = ack.failure.error.type or "Error"
        if span is not None and span.is_recording():
            if outcome == "failure":
                t.set_error(span, error_type, ack.failure.error.message, ack.failure.error.traceback)
                span.set_attributes({t.TASK_OUTCOME: "failed", "conveyor.task.retry_requested": ack.failure.retry})
            elif outcome == "cancelled":  # stopped on a cancel request: not an error of the task
                span.set_attribute(t.TASK_OUTCOME, "cancelled")
                span.add_event("cancelled", {"conveyor.cancel.reason": ack.cancelled.reason})
            else:
                span.set_attribute(t.TASK_OUTCOME, "succeeded")
        return ack
    finally:
        if token is not None:
            otel_context.detach(token)
        if span is not None:
            span.end()
        if metrics is not None:
            metrics.active.add(-1, metrics.attrs(task.queue, task.name))
            metrics.duration.record(time.perf_counter() - started, metrics.attrs(task.queue, task.name, error_type))
