"""A small OTLP/gRPC receiver for tests and benchmarks, built on the opentelemetry-proto messages.

It serves opentelemetry.proto.collector.trace.v1.TraceService/Export and
metrics.v1.MetricsService/Export on a free loopback port and keeps what arrives in memory,
flattened to `ReceivedSpan`s and the latest data point of every metric stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

SPAN_KINDS = {v.number: v.name.removeprefix("SPAN_KIND_") for v in trace_pb2.Span.SpanKind.DESCRIPTOR.values}
STATUS_CODES = {v.number: v.name.removeprefix("STATUS_CODE_") for v in trace_pb2.Status.StatusCode.DESCRIPTOR.values}


def value_of(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes_of(v.kvlist_value.values)
    return getattr(v, which) if which else None


def attributes_of(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in kvs}


@dataclass(frozen=True)
class ReceivedSpan:
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    """INTERNAL, SERVER, CLIENT, PRODUCER or CONSUMER."""
    attributes: dict[str, Any]
    status: str
    """UNSET, OK or ERROR."""
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str]]
    """(trace id, span id) of each link."""
    start_ns: int
    end_ns: int

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))


@dataclass
class MetricPoint:
    resource: dict[str, Any]
    name: str
    kind: str
    """sum, gauge or histogram."""
    attributes: dict[str, Any]
    value: float
    """The sum's or gauge's value; a histogram's count."""
    total: float = 0.0
    """A histogram's sum."""

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))


@dataclass
class Received:
    lock: threading.Lock = field(default_factory=threading.Lock)
    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: dict[tuple[Any, ...], MetricPoint] = field(default_factory=dict)
    """The latest point per (resource, metric, attributes) stream: exporters send cumulative totals."""
    span_count: dict[str, int] = field(default_factory=dict)
    """Spans received per service.name (kept even when the spans themselves are not)."""
    keep: bool = True


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
               ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = []
        for rs in request.resource_spans:
            resource = attributes_of(rs.resource.attributes)
            service = str(resource.get("service.name", ""))
            n = sum(len(ss.spans) for ss in rs.scope_spans)
            with self.received.lock:
                self.received.span_count[service] = self.received.span_count.get(service, 0) + n
            if not self.received.keep:
                continue
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(ReceivedSpan(
                        resource=resource, scope=ss.scope.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(), name=s.name, kind=SPAN_KINDS[s.kind],
                        attributes=attributes_of(s.attributes), status=STATUS_CODES[s.status.code],
                        status_message=s.status.message,
                        events=[(e.name, attributes_of(e.attributes)) for e in s.events],
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano))
        with self.received.lock:
            self.received.spans.extend(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.ServicerContext
               ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        points = []
        for rm in request.resource_metrics:
            resource = attributes_of(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    for p in getattr(m, kind).data_points:
                        attrs = attributes_of(p.attributes)
                        if kind == "histogram":
                            point = MetricPoint(resource, m.name, kind, attrs, p.count, p.sum)
                        else:
                            value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                            point = MetricPoint(resource, m.name, kind, attrs, value)
                        points.append(point)
        with self.received.lock:
            for p in points:
                key = (tuple(sorted(p.resource.items())), p.name, tuple(sorted(p.attributes.items())))
                self.received.metrics[key] = p
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OTLPReceiver:
    """An OTLP/gRPC endpoint on 127.0.0.1; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self, *, keep: bool = True) -> None:
        """keep=False only counts spans per service (for benchmarks)."""
        self.received = Received(keep=keep)
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-receiver"))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self.received), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self.received), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OTLPReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def spans(self, where: Callable[[ReceivedSpan], bool] = lambda s: True) -> list[ReceivedSpan]:
        with self.received.lock:
            return [s for s in self.received.spans if where(s)]

    def metrics(self, where: Callable[[MetricPoint], bool] = lambda m: True) -> list[MetricPoint]:
        with self.received.lock:
            return [m for m in self.received.metrics.values() if where(m)]
