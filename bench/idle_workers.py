"""Child process of the fan_in scenario: N idle workers' streams from one process.

    python -m bench.idle_workers TARGET COUNT QUEUE

Each stream is what an idle `conveyor-worker` holds: its own channel (own TCP connection,
the worker's keepalive options), a hello for QUEUE (which nobody submits to) with credit,
and a heartbeat as often as ConnectAccepted asks. Prints "ready N" once every stream was
accepted, then idles until killed. Spawning N real worker processes would measure this
machine's memory, not the scheduler.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator

import grpc

from conveyor.v1 import worker_service_pb2, worker_service_pb2_grpc
from conveyor_worker.stream import CHANNEL_OPTIONS

CREDIT = 8


async def _stream(target: str, index: int, queue: str, accepted: asyncio.Queue[int]) -> None:
    options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]  # one connection per worker
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        outbox: asyncio.Queue[worker_service_pb2.ConnectRequest | None] = asyncio.Queue()
        outbox.put_nowait(worker_service_pb2.ConnectRequest(hello=worker_service_pb2.WorkerHello(
            worker_id=f"idle-{os.getpid()}-{index}", hostname=socket.gethostname(), pid=os.getpid(),
            queues=[queue], concurrency=CREDIT, task_names=["bench.add"], credit=CREDIT, sdk="bench-idle/1")))

        async def requests() -> AsyncIterator[worker_service_pb2.ConnectRequest]:
            while (msg := await outbox.get()) is not None:
                yield msg

        heartbeats: asyncio.Task[None] | None = None
        call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(requests())
        try:
            async for msg in call:
                if msg.WhichOneof("kind") == "accepted":
                    interval = msg.accepted.heartbeat_interval.ToMilliseconds() / 1000 or 10.0
                    heartbeats = asyncio.create_task(_heartbeats(outbox, interval))
                    accepted.put_nowait(index)
                elif msg.WhichOneof("kind") == "batch":
                    raise RuntimeError(f"idle worker {index} was sent tasks on queue {queue}")
        finally:
            if heartbeats:
                heartbeats.cancel()
            outbox.put_nowait(None)


async def _heartbeats(outbox: asyncio.Queue[worker_service_pb2.ConnectRequest | None], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        outbox.put_nowait(worker_service_pb2.ConnectRequest(heartbeat=worker_service_pb2.WorkerHeartbeat()))


async def main(target: str, count: int, queue: str) -> None:
    accepted: asyncio.Queue[int] = asyncio.Queue()
    streams = [asyncio.create_task(_stream(target, i, queue, accepted)) for i in range(count)]
    for _ in range(count):
        getter = asyncio.ensure_future(accepted.get())
        done, _ = await asyncio.wait([getter, *streams], return_when=asyncio.FIRST_COMPLETED, timeout=60)
        if getter not in done:
            getter.cancel()
            failed = [t.exception() for t in streams if t.done()]
            raise RuntimeError(f"a stream ended before being accepted: {failed[0] if failed else 'timed out'}")
    print(f"ready {count}", flush=True)
    await asyncio.gather(*streams)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
