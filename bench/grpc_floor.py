"""The ceiling gRPC itself puts on one-call-at-a-time scenarios, measured on this machine.

A grpc.aio server whose Submit and Pipeline do nothing but answer (no validation, no Redis,
no worker), called one call at a time by the SDK's transports: a unary call on a sync
channel, and the Pipeline stream the sync `Client` uses by default. No Conveyor scheduler
can answer a sequential producer faster than this, so the report shows it beside
single_producer and latency.

    python -m bench.grpc_floor serve PORT    # the no-op server (used by measure())
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import grpc

from bench.common import ROOT
from conveyor.pipeline import SyncPipeline
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import free_port, wait_for

WARMUP = 500


class _NoOp(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self) -> None:
        self.reply = task_service_pb2.SubmitResponse(tasks=[task_service_pb2.SubmittedTask(
            id="01JCONVEYORFLOOR000000000", queue="default", state=task_pb2.TASK_STATE_QUEUED)])

    async def Submit(self, request: Any, context: Any) -> Any:
        return self.reply

    async def Pipeline(self, requests: Any, context: Any) -> Any:
        async for req in requests:
            yield task_service_pb2.PipelineResponse(call_id=req.call_id, submit=self.reply)


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(_NoOp(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


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
            finally:
                pipe.close()
    finally:
        proc.kill()
        proc.wait(10)
    return {"grpc_floor_rate": streamed[0], "grpc_floor_p50_ms": streamed[1],
            "grpc_unary_floor_rate": unary[0], "grpc_unary_floor_p50_ms": unary[1]}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        asyncio.run(_serve(int(sys.argv[2])))
    else:
        raise SystemExit(__doc__)
