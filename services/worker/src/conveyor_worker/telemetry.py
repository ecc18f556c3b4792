"""OpenTelemetry in the worker: a CONSUMER span around each attempt, and run-time metrics.

`begin(leased)` opens one attempt's "process {queue}" span whose parent is the task's context
from its headers (the producer's span), so every attempt of a task, retries included, lands
in the producer's trace. The worker starts the attempt inside `Trace.current()`, so whichever
runner runs it sees the span as current: the loop runner's asyncio task and the thread
runner's thread copy the context, the process runner passes it to the child in the job (its
`traceparent`), so spans a handler starts are the span's children. `Trace.end(ack)` closes it:
a failed attempt sets the span's status to ERROR and records the exception from the ack;
conveyor.task.outcome says succeeded, failed, cancelled (stopped on a cancel request: not an
error) or interrupted (handed back, no ack).

Metrics (meter "conveyor.worker"): messaging.process.duration (the run time of an attempt,
by queue, task name and error.type) and conveyor.worker.tasks.active (attempts in progress).

With no SDK installed (no OTEL_* exporter configured) `enabled()` is false, and the worker
calls it once per batch of leases and nothing more.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from conveyor import telemetry as t
from conveyor.v1 import task_pb2

MAX_CACHED_ATTRIBUTE_SETS = 10_000


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
    """True when an SDK records spans or metrics, i.e. when attempts get a Trace."""
    return t.tracer() is not None or _get_metrics() is not None


def begin(leased: task_pb2.LeasedTask) -> Trace:
    """Opens the CONSUMER span and counts the attempt active (while `enabled()`)."""
    return Trace(leased, t.tracer(), _get_metrics())


class Trace:
    """One attempt's span and metrics, from `begin` to `end`."""

    __slots__ = ("metrics", "name", "queue", "span", "started")

    def __init__(self, leased: task_pb2.LeasedTask, tracer: trace.Tracer | None, metrics: _Metrics | None) -> None:
        task = leased.task
        self.queue, self.name, self.metrics = task.queue, task.name, metrics
        self.started = time.perf_counter()
        if metrics is not None:
            metrics.active.add(1, metrics.attrs(task.queue, task.name))
        self.span: trace.Span | None = None
        if tracer is not None:
            span = self.span = tracer.start_span(t.span_name("process", task.queue), context=t.extract(task.headers),
                                                 kind=SpanKind.CONSUMER)
            if span.is_recording():
                span.set_attributes({
                    t.MESSAGING_SYSTEM: t.SYSTEM, t.OPERATION_NAME: "process", t.OPERATION_TYPE: "process",
                    t.DESTINATION: task.queue, t.MESSAGE_ID: task.id, t.TASK_NAME: task.name,
                    t.TASK_ATTEMPT: task.attempt, t.TASK_PRIORITY: task.priority})

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Makes the span current while a runner starts the attempt (it copies the context)."""
        if self.span is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def end(self, ack: task_pb2.TaskAck | None) -> None:
        """Closes the span with the attempt's outcome (None: interrupted, handed back)."""
        error_type = ""
        span = self.span
        if ack is None:
            error_type = "CancelledError"
            if span is not None:
                span.set_attribute(t.TASK_OUTCOME, "interrupted")
                span.set_attribute(t.ERROR_TYPE, error_type)
        else:
            outcome = ack.WhichOneof("outcome")
            if outcome == "failure":
                error_type = ack.failure.error.type or "Error"
            if span is not None and span.is_recording():
                if outcome == "failure":
                    t.set_error(span, error_type, ack.failure.error.message, ack.failure.error.traceback)
                    span.set_attributes({t.TASK_OUTCOME: "failed",
                                         "conveyor.task.retry_requested": ack.failure.retry})
                elif outcome == "cancelled":  # stopped on a cancel request: not an error of the task
                    span.set_attribute(t.TASK_OUTCOME, "cancelled")
                    span.add_event("cancelled", {"conveyor.cancel.reason": ack.cancelled.reason})
                else:
                    span.set_attribute(t.TASK_OUTCOME, "succeeded")
        if span is not None:
            span.end()
        metrics = self.metrics
        if metrics is not None:
            metrics.active.add(-1, metrics.attrs(self.queue, self.name))
            metrics.duration.record(time.perf_counter() - self.started,
                                    metrics.attrs(self.queue, self.name, error_type))
