"""What a SERVER span costs the scheduler per call: Conveyor's interceptor beside
opentelemetry-instrumentation-grpc's asyncio server interceptor, on the same server.

    .venv/bin/python -m bench.server_span_cost               # 5 rounds of 4,000 calls per mode
    .venv/bin/python -m bench.server_span_cost --calls 10000 --rounds 3

A real grpc.aio server runs in a child process with an SDK tracer provider that records every
span and hands it to a processor that drops it (so export is not counted). Its TaskService
answers GetTask at once from a stub; WatchTask streams one message. This process makes
sequential calls over a real socket and reads the server's CPU time (user + system) per call:
- none:      no interceptor (the floor)
- conveyor:  conveyor_scheduler.telemetry.TelemetryInterceptor (the scheduler's own)
- otel:      opentelemetry.instrumentation.grpc.aio_server_interceptor()
The figure to compare is the CPU per call above `none`. Modes alternate inside each round and
the median of the rounds is kept, so a busy machine moves every mode alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.measure import cpu_seconds
from conveyor.v1 import task_service_pb2, task_service_pb2_grpc
from tests.harness import free_port

MODES = ("none", "conveyor", "otel")


class _Tasks(task_service_pb2_grpc.TaskServiceServicer):
    async def GetTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return task_service_pb2.GetTaskResponse()

    async def WatchTask(self, request: Any, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[Any]:
        yield task_service_pb2.WatchTaskResponse(task_id=request.task_id)


def _interceptors(mode: str) -> list[grpc.aio.ServerInterceptor]:
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: PLC0415

    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())  # the base class: on_end drops the span
    trace.set_tracer_provider(provider)
    if mode == "otel":
        from opentelemetry.instrumentation.grpc import aio_server_interceptor  # noqa: PLC0415
        return [aio_server_interceptor(tracer_provider=provider)]
    if mode == "conveyor":
        from conveyor_scheduler.telemetry import TelemetryInterceptor  # noqa: PLC0415

        class _Tel:  # what the interceptor reads of SchedulerTelemetry for non-Cancel calls
            tracer = provider.get_tracer("conveyor.scheduler")

        return [TelemetryInterceptor(_Tel())]  # type: ignore[arg-type]
    return []


async def _serve(mode: str, port: int) -> None:
    server = grpc.aio.server(interceptors=_interceptors(mode))
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(_Tasks(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


def _round(mode: str, calls: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.server_span_cost", "--serve", mode, "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            unary = task_service_pb2.GetTaskRequest(task_id="x")
            watch = task_service_pb2.WatchTaskRequest(task_id="x")
            for _ in range(500):  # warm up
                stub.GetTask(unary)
            out = {}
            for kind, call in (("unary", lambda: stub.GetTask(unary)), ("stream", lambda: list(stub.WatchTask(watch)))):
                cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                for _ in range(calls):
                    call()
                out[f"{kind}_server_cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / calls * 1e6
                out[f"{kind}_wall_us"] = (time.perf_counter() - t0) / calls * 1e6
            return out
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.port))
        return
    rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            rounds[mode].append(_round(mode, args.calls))
        print(f"round {r + 1}: " + ", ".join(f"{m} {rounds[m][-1]['unary_server_cpu_us']:.0f}" for m in MODES)
              + " us server CPU per unary call", flush=True)
    medians = {mode: {key: round(statistics.median(x[key] for x in rows), 1) for key in rows[0]}
               for mode, rows in rounds.items()}
    for mode in ("conveyor", "otel"):
        medians[mode]["unary_span_cpu_us"] = round(medians[mode]["unary_server_cpu_us"]
                                                   - medians["none"]["unary_server_cpu_us"], 1)
        medians[mode]["stream_span_cpu_us"] = round(medians[mode]["stream_server_cpu_us"]
                                                    - medians["none"]["stream_server_cpu_us"], 1)
    print(json.dumps(medians, indent=1))


if __name__ == "__main__":
    main()
