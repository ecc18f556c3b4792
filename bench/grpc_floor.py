"""The ceiling gRPC itself puts on one-call-at-a-time scenarios, measured on this machine.

A grpc.aio server whose Submit and Pipeline do nothing but answer (no validation, no Redis,
no worker), called one call at a time by the SDK's transports: a unary call on a sync
channel, and the Pipeline stream the sync `Client` uses by default. No Conveyor scheduler
can answer a sequential producer faster than this, so the report shows it beside
single_producer and latency.

The relay floor is the latency scenario's path with nothing but gRPC on it: a Pipeline
Submit with wait_results goes to the no-op server, which pushes a task on a worker's
Connect stream (a separate process that acks it at once, on its event loop) and answers
when the ack is back. Client, server and worker are three processes, as in `latency`; no
Redis call, no validation and no handler thread are in it.

    python -m bench.grpc_floor serve PORT           # the no-op server (used by measure())
    python -m bench.grpc_floor relay-worker PORT    # the no-op worker of the relay floor
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import grpc

from bench.common import ROOT
from conveyor import event_loop
from conveyor.pipeline import SyncPipeline
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, worker_service_pb2, worker_service_pb2_grpc
from tests.harness import free_port, wait_for

WARMUP = 500


FLOOR_ID = "01JCONVEYORFLOOR000000000"
RESULT = b"2"


class _Relay(worker_service_pb2_grpc.WorkerServiceServicer):
    """Holds the relay worker's stream: pushes one task per relayed call, resolves its ack."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[worker_service_pb2.ConnectResponse] | None = None
        self.waiting: dict[str, asyncio.Future[bytes]] = {}

    async def Connect(self, requests: Any, context: Any) -> Any:
        await anext(requests)  # the hello
        yield worker_service_pb2.ConnectResponse(accepted=worker_service_pb2.ConnectAccepted(scheduler_id="floor"))
        outbox = self.outbox = asyncio.Queue()
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                yield await outbox.get()
        finally:
            reader.cancel()

    async def _read(self, requests: Any) -> None:
        async for msg in requests:
            for ack in msg.report.acks:
                fut = self.waiting.pop(ack.task_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ack.result.data)

    async def run(self, task_id: str, payload: bytes) -> bytes | None:
        """Pushes one task to the worker and returns its result (None: no worker yet)."""
        if self.outbox is None:
            return None
        fut = self.waiting[task_id] = asyncio.get_running_loop().create_future()
        push = worker_service_pb2.ConnectResponse()
        leased = push.batch.tasks.add(lease_token="floor.1")
        leased.task.id, leased.task.name, leased.task.payload = task_id, "bench.add", payload
        self.outbox.put_nowait(push)
        return await fut


class _NoOp(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.reply = task_service_pb2.SubmitResponse(tasks=[task_service_pb2.SubmittedTask(
            id=FLOOR_ID, queue="default", state=task_pb2.TASK_STATE_QUEUED)])

    async def Submit(self, request: Any, context: Any) -> Any:
        return self.reply

    async def Pipeline(self, requests: Any, context: Any) -> Any:
        async for req in requests:
            resp = task_service_pb2.PipelineResponse(call_id=req.call_id, submit=self.reply)
            if req.submit.HasField("wait_results"):  # the relay: through the worker and back
                data = await self.relay.run(f"{FLOOR_ID}-{req.call_id}", req.submit.tasks[0].payload)
                if data is not None:
                    resp.submit.results.add(task_id=FLOOR_ID, state=task_pb2.TASK_STATE_SUCCEEDED).result.data = data
            yield resp


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    relay = _Relay()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(_NoOp(relay), server)
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(relay, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _relay_worker(port: int) -> None:
    """Acks every pushed task at once, on the event loop (no handler thread)."""
    outbox: asyncio.Queue[worker_service_pb2.ConnectRequest] = asyncio.Queue()
    outbox.put_nowait(worker_service_pb2.ConnectRequest(hello=worker_service_pb2.WorkerHello(
        worker_id="floor", queues=["default"], credit=1)))

    async def requests() -> Any:
        while True:
            yield await outbox.get()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        async for msg in worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(requests()):
            if msg.WhichOneof("kind") == "batch":
                report = worker_service_pb2.ConnectRequest()
                for leased in msg.batch.tasks:
                    report.report.acks.add(task_id=leased.task.id, lease_token=leased.lease_token).result.data = RESULT
                report.report.credit = len(msg.batch.tasks)
                outbox.put_nowait(report)


def _timed(n: int, call: Any) -> tuple[float, float]:
    for _ in range(WARMUP):
        call()
    samples = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    samples.sort()
    return n / elapsed, 1000 * samples[len(samples) // 2]


def measure(n: int) -> dict[str, Any]:
    """n sequential no-op Submit calls, unary and pipelined: calls/s and p50 round trip (ms)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", "serve", str(port)], cwd=ROOT)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            ready = grpc.channel_ready_future(channel)
            wait_for(ready.done, 30, what="the no-op gRPC server")
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            request = task_service_pb2.SubmitRequest(tasks=[task_pb2.TaskSpec(name="bench.add", payload=b"[[1,1],{}]")])
            unary = _timed(n, lambda: stub.Submit(request, timeout=10))
            pipe = SyncPipeline(channel)
            try:
                streamed = _timed(n, lambda: pipe.submit(request, 10))
                relayed = _relay(port, pipe, request, max(n // 10, 50))
            finally:
                pipe.close()
    finally:
        proc.kill()
        proc.wait(10)
    return {"grpc_floor_rate": streamed[0], "grpc_floor_p50_ms": streamed[1],
            "grpc_unary_floor_rate": unary[0], "grpc_unary_floor_p50_ms": unary[1],
            "grpc_relay_floor_p50_ms": relayed}


def _relay(port: int, pipe: SyncPipeline, request: Any, n: int) -> float:
    """p50 ms of n relayed calls (Submit with wait_results through the relay worker)."""
    relay = task_service_pb2.SubmitRequest()
    relay.CopyFrom(request)
    relay.wait_results.FromMilliseconds(10_000)
    worker = subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", "relay-worker", str(port)], cwd=ROOT)
    try:
        def relayed() -> bool:
            results = pipe.submit(relay, 10).results
            assert not results or results[0].result.data == RESULT, results
            return bool(results)

        wait_for(relayed, 30, what="the relay worker to attach")
        return _timed(n, relayed)[1]
    finally:
        worker.kill()
        worker.wait(10)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("serve", "relay-worker"):
        # The loop the scheduler and the worker run on (uvloop where installed).
        event_loop.run((_serve if sys.argv[1] == "serve" else _relay_worker)(int(sys.argv[2])))
    else:
        raise SystemExit(__doc__)
