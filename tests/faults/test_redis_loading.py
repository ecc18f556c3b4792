"""Redis replaying its AOF after a restart is an outage like a lost connection.

While it loads, Redis answers `-LOADING`; the scheduler must end every kind of call
UNAVAILABLE (which the SDK retries), not UNKNOWN or INTERNAL: unary calls, WatchTask, each
call on a Pipeline stream, and a worker's Connect stream (its hello adopts the leases it
holds). Keyed submits and result reads made through the SDK during the replay retry
and succeed once it is over, and every task ends once, with its own result.

The replay is long because Redis loads a base file of FILLER_KEYS keys with `key-load-delay`
(a debug config: a sleep per key loaded) and serves clients every kilobyte loaded. The test
holds the replay open at HOLD_US per key (up to about a minute) until it has checked what it
checks while `INFO persistence` says `loading:1`, then lets it finish with CONFIG SET
key-load-delay 0: a window of a few seconds, ended by the test, not guessed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration

from conveyor import Call, Client, TaskState
from conveyor.common import CHANNEL_OPTIONS, submit_request
from conveyor.v1 import (
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from tests.harness import Cluster, RedisServer, connected, wait_for

FILLER_KEYS = 50_000
HOLD_US = 1_000
"""key-load-delay while the replay is held open: about 1 ms a key, so at most ~1 min."""
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
PROBE_TIMEOUT = 10.0
TASK_KEYS = "cv:{q:default}:t:*"
REFUSALS = 8
KEY = "ride-1"


def loading(admin: redis.Redis) -> bool | None:
    """Whether Redis is replaying its data; None while it does not accept connections."""
    try:
        return int(admin.info("persistence")["loading"]) == 1
    except redis.exceptions.ConnectionError:
        return None


def rewritten(admin: redis.Redis) -> bool:
    info = admin.info("persistence")
    return info["aof_rewrite_in_progress"] == 0 and info["aof_rewrite_scheduled"] == 0


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop(hard=True)


@pytest.fixture
def admin(aof_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=aof_redis.port, socket_timeout=10)
    assert client.config_get("key-load-delay"), "this redis-server has no key-load-delay config"
    yield client
    client.close()


def make_replay_long(admin: redis.Redis) -> None:
    """FILLER_KEYS keys in database 0, rewritten into the AOF's RDB base (loaded key by key)."""
    with admin.pipeline(transaction=False) as pipe:
        for first in range(0, FILLER_KEYS, 1000):
            pipe.mset({f"filler:{i}": i for i in range(first, first + 1000)})
        pipe.execute()
    wait_for(lambda: rewritten(admin), 30, what="an AOF rewrite in progress to end")
    admin.bgrewriteaof()
    wait_for(lambda: rewritten(admin), 30, what="the AOF rewrite")
    assert admin.info("persistence")["aof_last_bgrewrite_status"] == "ok"


class Refusals(grpc.StreamStreamClientInterceptor):
    """Counts the calls on a client's Pipeline stream that the scheduler answered UNAVAILABLE
    (each one the SDK then retried)."""

    def __init__(self) -> None:
        self.count = 0

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return _Counting(continuation(client_call_details, request_iterator), self)


class _Counting:
    def __init__(self, call: Any, refusals: Refusals) -> None:
        self._call = call
        self._refusals = refusals

    def __iter__(self) -> _Counting:
        return self

    def __next__(self) -> task_service_pb2.PipelineResponse:
        resp = next(self._call)
        if resp.HasField("error") and resp.error.code == UNAVAILABLE.value[0]:
            self._refusals.count += 1
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


@dataclass
class Ride:
    """An SDK call made in its own thread during the replay, and how it ended."""

    refusals: Refusals
    thread: threading.Thread | None = None
    value: object = None
    error: BaseException | None = None
    ended: float = 0.0


def ride(target: str, work: Callable[[Client], object]) -> Ride:
    """Starts `work` on a Client like a README producer's (pipelined, the default 30 s budget)."""
    r = Ride(Refusals())
    channel = grpc.intercept_channel(grpc.insecure_channel(target, options=CHANNEL_OPTIONS), r.refusals)

    def run() -> None:
        try:
            with Client(channel=channel, timeout=30) as client:
                r.value = work(client)
        except BaseException as exc:  # reported by the test
            r.error = exc
        r.ended = time.monotonic()

    r.thread = threading.Thread(target=run, name="ride", daemon=True)
    r.thread.start()
    return r


def keyed_submit_and_result(client: Client) -> tuple[str, object]:
    handle = client.submit("t.add", [2, 3], idempotency_key=KEY)
    return handle.id, handle.result(timeout=30)


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


def probe_every_call_kind(target: str, done_id: str) -> dict[str, Any]:
    """Each kind of call once, against a scheduler whose Redis is loading: what it ended with."""
    submit = submit_request([Call("t.add", (4, 5))])
    stale = "stale-token"
    codes: dict[str, Any] = {}
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        unary = {
            "Submit": lambda: tasks.Submit(submit, timeout=PROBE_TIMEOUT),
            "GetResult": lambda: tasks.GetResult(task_service_pb2.GetResultRequest(task_id=done_id),
                                                 timeout=PROBE_TIMEOUT),
            "GetResults": lambda: tasks.GetResults(task_service_pb2.GetResultsRequest(task_ids=[done_id]),
                                                   timeout=PROBE_TIMEOUT),
            "GetTask": lambda: tasks.GetTask(task_service_pb2.GetTaskRequest(task_id=done_id), timeout=PROBE_TIMEOUT),
            "Cancel": lambda: tasks.Cancel(task_service_pb2.CancelRequest(task_id=done_id), timeout=PROBE_TIMEOUT),
            "Poll": lambda: tasks.Poll(task_service_pb2.PollRequest(queues=["default"], max_tasks=1, worker_id="probe"),
                                       timeout=PROBE_TIMEOUT),
            "Ack": lambda: tasks.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
                task_id=done_id, lease_token=stale, result=task_pb2.TaskResult(data=b"9"))]), timeout=PROBE_TIMEOUT),
            "ExtendLease": lambda: tasks.ExtendLease(task_service_pb2.ExtendLeaseRequest(
                task_id=done_id, lease_token=stale, extend_by=Duration(seconds=30)), timeout=PROBE_TIMEOUT),
            "WatchTask": lambda: list(tasks.WatchTask(task_service_pb2.WatchTaskRequest(task_id=done_id),
                                                      timeout=PROBE_TIMEOUT)),
        }
        for name, call in unary.items():
            codes[name] = status_of(call)

        pipelined = list(tasks.Pipeline(iter([
            task_service_pb2.PipelineRequest(call_id=1, submit=submit),
            task_service_pb2.PipelineRequest(call_id=2, get_results=task_service_pb2.GetResultsRequest(
                task_ids=[done_id]))]), timeout=PROBE_TIMEOUT))
        codes["Pipeline"] = sorted((r.call_id, r.error.code) for r in pipelined)

        # A worker's stream: its hello adopts the leases it names in Redis (WorkerHello.held),
        # so the stream ends with what that met.
        hello = worker_service_pb2.ConnectRequest(hello=worker_service_pb2.WorkerHello(
            worker_id="probe-worker", queues=["default"], credit=0,
            held=[worker_service_pb2.LeaseRef(task_id=done_id, lease_token=stale)]))
        connect = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect
        codes["Connect"] = status_of(lambda: list(connect(iter([hello]), timeout=PROBE_TIMEOUT)))
    return codes


def test_calls_during_an_aof_replay_are_unavailable_and_the_sdk_rides_through(
        cluster: Cluster, aof_redis: RedisServer, admin: redis.Redis, tmp_path: Path) -> None:
    make_replay_long(admin)
    url = aof_redis.url()
    scheduler, target = cluster.scheduler(url, "--heartbeat-interval", "0.5")
    worker = cluster.worker(target)
    connected(scheduler, worker)
    release = tmp_path / "release"
    with Client(target, timeout=30) as client:
        done = client.submit("t.add", [1, 2])
        assert done.result(timeout=20) == 3
        held = client.submit("t.wait_file", [str(release), "held"])  # runs across the replay
        wait_for(lambda: held.state == TaskState.ACTIVE, 20, what="the worker to run the held task")

        aof_redis.stop()  # SIGTERM: the AOF is complete on disk
        aof_redis.start("--key-load-delay", str(HOLD_US), "--loading-process-events-interval-bytes", "1024",
                        answering=False)
        wait_for(lambda: loading(admin), 15, what="Redis to replay its AOF (loading:1)")
        replay_began = time.monotonic()

        codes = probe_every_call_kind(target, done.id)
        assert codes == {name: UNAVAILABLE for name in (
            "Submit", "GetResult", "GetResults", "GetTask", "Cancel", "Poll", "Ack", "ExtendLease", "WatchTask")} | {
            "Pipeline": [(1, 14), (2, 14)], "Connect": UNAVAILABLE}
        riders = [ride(target, keyed_submit_and_result), ride(target, lambda c: c.handle(held.id).result(timeout=30))]
        # Refused REFUSALS times, an SDK call has backed off to its cap (1 s): seconds of replay.
        wait_for(lambda: all(r.refusals.count >= REFUSALS for r in riders), 20,
                 what=f"each SDK call to be refused (and retried) {REFUSALS} times")
        wait_for(lambda: any("UNAVAILABLE" in line and "LOADING" in line for line in worker.output().splitlines()),
                 20, what="the worker's stream to end UNAVAILABLE (LOADING)")
        assert loading(admin), "the replay ended before the test had checked everything within it"
        held_until = time.monotonic()
        admin.config_set("key-load-delay", 0)
        wait_for(lambda: loading(admin) is False, 30, what="the replay to finish")
        window = time.monotonic() - replay_began

        release.touch()
        for r in riders:
            assert r.thread is not None
            r.thread.join(40)
            assert not r.thread.is_alive(), "an SDK call hung"
        assert [r.error for r in riders] == [None, None]
        ridden_id, ridden_value = riders[0].value  # type: ignore[misc]
        assert (ridden_value, riders[1].value) == (5, "held")
        assert all(r.ended > held_until for r in riders)

        # Each task ended once, with its own result; the refused submits stored nothing.
        again = client.submit("t.add", [2, 3], idempotency_key=KEY)
        assert again.id == ridden_id not in (done.id, held.id)  # one task for the key, retries or not
        final = {i: client.get_task(i) for i in (done.id, held.id, again.id)}
        assert {i: TaskState(t.state) for i, t in final.items()} == {i: TaskState.SUCCEEDED for i in final}
        assert final[done.id].attempt == final[again.id].attempt == 1
        # The held task's worker kept running it: the stream the scheduler ended on the Redis
        # error kept its leases, and the reconnected stream adopted it, so it ran once.
        assert final[held.id].attempt == 1
        assert [client.handle(i).result(timeout=5) for i in final] == [3, "held", 5]  # the probes changed nothing
        db = int(url.rsplit("/", 1)[1])
        with redis.Redis(port=aof_redis.port, db=db) as data:
            assert sum(1 for _ in data.scan_iter(match=TASK_KEYS, count=1000)) == 3
    assert scheduler.alive() and worker.alive()
    print(f"replay held open {window:.1f}s")
