"""TaskService.Pipeline: Submit and GetResults calls multiplexed over one stream.

The raw-stub tests drive one stream message by message against a real scheduler (answers
are read by a thread and matched by call_id, never by order); the SDK tests use Client and
AsyncClient, which pipeline by default, with real worker processes. A recording interceptor
shows which path (stream or unary calls) a client actually took.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import queue
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration

from conveyor import AsyncClient, Call, Client, NotFound, ResultTimeout, TaskState, Unavailable
from conveyor.errors import DeadlineExceeded, InvalidArgument, RPCError, mapped_rpc_errors
from conveyor.pipeline import PipelineCallError, SyncPipeline
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster, unknown_id_like, wait_for

Spec = task_pb2.TaskSpec
PipelineRequest = task_service_pb2.PipelineRequest
PipelineResponse = task_service_pb2.PipelineResponse
PIPELINE = "/conveyor.v1.TaskService/Pipeline"
STREAM_DEADLINE = 20.0  # a raw stream never outlives this, so a missing answer fails instead of hanging
ANSWER_WAIT = 10.0
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]  # 3
TASK_KEYS = "cv:{q:default}:t:*"


# -- helpers ---------------------------------------------------------------------------------


def add_spec(x: int, y: int) -> task_pb2.TaskSpec:
    return Spec(name="t.add", payload=f'{{"args": [{x}, {y}]}}'.encode())


def gated_spec(gate: Path, value: str) -> task_pb2.TaskSpec:
    return Spec(name="t.wait_file", payload=f'{{"args": ["{gate}", "{value}"]}}'.encode())


def names(details: str, field: str) -> bool:
    """`field` appears as a whole field path ("tasks" does not match "tasks[0].name")."""
    return re.search(re.escape(field) + r"(?![\w.\[])", details) is not None


def task_keys(db: redis.Redis) -> set[bytes]:
    """Every key but the beat leader's lease, which the scheduler renews on its own."""
    return {k for k in db.scan_iter() if not k.startswith(b"cv:{beat}:")}


class RawPipeline:
    """One Pipeline stream driven by hand: requests go in one at a time (the stream stays open
    until half_close), answers are collected by a reader thread."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.SimpleQueue[PipelineRequest | None] = queue.SimpleQueue()
        self.call = task_service_pb2_grpc.TaskServiceStub(channel).Pipeline(iter(self._requests.get, None),
                                                                            timeout=STREAM_DEADLINE)
        self.answers: queue.SimpleQueue[PipelineResponse] = queue.SimpleQueue()
        self.ended = threading.Event()
        self.status: tuple[grpc.StatusCode, str] | None = None
        self._reader = threading.Thread(target=self._read, name="raw-pipeline-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for resp in self.call:
                self.answers.put(resp)
            self.status = (grpc.StatusCode.OK, "")
        except grpc.RpcError as exc:
            self.status = (exc.code(), exc.details() or "")
        self.ended.set()

    def send(self, request: PipelineRequest) -> None:
        self._requests.put(request)

    def submit(self, call_id: int, *specs: task_pb2.TaskSpec, wait_results: Duration | None = None) -> None:
        request = task_service_pb2.SubmitRequest(tasks=specs)
        if wait_results is not None:
            request.wait_results.CopyFrom(wait_results)
        self.send(PipelineRequest(call_id=call_id, submit=request))

    def get_results(self, call_id: int, *task_ids: str, wait: Duration | None = None) -> None:
        request = task_service_pb2.GetResultsRequest(task_ids=task_ids)
        if wait is not None:
            request.wait.CopyFrom(wait)
        self.send(PipelineRequest(call_id=call_id, get_results=request))

    def half_close(self) -> None:
        self._requests.put(None)

    def answer(self) -> PipelineResponse:
        try:
            return self.answers.get(timeout=ANSWER_WAIT)
        except queue.Empty:
            raise AssertionError(f"no answer within {ANSWER_WAIT}s (stream status: {self.status})") from None

    def answers_for(self, *call_ids: int) -> dict[int, PipelineResponse]:
        """The answers to exactly these calls, in whatever order they come; any other answer fails."""
        got: dict[int, PipelineResponse] = {}
        while len(got) < len(call_ids):
            resp = self.answer()
            assert resp.call_id in call_ids, f"answer to call {resp.call_id}, expected only {call_ids}: {resp}"
            assert resp.call_id not in got, f"call {resp.call_id} answered twice"
            got[resp.call_id] = resp
        return got

    def end(self) -> tuple[grpc.StatusCode, str]:
        assert self.ended.wait(ANSWER_WAIT), "the stream did not end"
        assert self.status is not None
        return self.status

    def close(self) -> None:
        self.half_close()
        self.call.cancel()
        self._reader.join(10)


class CallLog(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Records a sync channel's traffic: unary calls by method, streams opened, and each request
    handed to a Pipeline stream (by kind), so a test can see which path a Client took."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.unary: collections.Counter[str] = collections.Counter()
        self.streams: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()
        self.sent_tasks = 0
        """Tasks in the submit requests sent (concurrent submits may go out merged)."""

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        with self.lock:
            self.unary[client_call_details.method.rsplit("/", 1)[-1]] += 1
        return continuation(client_call_details, request)

    def intercept_stream_stream(self, continuation, client_call_details,  # type: ignore[no-untyped-def]
                                request_iterator):
        with self.lock:
            self.streams[client_call_details.method.rsplit("/", 1)[-1]] += 1

        def watched() -> Iterator[Any]:
            for request in request_iterator:
                with self.lock:
                    self.sent[request.WhichOneof("call")] += 1
                    self.sent_tasks += len(request.submit.tasks)
                yield request

        return continuation(client_call_details, watched())


class LoggedClient:
    """A Client on its own channel with a CallLog on it (closes both)."""

    def __init__(self, target: str, *, pipeline: bool = True, timeout: float = 30.0) -> None:
        self.log = CallLog()
        self._raw = grpc.insecure_channel(target)
        self.client = Client(target, channel=grpc.intercept_channel(self._raw, self.log), pipeline=pipeline,
                             timeout=timeout)

    def __enter__(self) -> LoggedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self._raw.close()


@pytest.fixture
def channel(scheduler: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(scheduler) as ch:
        yield ch


@pytest.fixture
def stream(channel: grpc.Channel) -> Iterator[RawPipeline]:
    s = RawPipeline(channel)
    yield s
    s.close()


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- 1. the raw stream: calls matched by call_id ------------------------------------------------


def test_calls_are_answered_under_their_own_call_ids(stream: RawPipeline, db: redis.Redis) -> None:
    big = 2**64 - 1  # call ids are uint64: the largest is echoed unchanged
    stream.submit(101, add_spec(1, 1))
    stream.submit(102, add_spec(2, 2), add_spec(3, 3))
    stream.submit(big, add_spec(4, 4))
    first = stream.answers_for(101, 102, big)
    assert {cid: r.WhichOneof("reply") for cid, r in first.items()} == {101: "submit", 102: "submit", big: "submit"}
    assert [len(first[cid].submit.tasks) for cid in (101, 102, big)] == [1, 2, 1]
    ids = [t.id for cid in (101, 102, big) for t in first[cid].submit.tasks]
    assert len(set(ids)) == 4
    assert {t.state for cid in first for t in first[cid].submit.tasks} == {task_pb2.TASK_STATE_QUEUED}
    assert sum(1 for _ in db.scan_iter(match=TASK_KEYS)) == 4  # each submit stored its tasks, once

    # Mixed calls in one burst: each answer carries the reply of its own request.
    stream.get_results(201, *ids)
    stream.submit(202, add_spec(5, 5))
    stream.get_results(203, ids[2])
    stream.get_results(204, ids[0], ids[3])
    second = stream.answers_for(201, 202, 203, 204)
    assert [r.task_id for r in second[201].get_results.results] == ids
    assert second[202].WhichOneof("reply") == "submit" and len(second[202].submit.tasks) == 1
    assert second[202].submit.tasks[0].id not in ids
    assert [r.task_id for r in second[203].get_results.results] == [ids[2]]
    assert [r.task_id for r in second[204].get_results.results] == [ids[0], ids[3]]
    assert {r.state for r in second[201].get_results.results} == {task_pb2.TASK_STATE_QUEUED}
    assert not stream.ended.is_set()


def test_a_failed_call_gets_an_error_and_the_stream_goes_on(stream: RawPipeline, db: redis.Redis) -> None:
    stream.submit(1, add_spec(1, 2))  # the queue exists, so a partial write of a refused call would show
    (ok,) = stream.answers_for(1).values()
    before = task_keys(db)

    bad = add_spec(1, 2)
    bad.priority = 42
    stream.submit(2, bad)
    stream.submit(3, add_spec(0, 0), bad)  # one bad task refuses the whole batch
    refused = stream.answers_for(2, 3)
    for call_id, field in ((2, "tasks[0].priority"), (3, "tasks[1].priority")):
        assert refused[call_id].WhichOneof("reply") == "error", refused[call_id]
        assert refused[call_id].error.code == INVALID
        assert names(refused[call_id].error.message, field), refused[call_id].error.message
        assert "42" in refused[call_id].error.message
    assert task_keys(db) == before, "a refused Submit changed Redis"

    stream.get_results(4)  # no ids
    stream.get_results(5, ok.submit.tasks[0].id, "nope")
    errors = stream.answers_for(4, 5)
    assert [(errors[c].WhichOneof("reply"), errors[c].error.code) for c in (4, 5)] == [("error", INVALID)] * 2
    assert names(errors[4].error.message, "task_ids"), errors[4].error.message
    assert names(errors[5].error.message, "task_ids[1]") and "nope" in errors[5].error.message

    stream.submit(6, add_spec(7, 7))
    stream.get_results(7, ok.submit.tasks[0].id)
    after = stream.answers_for(6, 7)
    assert after[6].WhichOneof("reply") == "submit" and after[6].submit.tasks[0].state == task_pb2.TASK_STATE_QUEUED
    assert after[7].get_results.results[0].state == task_pb2.TASK_STATE_QUEUED
    assert not stream.ended.is_set()


def test_a_waiting_call_does_not_hold_up_the_others(cluster: Cluster, scheduler: str, stream: RawPipeline,
                                                    tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    stream.submit(1, gated_spec(gate, "released"))
    slow = stream.answers_for(1)[1].submit.tasks[0].id
    stream.get_results(2, slow, wait=Duration(seconds=15))  # cannot be answered before the gate opens

    # While call 2 waits, a dozen other calls on the same stream are answered, one after another.
    for n in range(12):
        call_id = 10 + n
        if n % 3 == 0:
            stream.submit(call_id, add_spec(n, n), wait_results=Duration(seconds=15))  # run by the worker
        elif n % 3 == 1:
            stream.submit(call_id, add_spec(n, n))
        else:
            stream.get_results(call_id, slow)
        resp = stream.answer()
        assert resp.call_id == call_id, f"expected the answer to call {call_id}, got {resp}"
        if n % 3 == 0:
            assert resp.submit.results[0].state == task_pb2.TASK_STATE_SUCCEEDED
            assert resp.submit.results[0].result.data == str(2 * n).encode()
        elif n % 3 == 2:
            assert resp.get_results.results[0].state in (task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_ACTIVE)

    gate.touch()
    waited = stream.answer()
    assert waited.call_id == 2
    (result,) = waited.get_results.results
    assert (result.task_id, result.state, result.result.data) == (slow, task_pb2.TASK_STATE_SUCCEEDED,
                                                                  b'"released"')


# -- 2. what ends the stream ----------------------------------------------------------------------


def test_a_request_with_no_call_ends_the_stream(stream: RawPipeline, db: redis.Redis) -> None:
    stream.submit(1, add_spec(1, 2))
    assert stream.answers_for(1)[1].WhichOneof("reply") == "submit"
    before = task_keys(db)
    stream.send(PipelineRequest(call_id=77))  # neither submit nor get_results
    code, details = stream.end()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert names(details, "call") and "77" in details, details
    assert stream.answers.empty(), "the refused request was answered as a call"
    assert task_keys(db) == before


@contextlib.contextmanager
def bytes_pipeline(channel: grpc.Channel) -> Iterator[tuple[queue.SimpleQueue[bytes | None], Any]]:
    """A Pipeline stream of raw bytes (RawPipeline sends messages), so a test can send what no
    client would: (requests, call)."""
    raw = channel.stream_stream(PIPELINE, request_serializer=None, response_deserializer=None)
    requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    call = raw(iter(requests.get, None), timeout=STREAM_DEADLINE)
    try:
        yield requests, call
    finally:
        requests.put(None)
        call.cancel()


def test_malformed_bytes_end_the_stream(channel: grpc.Channel, db: redis.Redis) -> None:
    before = task_keys(db)
    with bytes_pipeline(channel) as (requests, call):
        requests.put(b"\xff\xff\xff\xff garbage")  # the stream stays open: the server ends it on its own
        with pytest.raises(grpc.RpcError) as info:
            for answer in call:
                pytest.fail(f"garbage was answered: {answer!r}")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert names(info.value.details() or "", "conveyor.v1.PipelineRequest"), info.value.details()
    assert task_keys(db) == before


def test_malformed_bytes_after_good_calls(channel: grpc.Channel, db: redis.Redis) -> None:
    """Answers already given stand; the garbage ends the stream; no task is half-stored."""
    with bytes_pipeline(channel) as (requests, call):
        requests.put(PipelineRequest(call_id=1, submit=task_service_pb2.SubmitRequest(
            tasks=[add_spec(1, 1)])).SerializeToString())
        first = PipelineResponse.FromString(next(call))
        assert first.call_id == 1 and len(first.submit.tasks) == 1
        before = task_keys(db)
        requests.put(b"\x08\x02\x12\xff\xff\xff\x0f")  # call_id 2, then a submit that runs past the end
        with pytest.raises(grpc.RpcError) as info:
            for answer in call:
                pytest.fail(f"garbage was answered: {PipelineResponse.FromString(answer)}")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert "conveyor.v1.PipelineRequest" in (info.value.details() or "")
    assert task_keys(db) == before


# -- 3. half-close ----------------------------------------------------------------------------------


def test_half_close_answers_the_calls_in_flight(cluster: Cluster, scheduler: str, stream: RawPipeline) -> None:
    cluster.worker(scheduler)
    stream.submit(1, add_spec(20, 22), wait_results=Duration(seconds=15))
    stream.half_close()
    resp = stream.answer()
    assert resp.call_id == 1
    assert [(r.state, r.result.data) for r in resp.submit.results] == [(task_pb2.TASK_STATE_SUCCEEDED, b"42")]
    assert stream.end() == (grpc.StatusCode.OK, "")
    assert stream.answers.empty()


def test_half_close_waits_for_a_call_still_waiting(cluster: Cluster, scheduler: str, stream: RawPipeline,
                                                   tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    stream.submit(1, gated_spec(gate, "late"))
    task_id = stream.answers_for(1)[1].submit.tasks[0].id
    stream.get_results(2, task_id, wait=Duration(seconds=15))
    stream.half_close()  # call 2 cannot be answered yet: the gate is shut
    gate.touch()
    resp = stream.answer()
    assert resp.call_id == 2
    assert [(r.state, r.result.data) for r in resp.get_results.results] == [(task_pb2.TASK_STATE_SUCCEEDED,
                                                                             b'"late"')]
    assert stream.end() == (grpc.StatusCode.OK, "")


def test_half_close_with_nothing_in_flight_ends_ok(stream: RawPipeline) -> None:
    stream.half_close()
    assert stream.end() == (grpc.StatusCode.OK, "")
    assert stream.answers.empty()


# -- 4. the sync SDK over the pipeline ------------------------------------------------------------


def test_threads_share_one_pipelined_client(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler, concurrency=8)
    threads_n, per_thread = 8, 50
    handles: dict[int, list[Any]] = {}
    values: dict[int, list[int]] = {}
    failures: list[BaseException] = []
    with LoggedClient(scheduler) as logged:
        client = logged.client

        def work(t: int) -> None:
            try:
                mine = [client.submit("t.add", [t * 1000, i]) for i in range(per_thread)]
                handles[t] = mine
                values[t] = client.results(mine[::2], timeout=30) + [h.result(timeout=30) for h in mine[1::2]]
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(t,), name=f"producer-{t}") for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads), "a producer hung"
        assert failures == []
        ids = [h.id for t in range(threads_n) for h in handles[t]]
        assert len(ids) == threads_n * per_thread and len(set(ids)) == len(ids)
        for t in range(threads_n):
            assert values[t] == ([t * 1000 + i for i in range(0, per_thread, 2)]
                                 + [t * 1000 + i for i in range(1, per_thread, 2)])
        # It all went over one stream: no unary Submit or GetResult(s).
        assert logged.log.streams == {"Pipeline": 1}
        assert logged.log.sent_tasks == threads_n * per_thread
        assert 1 <= logged.log.sent["submit"] <= threads_n * per_thread
        # Results come pushed on the stream: result() reads nothing, and results() reads only
        # what had not finished when it was called (one batched call per thread at most).
        assert logged.log.sent.get("get_results", 0) <= threads_n
        assert not {"Submit", "GetResults", "GetResult"} & set(logged.log.unary), logged.log.unary


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "unary"])
def test_sdk_calls_and_errors_are_the_same_on_both_paths(cluster: Cluster, scheduler: str, tmp_path: Path,
                                                         pipeline: bool) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    with LoggedClient(scheduler, pipeline=pipeline) as logged:
        client = logged.client
        assert client.run("t.add", [20, 22], timeout=30) == 42
        handles = client.submit_many([Call("t.add", [i, i]) for i in range(10)])
        assert client.results(handles, timeout=30) == [2 * i for i in range(10)]
        assert [r.task_id for r in client.wait_many(handles[:3], timeout=30)] == [h.id for h in handles[:3]]
        done = client.get_result(handles[0].id)
        assert (done.task_id, done.state, done.result.data) == (handles[0].id, TaskState.SUCCEEDED, b"0")

        with pytest.raises(ResultTimeout):
            client.run("t.wait_file", [str(gate), "slow"], timeout=0.3)
        unknown = unknown_id_like(handles[0].id)
        with pytest.raises(NotFound, match=unknown):
            client.get_result(unknown)
        with pytest.raises(NotFound):
            client.wait(unknown, timeout=5)
        with pytest.raises(InvalidArgument, match=r"tasks\[0\]\.priority"):
            client.submit("t.add", [1, 2], priority=42)
        with pytest.raises(InvalidArgument, match="nope"):
            client.get_result("nope")
        gate.touch()

        log = logged.log
        if pipeline:
            assert log.streams == {"Pipeline": 1}
            assert not {"Submit", "GetResults", "GetResult"} & set(log.unary), log.unary
        else:
            assert not log.streams and not log.sent
            assert log.unary["Submit"] >= 3 and log.unary["GetResults"] >= 2 and log.unary["GetResult"] >= 2


def test_a_call_timeout_on_the_stream_is_deadline_exceeded(cluster: Cluster, scheduler: str,
                                                           tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    with Client(scheduler) as client, grpc.insecure_channel(scheduler) as ch:
        slow = client.submit("t.wait_file", [str(gate), "late"])
        fast = client.submit("t.add", [2, 3])
        assert fast.result(timeout=30) == 5
        pipe = SyncPipeline(ch)
        try:
            waiting = task_service_pb2.GetResultsRequest(task_ids=[slow.id], wait=Duration(seconds=15))
            with pytest.raises(DeadlineExceeded), mapped_rpc_errors():
                pipe.get_results(waiting, timeout=0.3)
            # The stream outlives the timed-out call: the next calls get their own answers, also
            # once the late answer to the abandoned call comes in.
            other = pipe.get_results(task_service_pb2.GetResultsRequest(task_ids=[fast.id]), timeout=10)
            assert [(r.task_id, r.result.data) for r in other.results] == [(fast.id, b"5")]
            gate.touch()
            final = pipe.get_results(waiting, timeout=30)
            assert [(r.task_id, r.state, r.result.data) for r in final.results] == [
                (slow.id, task_pb2.TASK_STATE_SUCCEEDED, b'"late"')]
            again = pipe.get_results(task_service_pb2.GetResultsRequest(task_ids=[fast.id, slow.id]), timeout=10)
            assert [r.task_id for r in again.results] == [fast.id, slow.id]
            with pytest.raises(PipelineCallError) as info:  # a refused call: the shape of a unary RpcError
                pipe.submit(task_service_pb2.SubmitRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tasks" in info.value.details()
        finally:
            pipe.close()


def test_closing_a_client_fails_its_waiting_call(cluster: Cluster, scheduler: str, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    outcome: list[BaseException | object] = []
    with LoggedClient(scheduler) as logged:
        client = logged.client
        handle = client.submit("t.wait_file", [str(gate), "never"])

        def wait() -> None:
            try:
                outcome.append(handle.result(timeout=20))
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait, name="waiter")
        waiter.start()
        # result() waits for the pushed outcome (its slot is there since the submit's answer).
        assert client._pipeline is not None and client._pipeline.pushed.slot(handle.id) is not None
        client.close()
        waiter.join(10)
        assert not waiter.is_alive(), "a call waiting on a closed client hung"
    gate.touch()
    (err,) = outcome
    assert isinstance(err, RPCError), f"expected an RPCError, got {err!r}"
    assert err.code == grpc.StatusCode.CANCELLED, err


# -- 5. the stream breaks: the scheduler goes away and comes back ---------------------------------


def _consumer_threads() -> int:
    """Threads of grpc's that feed a stream's requests from its iterator (grpc names them "_run")."""
    count = 0
    for frame in sys._current_frames().values():
        f: FrameType | None = frame
        while f is not None and f.f_code.co_name != "consume_request_iterator":
            f = f.f_back
        count += f is not None
    return count


def test_a_new_stream_after_the_scheduler_restarts(cluster: Cluster, redis_url: str, db: redis.Redis) -> None:
    proc, target = cluster.scheduler(redis_url, name="scheduler-1")
    port = int(target.rsplit(":", 1)[1])
    outcome: list[BaseException | object] = []
    with LoggedClient(target) as logged:
        client = logged.client
        first = client.submit("t.add", [1, 2])

        def in_flight() -> None:  # nobody runs the task: the call waits on the stream
            try:
                outcome.append(client.run("t.add", [3, 4]))
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=in_flight, name="in-flight")
        waiter.start()
        wait_for(lambda: sum(1 for _ in db.scan_iter(match=TASK_KEYS)) == 2, 10,
                 what="the in-flight run's task to be stored")
        proc.kill()
        waiter.join(10)
        assert not waiter.is_alive(), "the call in flight hung when the scheduler died"
        (err,) = outcome
        assert isinstance(err, Unavailable), f"expected Unavailable, got {err!r}"

        cluster.scheduler(redis_url, port=port, name="scheduler-2")
        second = client.submit("t.add", [5, 6])  # no idempotency key, so not retried: the first try works
        assert second.id != first.id
        assert client.get_result(first.id).state == TaskState.QUEUED
        assert logged.log.streams == {"Pipeline": 2}, "the broken stream was not replaced by a new one"

        cluster.worker(target)
        assert client.results([first, second], timeout=30) == [3, 11]
    assert logged.log.streams == {"Pipeline": 2}


def test_a_closed_client_leaves_no_stream_threads_behind(cluster: Cluster, redis_url: str) -> None:
    """Every stream a client opened, the broken ones too, lets go of its request thread by close()."""
    baseline = _consumer_threads()
    proc, target = cluster.scheduler(redis_url, name="scheduler-1")
    port = int(target.rsplit(":", 1)[1])
    with Client(target) as client:
        client.submit("t.add", [1, 2])
        assert _consumer_threads() >= baseline + 1
        proc.kill()
        proc, _ = cluster.scheduler(redis_url, port=port, name="scheduler-2")
        wait_for(lambda: _submits(client), 10, what="a submit to get through on a new stream")
    wait_for(lambda: _consumer_threads() <= baseline, 5,
             what=f"the request threads of closed streams to end ({_consumer_threads() - baseline} left)")


def _submits(client: Client) -> bool:
    try:
        client.submit("t.add", [1, 2])
    except Unavailable:
        return False
    return True


# -- 6. the async client ---------------------------------------------------------------------------


def test_async_client_many_concurrent_calls_on_one_stream(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler, concurrency=8)

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            async def one(i: int) -> tuple[str, list[Any]]:
                handle = await client.submit("t.add", [i, 10_000])
                return handle.id, await client.results([handle], timeout=30)

            got = await asyncio.gather(*(one(i) for i in range(200)))
            assert [values for _, values in got] == [[i + 10_000] for i in range(200)]
            assert len({task_id for task_id, _ in got}) == 200
            # the same stream still serves a batch and an unknown id
            handles = await client.submit_many([Call("t.add", [i, 1]) for i in range(5)])
            assert await client.results(handles, timeout=30) == [1, 2, 3, 4, 5]
            unknown = unknown_id_like(handles[0].id)
            with pytest.raises(NotFound):
                await client.get_result(unknown)
            with pytest.raises(InvalidArgument, match=r"tasks\[0\]\.priority"):
                await client.submit("t.add", [1, 2], priority=42)

    asyncio.run(main())


def test_async_close_with_a_call_waiting(cluster: Cluster, scheduler: str, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    problems: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: problems.append(context))
        client = AsyncClient(scheduler)
        try:
            handle = await client.submit("t.wait_file", [str(gate), "never"])
            waiter = asyncio.create_task(handle.result(timeout=20))
            # Round trips on the same stream after the waiter started: by then its call is on the wire.
            for i in range(3):
                assert await client.run("t.add", [i, i], timeout=20) == 2 * i
            assert not waiter.done(), "the waiting call returned before the task could finish"
        finally:
            await client.close()
        with pytest.raises(RPCError) as info:
            await asyncio.wait_for(waiter, 10)
        assert info.value.code == grpc.StatusCode.CANCELLED, info.value
        # The SDK's own tasks (the stream's reader) are over; grpc's internals may still be winding down.
        ours = [t for t in asyncio.all_tasks() - {asyncio.current_task()}
                if "/conveyor/" in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")]
        assert not ours, f"SDK tasks left running after close: {ours}"

    asyncio.run(main())
    gc.collect()  # a task destroyed while pending would be reported to the handler now
    gate.touch()
    assert [c for c in problems if not _grpc_poller_after_close(c)] == [], f"the loop reported: {problems}"


def _grpc_poller_after_close(context: dict[str, Any]) -> bool:
    """grpc.aio's own poller thread waking a loop that asyncio.run has just closed (it schedules
    PollerCompletionQueue._handle_events for events still in flight): grpc's teardown, seen
    under load, not a task or callback of the SDK."""
    handle = repr(context.get("handle", ""))
    exc = context.get("exception")
    return ("PollerCompletionQueue._handle_events" in handle and isinstance(exc, RuntimeError)
            and "Event loop is closed" in str(exc))
