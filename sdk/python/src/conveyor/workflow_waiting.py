"""How a workflow is followed until it ends (`result()`, `watch()`): written once for both
clients, each of which runs the steps its own way (as `pushed.waiting` is for tasks).

The WatchWorkflow stream is the way: it gives the workflow at once, then again whenever a
node finishes or the workflow's state changes. A stream that breaks (a replica went away:
UNAVAILABLE, or it ended before the workflow did) is opened again after a pause that doubles
up to MAX_PAUSE; an outage longer than the client's timeout is raised. GetWorkflow polling is
only the fallback for a server that does not serve the stream (UNIMPLEMENTED).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import grpc

from conveyor.errors import ResultTimeout, RPCError, Unavailable
from conveyor.workflow_snapshots import WorkflowSnapshot

FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0
"""Pauses before opening a broken stream again: from FIRST_PAUSE, doubling up to MAX_PAUSE."""
POLL_EVERY = 0.5
"""How often the fallback reads the workflow (GetWorkflow) when the stream is not served."""
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
"""A stream that ends so lost its replica (or its connection), not the workflow: open another."""


@dataclass(frozen=True, slots=True)
class OpenWatch:
    """Step: after `delay` seconds, open WatchWorkflow with the deadline `timeout` (None: none),
    closing any stream opened before; send back its first message (a WorkflowSnapshot), ENDED,
    or the RPCError it failed with."""

    delay: float
    timeout: float | None


@dataclass(frozen=True, slots=True)
class ReadNext:
    """Step: send back the open stream's next message, ENDED, or the RPCError it failed with."""


@dataclass(frozen=True, slots=True)
class Poll:
    """Step: after `delay` seconds, read the workflow (GetWorkflow); send back the snapshot or
    the RPCError."""

    delay: float


@dataclass(frozen=True, slots=True)
class Seen:
    """Not a step: a snapshot for the caller (the driver yields it and sends back None)."""

    snapshot: WorkflowSnapshot


class Ended:
    """The stream ended (without an error)."""


ENDED = Ended()
READ_NEXT = ReadNext()
Step = OpenWatch | ReadNext | Poll
Steps = Generator[Step | Seen, Any, None]


def following(workflow_id: str, timeout: float | None, outage: float, now: Callable[[], float]) -> Steps:
    """The steps that follow a workflow until it ends: each new snapshot is handed out as Seen
    (a stream opened again repeats the last one: it is not handed out twice); returns after
    the terminal one. Raises ResultTimeout once `timeout` seconds have passed, and the
    RPCError of a failed call that is not transient (NotFound, PermissionDenied, ...) or of an
    outage longer than `outage` seconds."""
    deadline = None if timeout is None else now() + timeout

    def left() -> float | None:
        return None if deadline is None else max(deadline - now(), 0.001)

    last: WorkflowSnapshot | None = None
    polling = False
    pause = 0.0
    broken_since: float | None = None
    step: Step = OpenWatch(0.0, left())
    while True:
        reply = yield step
        if isinstance(reply, WorkflowSnapshot):
            broken_since, pause = None, 0.0
            if last is None or reply.record != last.record:
                last = reply
                yield Seen(reply)
            if reply.state.terminal:
                return
            if not polling:
                step = READ_NEXT
                continue
            if deadline is not None and now() >= deadline:
                raise ResultTimeout(_late(workflow_id, timeout, last))
            step = Poll(min(POLL_EVERY, left() or POLL_EVERY))
            continue
        if deadline is not None and now() >= deadline:
            raise ResultTimeout(_late(workflow_id, timeout, last))
        if isinstance(reply, RPCError) and reply.code == grpc.StatusCode.UNIMPLEMENTED and not polling:
            polling = True  # a server (or proxy) without the stream: read instead
            step = Poll(0.0)
            continue
        if isinstance(reply, RPCError) and reply.code not in TRANSIENT:
            raise reply
        broken_since = now() if broken_since is None else broken_since
        if now() - broken_since >= outage:
            if isinstance(reply, RPCError):
                raise reply
            raise Unavailable(f"the scheduler kept ending the watch of workflow {workflow_id} before it ended")
        pause = min(max(2 * pause, FIRST_PAUSE), MAX_PAUSE)
        if deadline is not None:
            pause = min(pause, deadline - now())
        step = Poll(pause) if polling else OpenWatch(pause, left())


def _late(workflow_id: str, timeout: float | None, last: WorkflowSnapshot | None) -> str:
    where = f" (it is {last.state.name}, {last.progress()})" if last is not None else ""
    return f"workflow {workflow_id} did not finish within {timeout}s{where}"
