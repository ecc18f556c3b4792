"""The one ack path: TaskService.Ack and the worker stream's reports (WorkerService) both record
acks here, so validation, waking result waiters, retries' promotion and the finished event are
the same for both. The twin of submission.py: that is how tasks come in, this is how they end.

Each TaskAck is checked into an AckEntry (its queue found from its id), the store records the
batch (ack.lua: only the current lease token counts), then this replica's result waiters get
the finished records, a retry's due time goes to the promoter, and the task-events hooks hear
`finished`. Waiters on other replicas hear the completion from ack.lua's `cv:done` publish.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.maintenance import Maintenance
from conveyor_scheduler.records import TERMINAL
from conveyor_scheduler.store import AckEntry, Store
from conveyor_scheduler.task_events import TaskEvents
from conveyor_scheduler.task_lookup import TaskLookup
from conveyor_scheduler.validation import check_lease_token, duration_ms
from conveyor_scheduler.waiters import ResultWaiters

MAX_TEXT = 64 * 1024
"""An ack's error message and traceback are cut to this many characters (the type to 200)."""
ACK_STATUS = {1: task_pb2.ACK_STATUS_ACCEPTED, 2: task_pb2.ACK_STATUS_STALE_LEASE, 3: task_pb2.ACK_STATUS_NOT_FOUND}


class Completion:
    def __init__(self, store: Store, lookup: TaskLookup, waiters: ResultWaiters, maintenance: Maintenance,
                 events: TaskEvents, limits: Limits) -> None:
        self.store = store
        self.lookup = lookup
        self.waiters = waiters
        self.maintenance = maintenance
        self.events = events
        self.limits = limits

    async def ack(self, acks: Sequence[task_pb2.TaskAck], field: str) -> list[task_pb2.AckOutcome]:
        """Validates and records acks; errors name `field[i]...`. One outcome per ack, in order."""
        entries = [(await self.lookup.queue_of(a.task_id, f"{field}[{i}].task_id"), self._entry(a, f"{field}[{i}]"))
                   for i, a in enumerate(acks)]
        results, finished_ms = await self.store.ack(entries)
        waiters = self.waiters
        outcomes = []
        for (queue, entry), (status, state, attempt) in zip(entries, results, strict=True):
            if status == 1 and waiters.waiting(entry.task_id):
                if state == task_pb2.TASK_STATE_SUCCEEDED and entry.kind == "s":  # waiters need not re-read it
                    rec = {b"st": b"4", b"at": str(attempt).encode(), b"fa": str(finished_ms).encode(),
                           b"r": entry.a if isinstance(entry.a, bytes) else entry.a.encode()}
                    if entry.b:
                        rec[b"rc"] = entry.b.encode()
                    waiters.notify(entry.task_id, rec)
                elif state in TERMINAL:
                    waiters.notify(entry.task_id)
            if status == 1 and state == task_pb2.TASK_STATE_SCHEDULED:
                self.maintenance.schedule(queue, self.store.clock())
            outcomes.append(task_pb2.AckOutcome(task_id=entry.task_id, status=ACK_STATUS[status], state=state))
        self.events.finished(entries, outcomes)
        return outcomes

    def _entry(self, ack: task_pb2.TaskAck, at: str) -> AckEntry:
        check_lease_token(ack.lease_token, f"{at}.lease_token")
        which = ack.WhichOneof("outcome")
        if which == "result":
            if len(ack.result.data) > self.limits.max_payload_bytes:
                raise InvalidArgument(f"{at}.result.data", f"is {len(ack.result.data)} bytes, over the limit of "
                                      f"{self.limits.max_payload_bytes}")
            ctype = ack.result.content_type
            return AckEntry(ack.task_id, ack.lease_token, "s", ack.result.data,
                            "" if ctype in ("", "application/json") else ctype[:100])
        if which == "failure":
            f = ack.failure
            delay = -1
            if f.HasField("retry_delay"):
                delay = duration_ms(f.retry_delay, f"{at}.failure.retry_delay", minimum=0,
                                    maximum=self.limits.max_timeout_ms)
            return AckEntry(ack.task_id, ack.lease_token, "r" if f.retry else "f", f.error.type[:200] or "Error",
                            f.error.message[:MAX_TEXT], f.error.traceback[:MAX_TEXT], delay)
        if which == "cancelled":
            return AckEntry(ack.task_id, ack.lease_token, "c")
        raise InvalidArgument(f"{at}.outcome", "set result, failure or cancelled")
