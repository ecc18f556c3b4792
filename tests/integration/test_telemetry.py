"""OpenTelemetry: one trace per task from producer to worker, and metrics, exported over OTLP.

An OTLP/gRPC receiver runs in this process; the scheduler and worker are separate processes
that export to it, configured only through OTEL_* variables. The producer is this process,
set up with `conveyor.telemetry.configure_from_env` from the same variables. Every test tags
its processes with its own resource attribute, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry import metrics, trace
from opentelemetry.util._once import Once
from prometheus_client.parser import text_string_to_metric_families

from conveyor import AsyncClient, Client, InvalidArgument, TaskCancelled, TaskFailed, TaskState, group, signature
from conveyor.telemetry import Telemetry, configure_from_env, exporters_for
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.auth_calls import auth_file, bearer
from tests.harness import Cluster, free_port, wait_for
from tests.interop.test_node_interop import node_binary, produce
from tests.otlp_receiver import MetricPoint, OTLPReceiver, ReceivedSpan

APP = "tests.apps.flaky:app"
PRODUCER = "telemetry-test-producer"
RUN_ATTRIBUTE = "conveyor.test.run"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver().start()
    yield r
    r.stop()


def _reset_otel_globals() -> None:
    """Forgets the global providers (as OpenTelemetry's own test utilities do), so the tests
    after these run with the API's no-op providers again."""
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    metrics._internal._METER_PROVIDER = None  # type: ignore[attr-defined]
    metrics._internal._METER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]


@dataclass
class Otel:
    receiver: OTLPReceiver
    run: str
    producer: Telemetry

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        return self.receiver.spans(lambda s: s.resource.get(RUN_ATTRIBUTE) == self.run
                                   and (trace_id is None or s.trace_id == trace_id))

    def wait_trace(self, trace_id: str, names: set[str] = frozenset(), *, count: int | None = None,
                   consumers: int | None = None, what: str = "") -> list[ReceivedSpan]:
        """The trace's spans once they include `names` (and number `count`, with `consumers` CONSUMER spans)."""

        def ready() -> list[ReceivedSpan] | None:
            got = self.spans(trace_id)
            if not names <= {s.name for s in got} or (count is not None and len(got) != count):
                return None
            if consumers is not None and sum(s.kind == "CONSUMER" for s in got) != consumers:
                return None
            return got

        return wait_for(ready, what=what or f"spans {sorted(names)} in trace {trace_id}")

    def metrics(self, name: str, service: str) -> list[MetricPoint]:
        return self.receiver.metrics(lambda m: m.resource.get(RUN_ATTRIBUTE) == self.run and m.name == name
                                     and m.service == service)


@pytest.fixture
def otel(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Otel]:
    """OTEL_* for every process this test starts (inherited through the harness), and this
    process configured as the producer from the same variables."""
    run = uuid.uuid4().hex
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"{RUN_ATTRIBUTE}={run}")
    producer = configure_from_env(PRODUCER)
    assert producer.tracing and producer.metrics
    yield Otel(receiver, run, producer)
    producer.shutdown()
    _reset_otel_globals()


def _start(cluster: Cluster, redis_url: str, queue: str, *args: str) -> str:
    _, target = cluster.scheduler(redis_url, *args)
    cluster.worker(target, APP, queues=queue)
    return target


def _one(spans: list[ReceivedSpan], name: str, **where: object) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in where.items())]
    assert len(found) == 1, f"expected one {name!r} span with {where}, got {len(found)}: " + \
        "\n".join(f"{s.service} {s.kind} {s.name} {s.attributes}" for s in spans)
    return found[0]


def _common(span: ReceivedSpan, queue: str, task_id: str) -> None:
    assert span.attributes["messaging.system"] == "conveyor"
    assert span.attributes["messaging.destination.name"] == queue
    assert span.attributes["messaging.message.id"] == task_id


def test_a_task_is_one_trace_from_producer_to_worker(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-ok"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        handle = client.submit("tel.traced", ["hello"], queue=queue, priority=7)
        assert handle.result(timeout=30) == "hello"
        headers = dict(handle.info().headers)
    otel.producer.force_flush()

    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the producer span")[0]
    names = {"conveyor.v1.TaskService/Submit", f"enqueue {queue}", f"dispatch {queue}", f"process {queue}",
             "tel.traced.inner"}
    spans = otel.wait_trace(send.trace_id, names, what="the scheduler's and worker's spans in the producer's trace")

    # The producer span: PRODUCER, messaging attributes, its context in the task's headers.
    assert (send.kind, send.service, send.parent_span_id) == ("PRODUCER", PRODUCER, "")
    _common(send, queue, handle.id)
    assert send.attributes["messaging.operation.name"] == "send"
    assert send.attributes["conveyor.task.name"] == "tel.traced"
    assert send.attributes["conveyor.task.priority"] == 7
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, span_id, int(flags, 16) & 1) == ("00", send.trace_id, send.span_id, 1)  # sampled

    # The scheduler: the gRPC server span (context from the call's metadata), enqueue, dispatch.
    submit = _one(spans, "conveyor.v1.TaskService/Submit")
    assert (submit.kind, submit.service, submit.parent_span_id) == ("SERVER", "conveyor-scheduler", send.span_id)
    assert submit.attributes["rpc.system"] == "grpc"
    assert submit.attributes["rpc.grpc.status_code"] == 0
    enqueue = _one(spans, f"enqueue {queue}")
    assert (enqueue.kind, enqueue.service, enqueue.parent_span_id) == ("INTERNAL", "conveyor-scheduler", send.span_id)
    _common(enqueue, queue, handle.id)
    assert enqueue.attributes["conveyor.task.state"] == "queued"
    dispatch = _one(spans, f"dispatch {queue}")
    assert (dispatch.kind, dispatch.service, dispatch.parent_span_id) == ("INTERNAL", "conveyor-scheduler",
                                                                          send.span_id)
    _common(dispatch, queue, handle.id)
    assert dispatch.attributes["conveyor.task.attempt"] == 1
    assert dispatch.attributes["conveyor.worker.id"].startswith("worker-")

    # The worker: a CONSUMER span whose parent is the producer's span, and the handler's own
    # span (a sync handler, in the thread pool) inside it.
    process = _one(spans, f"process {queue}")
    assert (process.kind, process.service, process.parent_span_id) == ("CONSUMER", "conveyor-worker", send.span_id)
    _common(process, queue, handle.id)
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["conveyor.task.name"] == "tel.traced"
    assert process.attributes["conveyor.task.attempt"] == 1
    assert process.attributes["conveyor.task.priority"] == 7
    assert (process.status, process.attributes["conveyor.task.outcome"]) == ("UNSET", "succeeded")
    inner = _one(spans, "tel.traced.inner")
    assert (inner.parent_span_id, inner.service) == (process.span_id, "conveyor-worker")
    assert send.start_ns <= enqueue.start_ns <= process.start_ns
    assert enqueue.start_ns // 1_000_000 <= dispatch.start_ns // 1_000_000  # the lease time is in ms
    assert dispatch.start_ns <= dispatch.end_ns <= process.start_ns


def test_a_retry_is_another_attempt_span_in_the_same_trace(otel: Otel, cluster: Cluster, redis_url: str,
                                                          tmp_path: Path) -> None:
    queue = "tel-retry"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        handle = client.submit("tel.flaky", [str(tmp_path / "failed-once"), "second time"], queue=queue,
                               max_retries=1, retry_backoff=0.05)
        assert handle.result(timeout=30) == "second time"
        with pytest.raises(TaskFailed):
            client.submit("tel.fail", ["no retries"], queue=queue).result(timeout=30)
    otel.producer.force_flush()

    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"
                             and s.attributes.get("messaging.message.id") == handle.id], what="the producer span")[0]

    def attempts() -> list[ReceivedSpan] | None:
        got = [s for s in otel.spans(send.trace_id) if s.name in (f"process {queue}", f"dispatch {queue}")]
        return got if len(got) == 4 else None

    spans = wait_for(attempts, what="two dispatch and two process spans")
    first = _one(spans, f"process {queue}", **{"conveyor.task.attempt": 1})
    second = _one(spans, f"process {queue}", **{"conveyor.task.attempt": 2})
    for attempt in (first, second):
        assert (attempt.kind, attempt.parent_span_id, attempt.trace_id) == ("CONSUMER", send.span_id, send.trace_id)
        _common(attempt, queue, handle.id)
    # The failed attempt: status ERROR, the exception recorded; the retry succeeded.
    assert first.status == "ERROR"
    assert first.status_message == "RuntimeError: first attempt fails on purpose"
    assert first.attributes["error.type"] == "RuntimeError"
    assert first.attributes["conveyor.task.retry_requested"] is True
    assert first.attributes["conveyor.task.outcome"] == "failed"
    (event,) = [attrs for name, attrs in first.events if name == "exception"]
    assert event["exception.type"] == "RuntimeError"
    assert event["exception.message"] == "first attempt fails on purpose"
    assert "raise RuntimeError" in event["exception.stacktrace"]
    assert second.status == "UNSET"
    assert first.end_ns <= second.start_ns
    for n in (1, 2):
        dispatch = _one(spans, f"dispatch {queue}", **{"conveyor.task.attempt": n})
        assert dispatch.parent_span_id == send.span_id

    # A task that fails for good: its only attempt span is an error.
    failed_send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"
                                    and s.attributes.get("conveyor.task.name") == "tel.fail"], what="tel.fail")[0]
    failed = wait_for(lambda: [s for s in otel.spans(failed_send.trace_id) if s.kind == "CONSUMER"],
                      what="tel.fail's attempt span")
    assert [(s.status, s.status_message, s.parent_span_id) for s in failed] == [
        ("ERROR", "ValueError: no retries", failed_send.span_id)]


def test_a_cancelled_task_shows_the_cancel_in_its_trace(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-cancel"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        handle = client.submit("tel.add", [1, 2], queue=queue, countdown=60)
        assert client.cancel(handle.id) is TaskState.CANCELLED
        with pytest.raises(TaskCancelled):
            handle.result(timeout=10)
    otel.producer.force_flush()

    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the producer span")[0]
    names = {"conveyor.v1.TaskService/Submit", f"enqueue {queue}", f"cancel {queue}"}
    spans = otel.wait_trace(send.trace_id, names, what="the enqueue and cancel spans in the producer's trace")
    enqueue = _one(spans, f"enqueue {queue}")
    assert enqueue.attributes["conveyor.task.state"] == "scheduled"
    cancel = _one(spans, f"cancel {queue}")
    assert (cancel.kind, cancel.service, cancel.parent_span_id) == ("INTERNAL", "conveyor-scheduler", send.span_id)
    _common(cancel, queue, handle.id)
    assert cancel.attributes["conveyor.task.state"] == "cancelled"
    # The Cancel call itself is a server span of its own (the caller sent no context), linked.
    (cancel_call,) = wait_for(lambda: [s for s in otel.spans() if s.name == "conveyor.v1.TaskService/Cancel"],
                              what="the Cancel call's span")
    assert cancel_call.kind == "SERVER"
    assert cancel.links == [(cancel_call.trace_id, cancel_call.span_id)]
    assert not [s for s in spans if s.kind == "CONSUMER"]


def test_cancelling_a_running_task_ends_its_attempt_span_cancelled(otel: Otel, cluster: Cluster, redis_url: str,
                                                                    tmp_path: Path) -> None:
    queue = "tel-cancel-running"
    target = _start(cluster, redis_url, queue)
    started = tmp_path / "started"
    with Client(target) as client:
        handle = client.submit("tel.block", [str(started)], queue=queue)
        wait_for(started.exists, what="the task to start")
        client.cancel(handle.id)
        with pytest.raises(TaskCancelled):
            handle.result(timeout=30)
    otel.producer.force_flush()
    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the producer span")[0]
    spans = otel.wait_trace(send.trace_id, {f"process {queue}", f"cancel {queue}"})
    process = _one(spans, f"process {queue}")
    assert (process.parent_span_id, process.status) == (send.span_id, "UNSET")  # a cancel is not a failure
    assert process.attributes["conveyor.task.outcome"] == "cancelled"
    assert [name for name, _ in process.events] == ["cancelled"]
    cancel = _one(spans, f"cancel {queue}")
    assert cancel.parent_span_id == send.span_id
    assert cancel.attributes["conveyor.task.state"] == "active"  # asked to stop; its worker stops it


def test_a_worker_flushes_its_spans_when_it_stops(otel: Otel, cluster: Cluster, redis_url: str,
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Even when it abandons a handler thread that outlived the grace period (and exits at once)."""
    queue = "tel-flush"
    _, target = cluster.scheduler(redis_url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # this worker exports only when it stops
    worker = cluster.worker(target, APP, "--grace-period", "0.2", queues=queue)
    started = tmp_path / "started"
    with Client(target) as client:
        handle = client.submit("tel.add", [3, 4], queue=queue)
        assert handle.result(timeout=30) == 7
        stuck = client.submit("tel.sleep", [str(started), 60], queue=queue)
        wait_for(started.exists, what="the sleeping task to start")
    assert not [s for s in otel.spans() if s.name == f"process {queue}"]
    assert worker.terminate() == 0
    assert "abandoning 1 handler threads" in worker.output()
    def flushed() -> list[ReceivedSpan] | None:
        got = [s for s in otel.spans() if s.name == f"process {queue}"]
        return got if len(got) == 2 else None

    spans = wait_for(flushed, 10, what="the spans flushed at shutdown")
    by_task = {s.attributes["messaging.message.id"]: s for s in spans}
    assert by_task[handle.id].attributes["conveyor.task.outcome"] == "succeeded"
    assert by_task[stuck.id].attributes["conveyor.task.outcome"] == "interrupted"  # handed back


def test_a_rejected_submit_is_an_error_in_its_trace(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-rejected"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client, pytest.raises(InvalidArgument):
        client.submit("tel.add", [1, 2], queue=queue, priority=12)
    otel.producer.force_flush()
    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the producer span")[0]
    assert (send.status, send.attributes["error.type"]) == ("ERROR", "InvalidArgument")
    assert "priority" in send.status_message
    spans = otel.wait_trace(send.trace_id, {f"enqueue {queue}", "conveyor.v1.TaskService/Submit"})
    enqueue = _one(spans, f"enqueue {queue}")
    assert (enqueue.status, enqueue.parent_span_id) == ("ERROR", send.span_id)
    assert "must be 0 to 9, got 12" in enqueue.status_message
    submit = _one(spans, "conveyor.v1.TaskService/Submit")
    assert submit.attributes["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT: the caller's fault, status unset
    assert submit.status == "UNSET"


def test_trace_context_crosses_languages(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    node = node_binary()
    queue = "tel-node"
    target = _start(cluster, redis_url, queue)
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    status, line = produce(node, target, "tel.add", [20, 22], queue=queue, traceparent=f"00-{trace_id}-{parent_id}-01")
    assert (status, line["result"]) == (0, 42), line

    spans = otel.wait_trace(trace_id, {f"process {queue}", f"enqueue {queue}", f"dispatch {queue}"},
                            what="the Python worker's span in Node's trace")
    process = _one(spans, f"process {queue}")
    assert (process.kind, process.service, process.parent_span_id) == ("CONSUMER", "conveyor-worker", parent_id)
    _common(process, queue, line["id"])
    enqueue = _one(spans, f"enqueue {queue}")
    assert enqueue.parent_span_id == parent_id
    # Node sent no trace context in the call's metadata: the Submit span is a root, linked.
    (submit,) = wait_for(lambda: [s for s in otel.spans() if s.name == "conveyor.v1.TaskService/Submit"],
                         what="the Submit call's span")
    assert submit.trace_id != trace_id
    assert submit.parent_span_id == ""
    assert enqueue.links == [(submit.trace_id, submit.span_id)]


def test_a_producer_without_tracing_still_gets_one_trace_from_the_scheduler(
        otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-untraced"
    target = _start(cluster, redis_url, queue)
    _reset_otel_globals()  # this process now produces without any tracer provider
    with Client(target) as client:
        handle = client.submit("tel.add", [1, 1], queue=queue)
        assert handle.result(timeout=30) == 2
        traceparent = client.get_task(handle.id).headers["traceparent"]
    trace_id, enqueue_id = traceparent.split("-")[1:3]
    spans = otel.wait_trace(trace_id, count=4, what="Submit, enqueue, dispatch and process spans")
    submit = _one(spans, "conveyor.v1.TaskService/Submit")
    enqueue = _one(spans, f"enqueue {queue}")
    assert (submit.parent_span_id, enqueue.parent_span_id, enqueue.span_id) == ("", submit.span_id, enqueue_id)
    assert _one(spans, f"dispatch {queue}").parent_span_id == enqueue_id
    assert _one(spans, f"process {queue}").parent_span_id == enqueue_id


def test_a_beat_firing_starts_a_trace_at_the_scheduler(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-beat"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        client.schedules.create("tel-tick", "tel.add", [1, 1], every=0.5, queue=queue)
        wait_for(lambda: client.schedules.get("tel-tick").fire_count >= 1, 15, what="a firing")
        task_id = client.schedules.get("tel-tick").last_task_id
        client.schedules.delete("tel-tick")
        assert client.handle(task_id).result(timeout=30) == 2
        traceparent = client.get_task(task_id).headers["traceparent"]
    trace_id, enqueue_id = traceparent.split("-")[1:3]
    spans = otel.wait_trace(trace_id, {f"enqueue {queue}", f"dispatch {queue}", f"process {queue}"})
    enqueue = _one(spans, f"enqueue {queue}")
    assert (enqueue.span_id, enqueue.parent_span_id, enqueue.service) == (enqueue_id, "", "conveyor-scheduler")
    _common(enqueue, queue, task_id)
    assert _one(spans, f"process {queue}").parent_span_id == enqueue_id


def test_batch_submit_gets_a_send_span_and_a_create_span_per_task(otel: Otel, cluster: Cluster,
                                                                   redis_url: str) -> None:
    from conveyor import Call, SubmitOptions  # noqa: PLC0415

    queue = "tel-batch"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        handles = client.submit_many([Call("tel.add", [i, i], {}, SubmitOptions(queue=queue)) for i in range(3)])
        assert [h.result(timeout=30) for h in handles] == [0, 2, 4]
    otel.producer.force_flush()
    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the batch's send span")[0]
    assert (send.kind, send.attributes["messaging.batch.message_count"]) == ("CLIENT", 3)
    spans = otel.wait_trace(send.trace_id, consumers=3, what="three attempt spans")
    for h in handles:
        create = _one(spans, f"create {queue}", **{"messaging.message.id": h.id})
        assert (create.kind, create.parent_span_id) == ("PRODUCER", send.span_id)
        process = _one(spans, f"process {queue}", **{"messaging.message.id": h.id})
        assert process.parent_span_id == create.span_id


def test_the_async_client_traces_its_submits_too(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-async"
    target = _start(cluster, redis_url, queue)

    async def submit() -> tuple[str, int]:
        async with AsyncClient(target) as client:
            handle = await client.submit("tel.add", [2, 3], queue=queue)
            return handle.id, await handle.result(timeout=30)

    task_id, result = asyncio.run(submit())
    assert result == 5
    otel.producer.force_flush()
    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the producer span")[0]
    assert (send.kind, send.attributes["messaging.message.id"]) == ("PRODUCER", task_id)
    spans = otel.wait_trace(send.trace_id, {f"process {queue}"})
    assert _one(spans, f"process {queue}").parent_span_id == send.span_id


def test_a_send_while_tracing_is_a_traced_submit(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    """send() waits like submit() while tracing, so its producer span parents the whole trace."""
    queue = "tel-send"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        handle = client.send("tel.add", [4, 5], queue=queue)
        assert handle._pending is None  # answered before send returned
        assert handle.result(timeout=30) == 9
    otel.producer.force_flush()
    send = wait_for(lambda: [s for s in otel.spans() if s.name == f"send {queue}"], what="the producer span")[0]
    assert (send.kind, send.attributes["messaging.message.id"]) == ("PRODUCER", handle.id)
    spans = otel.wait_trace(send.trace_id, {"conveyor.v1.TaskService/Submit", f"process {queue}"})
    assert _one(spans, f"process {queue}").parent_span_id == send.span_id


def test_metrics_arrive_with_their_names_and_counts(otel: Otel, cluster: Cluster, redis_url: str,
                                                    tmp_path: Path) -> None:
    """Over OTLP, and the same counts on the scheduler's Prometheus /metrics beside it."""
    queue = "tel-metrics"
    metrics_port = free_port()
    target = _start(cluster, redis_url, queue, "--metrics-port", str(metrics_port))
    with Client(target) as client:
        ok = [client.submit("tel.add", [i, 1], queue=queue) for i in range(5)]
        flaky = client.submit("tel.flaky", [str(tmp_path / "marker")], queue=queue, max_retries=1,
                              retry_backoff=0.05)
        fail = client.submit("tel.fail", [], queue=queue)
        later = client.submit("tel.add", [0, 0], queue=queue, countdown=600)
        client.cancel(later.id)
        assert [h.result(timeout=30) for h in ok] == [1, 2, 3, 4, 5]
        assert flaky.result(timeout=30) is None
        with pytest.raises(TaskFailed):
            fail.result(timeout=30)
        delayed = client.submit("tel.add", [0, 0], queue=queue, countdown=600)

    sched, work = "conveyor-scheduler", "conveyor-worker"

    def value(name: str, service: str, **attrs: object) -> float:
        return sum(p.value for p in otel.metrics(name, service)
                   if all(p.attributes.get(k) == v for k, v in attrs.items()))

    q = {"messaging.destination.name": queue}
    expected = [
        ("conveyor.tasks.submitted", sched, q, 9),
        ("conveyor.tasks.completed", sched, {**q, "conveyor.task.outcome": "succeeded"}, 6),
        ("conveyor.tasks.completed", sched, {**q, "conveyor.task.outcome": "failed"}, 1),
        ("conveyor.tasks.completed", sched, {**q, "conveyor.task.outcome": "cancelled"}, 1),
        ("conveyor.tasks.retried", sched, q, 1),
        ("conveyor.task.wait.duration", sched, q, 8),  # a histogram: the count of attempts leased
        ("conveyor.queue.depth", sched, {**q, "conveyor.task.state": "scheduled"}, 1),
        ("conveyor.queue.depth", sched, {**q, "conveyor.task.state": "active"}, 0),
        ("conveyor.leases.active", sched, {}, 0),
        ("conveyor.workers.connected", sched, {}, 1),
        ("messaging.process.duration", work, q, 8),  # a histogram: one run time per attempt
        ("messaging.process.duration", work, {**q, "error.type": "ValueError"}, 1),
        ("conveyor.worker.tasks.active", work, q, 0),
    ]

    def mismatches() -> list[str]:
        return [f"{name} {attrs}: {value(name, svc, **attrs)} != {want}" for name, svc, attrs, want in expected
                if not otel.metrics(name, svc) or value(name, svc, **attrs) != want]

    try:
        wait_for(lambda: not mismatches(), timeout=30, what="the expected metric values")
    except AssertionError:
        raise AssertionError("metrics differ: " + "; ".join(mismatches())) from None
    (wait,) = [p for p in otel.metrics("conveyor.task.wait.duration", sched)
               if p.attributes == {"messaging.system": "conveyor", **q}]
    assert wait.kind == "histogram" and wait.total >= 0  # seconds ready-but-not-leased (backoff excluded)
    assert {p.attributes["conveyor.task.state"] for p in otel.metrics("conveyor.queue.depth", sched)
            if p.attributes["messaging.destination.name"] == queue} == {"queued", "scheduled", "active", "dead"}
    assert delayed.id

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        families = list(text_string_to_metric_families(resp.read().decode()))
    # the OTLP histogram stays off /metrics (the endpoint has a meter provider of its own)
    assert not [f for f in families if f.name == "conveyor_task_wait_duration_seconds"]
    prom = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    labels = {"messaging_system": "conveyor", "messaging_destination_name": queue}
    assert prom[("conveyor_tasks_retried_total", frozenset(labels.items()))] == 1
    assert prom[("conveyor_tasks_completed_total",
                 frozenset({**labels, "conveyor_task_outcome": "cancelled"}.items()))] == 1


def test_nothing_is_exported_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    assert exporters_for("traces") == [] and exporters_for("metrics") == []
    assert not configure_from_env("nothing").tracing
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert exporters_for("traces", env) == ["otlp"] == exporters_for("metrics", env)
    assert exporters_for("traces", {**env, "OTEL_TRACES_EXPORTER": "none"}) == []
    assert exporters_for("metrics", {"OTEL_METRICS_EXPORTER": "console,otlp"}) == ["console", "otlp"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not configure_from_env("nothing").tracing
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_a_watch_is_a_server_span_in_the_callers_trace(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    """Server-streaming calls get their SERVER span from the same interceptor as unary ones."""
    queue = "tel-watch"
    target = _start(cluster, redis_url, queue)
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with Client(target) as client:
        handle = client.submit("tel.add", [2, 3], queue=queue)
        stub = task_service_pb2_grpc.TaskServiceStub(client._channel)
        events = list(stub.WatchTask(task_service_pb2.WatchTaskRequest(task_id=handle.id), timeout=30,
                                     metadata=[("traceparent", f"00-{trace_id}-{parent_id}-01")]))
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    (watch,) = otel.wait_trace(trace_id, {"conveyor.v1.TaskService/WatchTask"}, count=1)
    assert (watch.kind, watch.service, watch.parent_span_id) == ("SERVER", "conveyor-scheduler", parent_id)
    assert watch.attributes["rpc.grpc.status_code"] == 0



def test_a_workflow_is_one_trace_from_its_submit_to_every_node(otel: Otel, cluster: Cluster, redis_url: str) -> None:
    queue = "tel-workflow"
    target = _start(cluster, redis_url, queue)
    with Client(target) as client:
        handle = client.submit_workflow(signature("tel.add", [1, 1], queue=queue)
                                        | group(signature("tel.add", [10], queue=queue),
                                                signature("tel.add", [20], queue=queue)))
        assert handle.result(timeout=30) == [12, 22]
        node_ids = [n.task_id for n in handle.get().nodes]
    submit = wait_for(lambda: [s for s in otel.spans() if s.name == "conveyor.v1.WorkflowService/SubmitWorkflow"],
                      what="the SubmitWorkflow span")[0]
    def every_node(kind: str) -> list[ReceivedSpan] | None:
        found = [s for s in otel.spans(submit.trace_id) if s.name == f"{kind} {queue}"]
        return found if len(found) == 3 else None

    for kind in ("enqueue", "dispatch", "process"):  # the two nodes the scheduler submitted later joined it too
        spans = wait_for(lambda kind=kind: every_node(kind), what=f"every node's {kind} span in the workflow's trace")
        assert sorted(s.attributes["messaging.message.id"] for s in spans) == sorted(node_ids), kind


def test_a_call_refused_by_auth_makes_no_server_span(otel: Otel, cluster: Cluster, redis_url: str,
                                                     tmp_path: Path) -> None:
    """Auth runs before telemetry: a refused call (no token, an unknown one, the wrong role, a
    refused Pipeline message; unary, server-streaming and bidirectional) leaves no span, while a
    call auth lets through gets its span, in the caller's trace."""
    reader = "reader-secret-0123456789"
    path = auth_file(tmp_path / "tokens.toml", {reader: ("viewer", ["reader"], None)})
    scheduler, target = cluster.scheduler(redis_url, "--auth-file", str(path))
    submit = task_service_pb2.SubmitRequest(tasks=[task_pb2.TaskSpec(name="tel.add", queue="tel-auth")])
    refused: list[str] = []

    def traced(secret: str | None) -> list[tuple[str, str]]:
        trace_id = uuid.uuid4().hex
        refused.append(trace_id)
        return [("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"), *bearer(secret)]

    with grpc.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        unauthenticated, denied = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
        for secret, code in ((None, unauthenticated), ("unknown-token-0123456789", unauthenticated), (reader, denied)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Submit(submit, metadata=traced(secret), timeout=10)
            assert err.value.code() == code  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:
            list(stub.WatchTask(task_service_pb2.WatchTaskRequest(task_id="0" * 26), metadata=traced(None),
                                timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:  # the reader's submit message on its Pipeline stream
            list(stub.Pipeline(iter([task_service_pb2.PipelineRequest(call_id=1, submit=submit)]),
                               metadata=traced(reader), timeout=10))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        # Let through (and then NOT_FOUND): their spans are the sign that the refused calls' would be here by now.
        allowed, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        metadata = [("traceparent", f"00-{allowed}-{parent}-01"), *bearer(reader)]
        with pytest.raises(grpc.RpcError) as err:
            stub.GetTask(task_service_pb2.GetTaskRequest(task_id="0" * 26), timeout=10, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:  # a watch runs under the auth's credential check
            list(stub.WatchTask(task_service_pb2.WatchTaskRequest(task_id="0" * 26), timeout=10, metadata=metadata))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    spans = otel.wait_trace(allowed, {"conveyor.v1.TaskService/GetTask", "conveyor.v1.TaskService/WatchTask"},
                            count=2)
    assert {(s.service, s.parent_span_id, s.attributes["rpc.grpc.status_code"]) for s in spans} == {
        ("conveyor-scheduler", parent, 5)}
    scheduler_spans = [s for s in otel.spans() if s.service == "conveyor-scheduler"]
    assert [s.name for s in scheduler_spans if s.trace_id in refused] == []
    assert [s.name for s in scheduler_spans if s.name.endswith("/Submit") or s.name.startswith("enqueue")] == []
    assert "Failed to detach context" not in scheduler.output()  # the watch's span stayed in one context


def test_a_watch_under_auth_keeps_one_span_across_its_messages(otel: Otel, cluster: Cluster, redis_url: str,
                                                                tmp_path: Path) -> None:
    """With an auth file, a server-streaming call is stepped by the credential check (auth._held):
    its span still starts with the first message and ends with the last, in the caller's trace."""
    producer = "producer-secret-0123456789"
    scheduler, target = cluster.scheduler(redis_url, "--auth-file", str(auth_file(
        tmp_path / "tokens.toml", {producer: ("web", ["producer"], None)})))
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with Client(target, token=producer) as client:
        handle = client.submit("tel.add", [2, 3], queue="tel-nobody")
        stub = task_service_pb2_grpc.TaskServiceStub(client._channel)
        events = stub.WatchTask(task_service_pb2.WatchTaskRequest(task_id=handle.id), timeout=30,
                                metadata=[("traceparent", f"00-{trace_id}-{parent_id}-01")])
        assert next(events).state == task_pb2.TASK_STATE_QUEUED
        handle.cancel()
        assert [e.state for e in events][-1] == task_pb2.TASK_STATE_CANCELLED
    (watch,) = otel.wait_trace(trace_id, {"conveyor.v1.TaskService/WatchTask"}, count=1)
    assert (watch.kind, watch.parent_span_id, watch.attributes["rpc.grpc.status_code"]) == ("SERVER", parent_id, 0)
    assert "Failed to detach context" not in scheduler.output()
