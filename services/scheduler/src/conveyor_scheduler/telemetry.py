"""OpenTelemetry in the scheduler: spans for gRPC calls, enqueue, dispatch and cancel; metrics.

`setup(hooks, view, endpoint)` runs once per server, after `configure_from_env` installed (or
did not install) the SDK providers and after the Prometheus endpoint (if any) was opened. It
adds `SchedulerTelemetry` to the replica's task-event hooks (`task_events`: stored, leased,
finished) and returns it, for the server's interceptor and Pipeline's call spans. When neither
tracing nor metrics is on it adds nothing and returns None, so the hot path pays one call per
event. What it reads of the scheduler comes in a `SchedulerView`: it never holds the Core.

Spans (see conveyor.telemetry for the whole trace):
- "conveyor.v1.TaskService/Submit" etc. (SERVER) for every unary and server-streaming
  (WatchTask) conveyor.* call, parent taken from the call's `traceparent` metadata, and for each
  call a Pipeline stream carries (`server_span` makes them all). WorkerService/Connect gets no
  span: one would last as long as the worker's connection; its work shows as dispatch spans.
- "enqueue {queue}" (INTERNAL) per submitted task (Submit calls and beat firings alike), child
  of the task's header context and linked to the Submit span. A task that arrives without trace
  context gets the enqueue span's context written into its headers (its parent is then the
  Submit span, or nothing for a beat firing), so its dispatch and worker spans form one trace.
- "dispatch {queue}" (INTERNAL) per leased attempt, from the lease to the push to the worker.
- "cancel {queue}" (INTERNAL) when a task is cancelled, in the task's trace.

Metrics (meter "conveyor.scheduler"): conveyor.tasks.submitted, conveyor.tasks.completed
(by conveyor.task.outcome), conveyor.tasks.retried, conveyor.task.wait.duration,
conveyor.queue.depth (by conveyor.task.state), conveyor.leases.active, conveyor.workers.connected.
They are on while a Prometheus endpoint is open or an SDK meter provider is installed (OTLP).
The hot path only counts, in plain Python (`tallies`): the counters are observable instruments
that read those totals when a reader collects. The wait-time histogram is for OTLP only
(OpenTelemetry has no observable histogram, so it costs an SDK call per leased task, made only
when an SDK meter provider is installed); Prometheus gets queue wait and run time percentiles
from the fleet-wide activity buckets instead (`exposition.QueueDepth`). conveyor.queue.depth is
read as ListQueues reads it (`queue_stats.SyncQueueReader`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import redis
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from conveyor import telemetry as t
from conveyor.v1 import task_pb2, task_service_pb2
from conveyor_scheduler.grpc_glue import method_of
from conveyor_scheduler.keys import QueueKeys
from conveyor_scheduler.queue_stats import SyncQueueReader
from conveyor_scheduler.redis_clients import SyncRedis, sync_client
from conveyor_scheduler.store import AckEntry, Submitted
from conveyor_scheduler.tallies import Tally
from conveyor_scheduler.task_events import TaskEventHooks, TaskEvents

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, Meter

    from conveyor_scheduler.config import Limits
    from conveyor_scheduler.exposition import MetricsEndpoint
    from conveyor_scheduler.redis_clients import AsyncRedis
    from conveyor_scheduler.sessions import WorkerSession
    from conveyor_scheduler.validation import NewTask

log = logging.getLogger(__name__)

TASK_SERVICE = "conveyor.v1.TaskService"
STATE_NAMES = {v.number: v.name.removeprefix("TASK_STATE_").lower() for v in task_pb2.TaskState.DESCRIPTOR.values}
SCHEDULED, CANCELLED = task_pb2.TASK_STATE_SCHEDULED, task_pb2.TASK_STATE_CANCELLED
TERMINAL = frozenset({4, 5, 6, 7, 8})
ACCEPTED = task_pb2.ACK_STATUS_ACCEPTED
# gRPC codes that mark a server span as failed (OpenTelemetry RPC semantic conventions).
SERVER_ERROR_CODES = frozenset({2, 4, 12, 13, 14, 15})
TRACE_HEADER_BUDGET = 256
"""Bytes kept free under the header size limit before a traceparent is added to a task."""
MAX_CACHED_ATTRIBUTE_SETS = 10_000
MAX_DEPTH_QUEUES = 1_000
"""Most queues one collection of conveyor.queue.depth reads."""
METER = "conveyor.scheduler"
WAIT_METRIC = "conveyor.task.wait.duration"
WAIT_DESCRIPTION = ("Time an attempt waited ready in its queue (since submit, eta or retry due time) "
                    "before a worker leased it.")
OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """What telemetry reads of its replica, handed over at setup."""

    limits: Limits
    """Header room: a task that arrives without trace context gets the enqueue span's if it fits."""
    redis_url: str
    """For the metric reader's own connection (conveyor.queue.depth)."""
    redis: AsyncRedis
    """Reads a cancelled task's headers (its trace)."""
    queue_of: Callable[[str], Awaitable[str]]
    """A task id's queue."""
    open_sessions: Callable[[], set[WorkerSession]]
    """The worker streams open on this replica (conveyor.leases.active, conveyor.workers.connected)."""


def setup(hooks: TaskEventHooks, view: SchedulerView, endpoint: MetricsEndpoint | None = None
          ) -> SchedulerTelemetry | None:
    """Creates the instruments and adds them to `hooks` (None when telemetry is off). Metrics go
    to `endpoint` (Prometheus) when given, and to the global meter provider when an SDK one is
    installed (`configure_from_env` for OTLP)."""
    tracer = t.tracer()
    otlp = t.metrics_enabled()
    if tracer is None and endpoint is None and not otlp:
        return None
    tel = SchedulerTelemetry(view, tracer, endpoint, otlp)
    hooks.add(tel)
    return tel


@contextlib.contextmanager
def server_span(tracer: trace.Tracer, method: str, parent: otel_context.Context | None) -> Iterator[trace.Span]:
    """The SERVER span of one call: the one place they are made, for unary and server-streaming
    calls (the interceptor) and for each call on a Pipeline stream. The span is current inside;
    `record_status` gives it the call's outcome."""
    service, _, name = method.rpartition("/")
    span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER,
                             attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name})
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)
        span.end()


def record_status(span: trace.Span, code: int, message: str, exc: BaseException | None = None) -> None:
    """The call's gRPC status on its span; an error status for the codes that mean a server fault."""
    span.set_attribute("rpc.grpc.status_code", code)
    if code in SERVER_ERROR_CODES:
        span.set_status(Status(StatusCode.ERROR, message))
        if exc is not None and not isinstance(exc, grpc.aio.AbortError):
            span.record_exception(exc)


def _no_status(code: int, message: str) -> None:
    pass


class SchedulerTelemetry(TaskEvents):
    """The spans and metrics of one replica: a task-events hook (enqueue spans and counts,
    dispatch spans and waits, completions) and the state the interceptor and the observable
    instruments read."""

    def __init__(self, view: SchedulerView, tracer: trace.Tracer | None, endpoint: MetricsEndpoint | None = None,
                 otlp: bool = False) -> None:
        self.view = view
        self.tracer = tracer
        self.metrics = endpoint is not None or otlp
        self._attrs: dict[tuple[str, ...], dict[str, str]] = {}
        self._redis: SyncRedis | None = None
        # Counted on the hot path, read by the observable counters (see the module doc).
        self.submitted = Tally()  # (queue, task name)
        self.completed = Tally()  # (queue, outcome)
        self.retried = Tally()  # (queue,)
        self.wait: Histogram | None = None
        """The OTel wait-time histogram (with an SDK meter provider only: OTLP)."""
        self._queues: SyncQueueReader | None = None
        if endpoint is not None:
            self._instruments(endpoint.meter(METER))
        if otlp:
            meter = t.meter(METER)
            self._instruments(meter)
            self.wait = meter.create_histogram(WAIT_METRIC, unit="s", description=WAIT_DESCRIPTION,
                                               explicit_bucket_boundaries_advisory=t.DURATION_BUCKETS)

    def _instruments(self, meter: Meter) -> None:
        """The observable instruments, on one meter provider's meter (Prometheus's, or OTLP's)."""
        meter.create_observable_counter(
            "conveyor.tasks.submitted", callbacks=[self._observer(self.submitted, t.DESTINATION, t.TASK_NAME)],
            unit="{task}", description="New tasks stored, from Submit calls and beat firings (duplicates excluded).")
        meter.create_observable_counter(
            "conveyor.tasks.completed", callbacks=[self._observer(self.completed, t.DESTINATION, t.TASK_OUTCOME)],
            unit="{task}",
            description="Tasks that reached a final state through an ack or a cancel, by conveyor.task.outcome.")
        meter.create_observable_counter(
            "conveyor.tasks.retried", callbacks=[self._observer(self.retried, t.DESTINATION)], unit="{task}",
            description="Failed attempts scheduled to run again.")
        meter.create_observable_gauge(
            "conveyor.queue.depth", callbacks=[self._observe_depth], unit="{task}",
            description="Tasks per queue and state (queued, scheduled, active, dead), read from Redis.")
        meter.create_observable_gauge(
            "conveyor.leases.active", callbacks=[self._observe_leases], unit="{lease}",
            description="Leases held by workers streaming from this scheduler replica.")
        meter.create_observable_gauge(
            "conveyor.workers.connected", callbacks=[self._observe_workers], unit="{worker}",
            description="Workers with a stream open to this scheduler replica.")

    # -- attribute sets, built once per distinct value ------------------------------------------

    def attrs(self, *pairs: str) -> dict[str, str]:
        """Attribute dict for (key, value, key, value, ...), cached: no per-task dict churn."""
        cached = self._attrs.get(pairs)
        if cached is None:
            cached = {t.MESSAGING_SYSTEM: t.SYSTEM, **dict(zip(pairs[::2], pairs[1::2], strict=True))}
            if len(self._attrs) < MAX_CACHED_ATTRIBUTE_SETS:
                self._attrs[pairs] = cached
        return cached

    # -- task events ----------------------------------------------------------------------------

    def leased(self, leased: Sequence[task_pb2.LeasedTask], worker_id: str) -> None:
        if leased:
            self._dispatched(leased, worker_id)

    def finished(self, entries: Sequence[tuple[str, AckEntry]], outcomes: Sequence[task_pb2.AckOutcome]) -> None:
        if self.metrics:
            self._acked(entries, outcomes)

    @contextlib.contextmanager
    def pipelined_call(self, method: str) -> Iterator[Callable[[int, str], None]]:
        """The SERVER span of one call on a Pipeline stream, as for the unary call it stands for (a
        pipelined caller is not tracing, so the span is a root). Yields a function that records the
        call's status code (and message when it failed)."""
        tracer = self.tracer
        if tracer is None:
            yield _no_status
            return
        with server_span(tracer, method, None) as span:
            yield lambda code, message: record_status(span, code, message)

    def _dispatched(self, leased: Sequence[task_pb2.LeasedTask], worker_id: str) -> None:
        if self.wait is not None:
            self._count_waits(leased)
        if self.tracer is None:
            return
        now_ns = time.time_ns()
        for lt in leased:
            task = lt.task
            if t.TRACEPARENT in task.headers:
                start_ns = min(task.started_at.ToMilliseconds() * 1_000_000, now_ns)
                span = self.tracer.start_span(t.span_name("dispatch", task.queue), context=t.extract(task.headers),
                                              kind=SpanKind.INTERNAL, start_time=start_ns)
                if span.is_recording():
                    span.set_attributes({
                        t.MESSAGING_SYSTEM: t.SYSTEM, t.OPERATION_NAME: "dispatch", t.DESTINATION: task.queue,
                        t.MESSAGE_ID: task.id, t.TASK_NAME: task.name, t.TASK_ATTEMPT: task.attempt,
                        t.TASK_PRIORITY: task.priority, t.WORKER_ID: worker_id})
                span.end(end_time=now_ns)

    def _count_waits(self, leased: Sequence[task_pb2.LeasedTask]) -> None:
        """Each attempt's wait: from the later of its creation and its eta (a delayed task, a
        retry) to its start, recorded per run of one queue (a dispatch is one queue's; a Poll's
        leases may be several queues'). In whole ms from the Timestamps' fields, which the store
        sets in ms: Timestamp.ToMilliseconds() is Python and would cost more than this loop."""
        queue = ""
        run: list[int] = []
        for lt in leased:
            task = lt.task
            started, created = task.started_at, task.created_at
            wait_ms = (started.seconds - created.seconds) * 1000 + (started.nanos - created.nanos) // 1_000_000
            if task.HasField("eta"):
                eta = task.eta
                since_eta = (started.seconds - eta.seconds) * 1000 + (started.nanos - eta.nanos) // 1_000_000
                wait_ms = min(wait_ms, since_eta)
            if task.queue != queue:
                self._record_waits(queue, run)
                queue, run = task.queue, []
            run.append(wait_ms if wait_ms > 0 else 0)
        self._record_waits(queue, run)

    def _record_waits(self, queue: str, waits_ms: list[int]) -> None:
        if waits_ms and self.wait is not None:
            attributes = self.attrs(t.DESTINATION, queue)
            for ms in waits_ms:
                self.wait.record(ms / 1000, attributes)

    def _acked(self, entries: Sequence[tuple[str, AckEntry]], outcomes: Sequence[task_pb2.AckOutcome]) -> None:
        counts = collections.Counter((queue, outcome.state) for (queue, _), outcome
                                     in zip(entries, outcomes, strict=False) if outcome.status == ACCEPTED)
        for (queue, state), n in counts.items():
            if state == SCHEDULED:
                self.retried.add((queue,), n)
            elif state in TERMINAL:
                self.completed.add((queue, STATE_NAMES[state]), n)

    # -- submit -------------------------------------------------------------------------------

    def storing(self, specs: Sequence[task_pb2.TaskSpec]) -> Enqueue:
        """Starts one enqueue span per task before the tasks are stored (see the module doc)."""
        spans: list[trace.Span] = []
        if self.tracer is not None:
            current = trace.get_current_span().get_span_context()  # the Submit span; none for the beat
            limits = self.view.limits
            for spec in specs:
                headers = spec.headers
                links = None
                if t.TRACEPARENT in headers:
                    parent = t.extract(headers)
                    if current.is_valid and trace.get_current_span(parent).get_span_context().trace_id != (
                            current.trace_id):
                        links = [Link(current)]
                else:
                    parent = None  # the current span: the Submit call's, or a new trace for a beat firing
                span = self.tracer.start_span(t.span_name("enqueue", spec.queue), context=parent,
                                              kind=SpanKind.INTERNAL, links=links)
                if span.is_recording():
                    span.set_attributes({t.MESSAGING_SYSTEM: t.SYSTEM, t.OPERATION_NAME: "enqueue",
                                         t.TASK_NAME: spec.name, t.TASK_PRIORITY: spec.priority})
                if parent is None and len(headers) < limits.max_headers and (
                        sum(len(k) + len(v) for k, v in headers.items()) + TRACE_HEADER_BUDGET
                        <= limits.max_header_bytes):
                    t.inject(headers, trace.set_span_in_context(span))
                spans.append(span)
        return Enqueue(self, specs, spans)

    # -- Cancel -------------------------------------------------------------------------------

    async def cancelled(self, request: Any, response: Any, server: trace.Span | None) -> None:
        queue = await self.view.queue_of(request.task_id)
        if self.metrics and response.state == CANCELLED:
            self.completed.add((queue, "cancelled"))
        if self.tracer is None or server is None:
            return
        raw = await self.view.redis.hget(QueueKeys.of(queue).task(request.task_id), "h")
        headers = json.loads(raw) if raw else {}
        if t.TRACEPARENT not in headers:
            return
        server_ctx = server.get_span_context()
        span = self.tracer.start_span(t.span_name("cancel", queue), context=t.extract(headers), kind=SpanKind.INTERNAL,
                                      links=[Link(server_ctx)], start_time=getattr(server, "start_time", None))
        if span.is_recording():
            span.set_attributes({t.MESSAGING_SYSTEM: t.SYSTEM, t.OPERATION_NAME: "cancel", t.DESTINATION: queue,
                                 t.MESSAGE_ID: request.task_id,
                                 t.TASK_STATE: STATE_NAMES.get(response.state, str(response.state))})
        span.end()

    # -- observable instruments (called on the metric reader's thread) ------------------------

    def _observer(self, tally: Tally, *names: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The callback of an observable counter: `tally`'s totals, keys zipped with attribute `names`."""

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, OVERFLOW_ATTRIBUTES if key is None else  # None: tallies.OVERFLOW
                                self.attrs(*(x for pair in zip(names, key, strict=True) for x in pair)))
                    for key, n in tally.totals().items()]

        return observe

    def _sync_redis(self) -> SyncRedis:
        if self._redis is None:
            self._redis = sync_client(self.view.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            if self._queues is None:
                self._queues = SyncQueueReader(self._sync_redis())
            queues, _ = self._queues.queues(MAX_DEPTH_QUEUES)
            readings = self._queues.read(queues, int(time.time() * 1000))
        except redis.RedisError as exc:
            log.debug("queue depth not observed: %s", exc)
            return []
        out = []
        for queue, (depth, _) in zip(queues, readings, strict=True):
            for state, value in (("queued", depth.queued), ("scheduled", depth.scheduled), ("active", depth.active),
                                 ("dead", depth.dead)):
                out.append(Observation(value, self.attrs(t.DESTINATION, queue, t.TASK_STATE, state)))
        return out

    def _observe_leases(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(len(s.leases) for s in self.view.open_sessions()), self.attrs())]

    def _observe_workers(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(len(self.view.open_sessions()), self.attrs())]


class Enqueue:
    """The enqueue spans (and submitted count) of one batch of new tasks: SchedulerTelemetry's
    `storing` (task_events.Storing)."""

    __slots__ = ("spans", "specs", "tel")

    def __init__(self, tel: SchedulerTelemetry, specs: Sequence[task_pb2.TaskSpec], spans: list[trace.Span]) -> None:
        self.tel = tel
        self.specs = specs
        self.spans = spans

    def __enter__(self) -> Enqueue:
        return self

    def stored(self, submitted: Sequence[Submitted], tasks: Sequence[NewTask]) -> None:
        """Records what the store made of each task (`tasks`, the validated `specs`): id, queue,
        state, duplicate."""
        tel = self.tel
        if tel.metrics:  # the names from `tasks`: reading them from the specs costs more than counting
            counts = collections.Counter((sub.queue, task.name) for sub, task in zip(submitted, tasks, strict=False)
                                         if not sub.duplicate)
            for key, n in counts.items():
                tel.submitted.add(key, n)
        if not self.spans:
            return
        for i, sub in enumerate(submitted):
            if i < len(self.spans) and self.spans[i].is_recording():
                span = self.spans[i]
                span.update_name(t.span_name("enqueue", sub.queue))
                span.set_attributes({t.DESTINATION: sub.queue, t.MESSAGE_ID: sub.id,
                                     t.TASK_STATE: STATE_NAMES.get(sub.state, str(sub.state))})
                if sub.duplicate:
                    span.set_attribute(t.TASK_DUPLICATE, True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        for span in self.spans:
            if exc is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.set_attribute(t.ERROR_TYPE, type(exc).__name__)
            span.end()


def _metadata_context(metadata: Iterable[tuple[str, Any]] | None) -> otel_context.Context | None:
    carrier = {key: value for key, value in metadata or () if key in ("traceparent", "tracestate", "baggage")}
    return t.extract(carrier) if t.TRACEPARENT in carrier else None


def _status_code(context: grpc.aio.ServicerContext, failed: bool) -> int:
    code = context.code()
    if code is None:
        return 2 if failed else 0
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(code)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """SERVER spans for conveyor.* unary and server-streaming calls (WatchTask), plus the Cancel
    telemetry. Of the bidirectional streams, Pipeline makes a span per call it carries
    (`pipelined_call`) and Connect none: its span would last as long as the worker's connection;
    its work shows as dispatch spans."""

    def __init__(self, tel: SchedulerTelemetry) -> None:
        self.tel = tel
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method = method_of(details)
        if handler is None or handler.request_streaming or not method.startswith("/conveyor."):
            return handler
        if handler.response_streaming and self.tel.tracer is None:
            return handler
        cached = self._cache.get(method)
        if cached is None or cached[0] is not handler:
            if handler.response_streaming:
                wrapped = grpc.unary_stream_rpc_method_handler(
                    self._wrap_stream(method, handler.unary_stream),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
            else:
                wrapped = grpc.unary_unary_rpc_method_handler(
                    self._wrap(method, handler.unary_unary), request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
            cached = self._cache[method] = (handler, wrapped)
        return cached[1]

    def _wrap(self, method: str, inner: Handler) -> Handler:
        tel = self.tel
        full = method.lstrip("/")
        service, _, name = full.rpartition("/")
        is_cancel = service == TASK_SERVICE and name == "Cancel"

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            tracer = tel.tracer
            if tracer is None:  # metrics only
                response = await inner(request, context)
                await _after(request, response, None)
                return response
            with server_span(tracer, full, _metadata_context(context.invocation_metadata())) as span:
                try:
                    response = await inner(request, context)
                except BaseException as exc:
                    record_status(span, _status_code(context, failed=True), str(context.details() or exc), exc)
                    raise
                record_status(span, _status_code(context, failed=False), "")
                await _after(request, response, span)
                return response

        async def _after(request: Any, response: Any, span: trace.Span | None) -> None:
            if not is_cancel or not isinstance(request, task_service_pb2.CancelRequest):
                return
            try:
                await tel.cancelled(request, response, span)
            except Exception as exc:  # noqa: BLE001 - telemetry never fails a call
                log.debug("telemetry for %s failed: %s", full, exc)

        return handler

    def _wrap_stream(self, method: str, inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
                     ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        tel = self.tel
        full = method.lstrip("/")

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            tracer = tel.tracer
            assert tracer is not None  # streams are wrapped only while tracing
            with server_span(tracer, full, _metadata_context(context.invocation_metadata())) as span:
                try:
                    async for response in inner(request, context):
                        yield response
                except BaseException as exc:
                    record_status(span, _status_code(context, failed=True), str(context.details() or exc), exc)
                    raise
                record_status(span, _status_code(context, failed=False), "")

        return handler
