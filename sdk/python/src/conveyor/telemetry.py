"""OpenTelemetry for Conveyor: trace context in task headers, producer spans, and set-up from OTEL_*.

Everything here uses the OpenTelemetry *API* only (a required, light dependency). Until a
process installs an SDK tracer provider, every hook is a no-op that costs one function call
and one type check; nothing is recorded and nothing is exported. A producer opts in with::

    from conveyor.telemetry import configure_from_env
    configure_from_env("billing-api")          # honours OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_*, ...

or by installing its own TracerProvider as usual; Conveyor uses whichever is global.
`conveyor-scheduler` and `conveyor-worker` call `configure_from_env` themselves.

Spans follow the OpenTelemetry messaging semantic conventions, named "{operation} {queue}":

- producer: "send {queue}" (PRODUCER) around Submit of one task. A batch gets one
  "send" span (CLIENT) around the call and one "create {queue}" span (PRODUCER) per task.
  The producer span's context goes into the task's headers as W3C `traceparent` /
  `tracestate`, and into the Submit call's metadata.
- scheduler: the gRPC server span of each unary call, "enqueue {queue}", "dispatch {queue}"
  and "cancel {queue}" (INTERNAL), children of the task's context from its headers.
- worker: "process {queue}" (CONSUMER) around each attempt, child of the task's context;
  a retry is another "process" span in the same trace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

SYSTEM = "conveyor"
"""Value of messaging.system on every Conveyor span and metric."""
INSTRUMENTATION = "conveyor"
TRACEPARENT = "traceparent"
_CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")

# Attribute names (OpenTelemetry messaging semantic conventions, plus conveyor.*).
MESSAGING_SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"
TASK_NAME = "conveyor.task.name"
TASK_ATTEMPT = "conveyor.task.attempt"
TASK_PRIORITY = "conveyor.task.priority"
TASK_STATE = "conveyor.task.state"
TASK_DUPLICATE = "conveyor.task.duplicate"
TASK_OUTCOME = "conveyor.task.outcome"
WORKER_ID = "conveyor.worker.id"

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                    30.0, 60.0, 300.0)
"""Histogram bucket bounds, in seconds, for wait and run times."""

_INACTIVE_TRACER_PROVIDERS: tuple[type, ...] = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
try:  # the proxy the metrics API hands out before a provider is set
    from opentelemetry.metrics._internal import _ProxyMeterProvider
    _INACTIVE_METER_PROVIDERS: tuple[type, ...] = (_ProxyMeterProvider, metrics.NoOpMeterProvider)
except ImportError:  # pragma: no cover - a future API without the private name
    _INACTIVE_METER_PROVIDERS = (metrics.NoOpMeterProvider,)

_cached: tuple[object, trace.Tracer] | None = None


def tracer() -> trace.Tracer | None:
    """Conveyor's tracer, or None while no SDK tracer provider is installed (the fast path)."""
    global _cached  # noqa: PLW0603 - one tracer per global provider, looked up once
    provider = trace.get_tracer_provider()
    if isinstance(provider, _INACTIVE_TRACER_PROVIDERS):
        return None
    cached = _cached
    if cached is None or cached[0] is not provider:
        from conveyor import __version__  # noqa: PLC0415 - conveyor/__init__ imports the clients, which import us

        cached = _cached = (provider, provider.get_tracer(INSTRUMENTATION, __version__))
    return cached[1]


def metrics_enabled() -> bool:
    """True when an SDK meter provider is installed (instruments then record)."""
    return not isinstance(metrics.get_meter_provider(), _INACTIVE_METER_PROVIDERS)


def meter(name: str = INSTRUMENTATION) -> metrics.Meter:
    return metrics.get_meter(name)


# -- trace context in headers ----------------------------------------------------------------

def inject(headers: MutableMapping[str, str], ctx: otel_context.Context | None = None) -> None:
    """Writes the context's W3C trace headers (traceparent, tracestate, baggage) into `headers`."""
    propagate.inject(headers, context=ctx)


def extract(headers: Mapping[str, str]) -> otel_context.Context:
    """The trace context carried in a task's headers (an empty context when there is none)."""
    return propagate.extract(headers)


def has_context(headers: Mapping[str, str]) -> bool:
    return TRACEPARENT in headers


def parent_context(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The headers' context when they carry one, else None (meaning: the current context)."""
    return propagate.extract(headers) if TRACEPARENT in headers else None


def span_name(operation: str, queue: str) -> str:
    return f"{operation} {queue}" if queue else operation


def set_error(span: trace.Span, error_type: str, message: str, stacktrace: str = "") -> None:
    """Marks a span failed from an error reported as text (a task's TaskError, say)."""
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}" if message else error_type))
    span.set_attribute(ERROR_TYPE, error_type or "Error")
    attrs = {"exception.type": error_type, "exception.message": message}
    if stacktrace:
        attrs["exception.stacktrace"] = stacktrace
    span.add_event("exception", attrs)


# -- producer spans ----------------------------------------------------------------------------

class _NotTracing:
    """What `producer_spans` returns while tracing is off: does nothing, allocates nothing."""

    __slots__ = ()
    metadata = None

    def __enter__(self) -> _NotTracing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def sent(self, response: Any) -> None:
        return None


NOT_TRACING = _NotTracing()


class _ProducerSpans:
    """Spans of one Submit call. Use as a context manager around the call; pass the
    metadata to the call and the response to `sent`."""

    __slots__ = ("batch", "metadata", "spans")

    def __init__(self, batch: trace.Span | None, spans: list[trace.Span], metadata: list[tuple[str, str]] | None):
        self.batch = batch
        self.spans = spans
        self.metadata = metadata

    def __enter__(self) -> _ProducerSpans:
        return self

    def sent(self, response: Any) -> None:
        """Records what the scheduler assigned: each task's id and (routed) queue."""
        queues = set()
        operation = "create" if self.batch is not None else "send"
        for span, sub in zip(self.spans, response.tasks, strict=False):
            queues.add(sub.queue)
            if span.is_recording():
                span.update_name(span_name(operation, sub.queue))
                span.set_attributes({MESSAGE_ID: sub.id, DESTINATION: sub.queue, TASK_DUPLICATE: sub.duplicate}
                                    if sub.duplicate else {MESSAGE_ID: sub.id, DESTINATION: sub.queue})
        if self.batch is not None and len(queues) == 1 and self.batch.is_recording():
            (queue,) = queues
            self.batch.update_name(span_name("send", queue))
            self.batch.set_attribute(DESTINATION, queue)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        everything = [*self.spans, *([self.batch] if self.batch is not None else [])]
        if exc is not None:
            status = Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            for span in everything:
                span.set_status(status)
                span.set_attribute(ERROR_TYPE, type(exc).__name__)
            (self.batch or self.spans[0]).record_exception(exc)
        for span in everything:
            span.end()


def _task_attributes(operation: str, spec: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {MESSAGING_SYSTEM: SYSTEM, OPERATION_NAME: operation, OPERATION_TYPE: operation,
                             TASK_NAME: spec.name, TASK_PRIORITY: spec.priority}
    if spec.queue:
        attrs[DESTINATION] = spec.queue
    return attrs


def producer_spans(request: Any) -> _ProducerSpans | _NotTracing:
    """Starts the producer spans of a SubmitRequest and injects their contexts into its tasks'
    headers (the request is changed in place). A task whose headers already hold a
    `traceparent` gets a span that is that context's child (so a caller can continue a trace
    that arrived from elsewhere); otherwise the parent is the current span, if any."""
    tr = tracer()
    if tr is None:
        return NOT_TRACING
    specs = request.tasks
    if len(specs) == 1:
        spec = specs[0]
        span = tr.start_span(span_name("send", spec.queue), context=parent_context(spec.headers),
                             kind=SpanKind.PRODUCER)
        if span.is_recording():
            span.set_attributes(_task_attributes("send", spec))
        inject(spec.headers, trace.set_span_in_context(span))
        metadata = [(k, spec.headers[k]) for k in _CONTEXT_HEADERS if k in spec.headers]
        return _ProducerSpans(None, [span], metadata or None)
    batch = tr.start_span("send", kind=SpanKind.CLIENT)
    if batch.is_recording():
        batch.set_attributes({MESSAGING_SYSTEM: SYSTEM, OPERATION_NAME: "send", OPERATION_TYPE: "send",
                              BATCH_COUNT: len(specs)})
    batch_ctx = trace.set_span_in_context(batch)
    spans = []
    for spec in specs:
        parent = parent_context(spec.headers) or batch_ctx
        span = tr.start_span(span_name("create", spec.queue), context=parent, kind=SpanKind.PRODUCER)
        if span.is_recording():
            span.set_attributes(_task_attributes("create", spec))
        inject(spec.headers, trace.set_span_in_context(span))
        spans.append(span)
    return _ProducerSpans(batch, spans, _metadata(batch_ctx))


def _metadata(ctx: otel_context.Context) -> list[tuple[str, str]] | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return list(carrier.items()) or None


# -- set-up from the environment -------------------------------------------------------------

def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def exporters_for(signal: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Exporter names the OTEL_* variables ask for, for "traces" or "metrics".

    Nothing is exported unless asked: OTEL_{SIGNAL}_EXPORTER names exporters ("otlp",
    "console"; "none" for none), and without it an OTLP endpoint
    (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT) means "otlp".
    """
    env = os.environ if env is None else env
    upper = signal.upper()
    named = env.get(f"OTEL_{upper}_EXPORTER")
    if named is not None:
        return [n for n in (part.strip().lower() for part in named.split(",")) if n and n != "none"]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"):
        return ["otlp"]
    return []


@dataclass
class Telemetry:
    """What `configure_from_env` installed (providers are None for signals left off)."""

    tracer_provider: Any = None
    meter_provider: Any = None

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    @property
    def metrics(self) -> bool:
        return self.meter_provider is not None

    def force_flush(self, timeout_ms: int = 10_000) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flushes and stops exporting (also done at interpreter exit)."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.shutdown()


_EXTRA_HINT = ("the OpenTelemetry SDK is not installed: install the [otlp] extra (pip install 'conveyor[otlp]', "
               "'conveyor-scheduler[otlp]' or 'conveyor-worker[otlp]')")


def configure_from_env(service_name: str) -> Telemetry:
    """Installs global tracer and meter providers exporting as the standard OTEL_* variables say.

    `service_name` is used unless OTEL_SERVICE_NAME (or service.name in
    OTEL_RESOURCE_ATTRIBUTES) names the service. With no exporter asked for (see
    `exporters_for`), with OTEL_SDK_DISABLED=true, or without the [otlp] extra, nothing is
    installed and the API's no-op providers stay: tracing then costs next to nothing.
    Sampling (OTEL_TRACES_SAMPLER), batching (OTEL_BSP_*), the metric interval
    (OTEL_METRIC_EXPORT_INTERVAL), endpoints, headers and TLS are the SDK's own OTEL_* settings.
    """
    if _flag("OTEL_SDK_DISABLED"):
        return Telemetry()
    span_exporters, metric_exporters = exporters_for("traces"), exporters_for("metrics")
    if not span_exporters and not metric_exporters:
        return Telemetry()
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource  # noqa: PLC0415
    except ImportError:
        log.warning("OTEL_* settings ask for telemetry export, but %s; nothing is exported", _EXTRA_HINT)
        return Telemetry()
    detected = OTELResourceDetector().detect()
    resource = Resource.create({} if detected.attributes.get("service.name") else {"service.name": service_name})
    result = Telemetry()
    if span_exporters:
        result.tracer_provider = _tracer_provider(resource, span_exporters)
    if metric_exporters:
        result.meter_provider = _meter_provider(resource, metric_exporters)
    return result


def _tracer_provider(resource: Any, names: Iterable[str]) -> Any:
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    exporters = [e for e in (_span_exporter(n) for n in names) if e is not None]
    if not exporters:
        return None
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER(_ARG)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _meter_provider(resource: Any, names: Iterable[str]) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415

    exporters = [e for e in (_metric_exporter(n) for n in names) if e is not None]
    if not exporters:
        return None
    provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(e) for e in exporters])
    metrics.set_meter_provider(provider)
    return provider


def _protocol(signal: str) -> str:
    env = os.environ
    return (env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc").strip().lower()


def _span_exporter(name: str) -> Any:
    try:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415
            return ConsoleSpanExporter()
        if name == "otlp":
            if _protocol("traces") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                    OTLPSpanExporter,
                )
            return OTLPSpanExporter()
    except ImportError as exc:
        log.warning("cannot export traces with %r (%s): %s", name, _protocol("traces"), exc)
        return None
    log.warning("unknown OTEL_TRACES_EXPORTER %r (supported: otlp, console, none)", name)
    return None


def _metric_exporter(name: str) -> Any:
    try:
        if name == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter  # noqa: PLC0415
            return ConsoleMetricExporter()
        if name == "otlp":
            if _protocol("metrics") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
                    OTLPMetricExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
                    OTLPMetricExporter,
                )
            return OTLPMetricExporter()
    except ImportError as exc:
        log.warning("cannot export metrics with %r (%s): %s", name, _protocol("metrics"), exc)
        return None
    log.warning("unknown OTEL_METRICS_EXPORTER %r (supported: otlp, console, none)", name)
    return None
