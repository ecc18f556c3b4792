"""Per-stream state of a connected worker: its credit, its leases and its outbox."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from conveyor.v1 import task_pb2, worker_service_pb2


@dataclass(eq=False)
class WorkerSession:
    """One WorkerService.Connect stream. Only the event loop touches it."""

    worker_id: str
    queues: tuple[str, ...]
    hostname: str = ""
    concurrency: int = 0
    task_names: tuple[str, ...] = ()
    credit: int = 0
    pid: int = 0
    sdk: str = ""
    prefetch: int = 0
    started_ms: int = 0
    """When the worker process started (WorkerHello.started_at; 0: not told)."""
    connected_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    succeeded: int = 0
    failed: int = 0
    active_task_ids: tuple[str, ...] = ()
    """As of the last heartbeat: what the worker registry shows (registry.py)."""
    owner: str = field(default_factory=lambda: os.urandom(8).hex())
    """This stream's identity in Redis (field o of the leases it owns): unique per stream, on
    every replica, so a lease adopted by a newer stream is never touched by this one again."""
    draining: bool = False
    closed: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    leases: dict[str, tuple[str, str]] = field(default_factory=dict)
    """task id -> (queue, lease token) of every lease pushed on this stream."""
    outbox: asyncio.Queue[worker_service_pb2.ConnectResponse | None] = field(default_factory=asyncio.Queue)
    unsent_batch: worker_service_pb2.ConnectResponse | None = None
    """The last TaskBatch put in the outbox while the stream has not taken it yet: later
    pushes join it, so tasks that pile up while the stream is busy leave in one message."""
    unsent_done: worker_service_pb2.ConnectResponse | None = None
    """Likewise for the last ReportDone not yet taken by the stream."""

    def __post_init__(self) -> None:
        self._names = frozenset(self.task_names)

    def stop_work(self) -> None:
        """The worker takes nothing new (it drains): its outstanding credit is void."""
        self.draining = True
        self.credit = 0

    def takes(self, name: str) -> bool:
        """Whether the worker declared this task name (one that declares none takes any)."""
        return not self._names or name in self._names

    @property
    def wants_work(self) -> bool:
        return self.credit > 0 and not self.draining and not self.closed

    def push(self, leased: list[task_pb2.LeasedTask]) -> None:
        for lt in leased:
            self.leases[lt.task.id] = (lt.task.queue, lt.lease_token)
        if self.unsent_batch is not None:
            self.unsent_batch.batch.tasks.extend(leased)
            return
        msg = self.unsent_batch = worker_service_pb2.ConnectResponse()
        msg.batch.tasks.extend(leased)
        self.outbox.put_nowait(msg)

    def report_done(self, seq: int, refused: list[task_pb2.AckOutcome]) -> None:
        """Answers a report; answers that pile up while the stream is busy leave as one
        ReportDone (reports are recorded in order, so the last seq covers the earlier ones)."""
        if self.unsent_done is not None:
            done = self.unsent_done.report_done
            done.seq = max(done.seq, seq)
            done.refused.extend(refused)
            return
        msg = self.unsent_done = worker_service_pb2.ConnectResponse()
        msg.report_done.seq = seq
        msg.report_done.refused.extend(refused)
        self.outbox.put_nowait(msg)

    async def next_message(self) -> worker_service_pb2.ConnectResponse | None:
        """The next message for the stream (None: end it)."""
        msg = await self.outbox.get()
        if msg is self.unsent_batch:
            self.unsent_batch = None
        elif msg is self.unsent_done:
            self.unsent_done = None
        return msg

    def leases_by_queue(self) -> dict[str, list[tuple[str, str]]]:
        grouped: dict[str, list[tuple[str, str]]] = {}
        for task_id, (queue, token) in self.leases.items():
            grouped.setdefault(queue, []).append((task_id, token))
        return grouped
