"""Server-sent events.

/events/overview: ONE poll per replica and credential (sessions that see the same data share
it), every Settings.overview_interval_s while anyone listens, fanned out to every open
overview; it stops when the last one goes.

/events/tasks/{id}: one WatchTask stream per open task page, on that session's channel,
cancelled when the browser goes (Starlette cancels the response when the client disconnects).

/events/workflows/{id}: likewise one WatchWorkflow stream per open workflow page. Each of its
messages is the whole workflow; the browser gets only what changed: the nodes whose state or task
changed since the last message (all of them first), the counts of the boxes they are in, and the
workflow's own state and progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from conveyor.aio import AsyncClient
from conveyor.common import TaskState
from conveyor.errors import RPCError
from conveyor.v1 import task_service_pb2, task_service_pb2_grpc, workflow_service_pb2, workflow_service_pb2_grpc
from conveyor.workflow_snapshots import WorkflowSnapshot
from conveyor_dashboard.overview import snapshot
from conveyor_dashboard.web import SignInNeeded, dashboard, session_for
from conveyor_dashboard.workflow_view import counts, layout, node_state

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0
SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Poll:
    """The shared poll of one credential: the latest snapshot and its waiters."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.latest: dict[str, Any] | None = None
        self.version = 0
        self.changed = asyncio.Condition()
        self.listeners = 0
        self.task: asyncio.Task[None] | None = None


class OverviewHub:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._polls: dict[str, _Poll] = {}
        self.polls_made = 0
        """Snapshots taken in all (the bench reads it: it must not grow with the listeners)."""

    async def listen(self, key: str, client: AsyncClient) -> AsyncIterator[dict[str, Any]]:
        """Yields the latest snapshot now (if any) and each new one."""
        poll = self._polls.get(key)
        if poll is None:
            poll = self._polls[key] = _Poll(client)
        poll.listeners += 1
        if poll.task is None or poll.task.done():
            poll.task = asyncio.create_task(self._run(poll), name=f"overview-poll-{len(self._polls)}")
        seen = -1
        try:
            while True:
                async with poll.changed:
                    while poll.version == seen:
                        await poll.changed.wait()
                    seen, snap = poll.version, poll.latest
                if snap is not None:
                    yield snap
        finally:
            poll.listeners -= 1
            if poll.listeners == 0 and poll.task is not None:
                poll.task.cancel()
                poll.task = None

    async def _run(self, poll: _Poll) -> None:
        while True:
            try:
                snap: dict[str, Any] | None = await snapshot(poll.client)
                self.polls_made += 1
            except (RPCError, grpc.RpcError) as exc:
                log.warning("overview poll failed: %s", exc)
                snap = None
            if snap is not None:
                async with poll.changed:
                    poll.latest, poll.version = snap, poll.version + 1
                    poll.changed.notify_all()
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        for poll in self._polls.values():
            if poll.task is not None:
                poll.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll.task


async def _with_keepalive(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Passes `source` on, with a comment line when it is quiet, so proxies and the browser keep
    the stream and a gone browser is noticed."""
    it = aiter(source)
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield b": keepalive\n\n"
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None:
            pending.cancel()
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def overview_events(request: Request) -> Response:
    try:
        session = await session_for(request)
    except SignInNeeded:
        return Response("sign in first", 401)
    hub: OverviewHub = dashboard(request).hub

    async def stream() -> AsyncIterator[bytes]:
        async for snap in hub.listen(session.credential_key, session.client):
            yield sse("overview", snap)

    return StreamingResponse(_with_keepalive(stream()), media_type="text/event-stream", headers=SSE_HEADERS)


async def _follow(open_call: Callable[[], Any], render: Callable[[Any], tuple[bytes, bool]]
                  ) -> AsyncIterator[bytes]:
    """One SSE event per message of a server-streaming watch call (`render` gives the event and
    whether it is the last), "gone" when the call fails. The call is opened when the response
    starts and cancelled when the page goes (the task page's and the workflow page's stream)."""
    call = open_call()
    try:
        async for message in call:
            event, terminal = render(message)
            yield event
            if terminal:
                return
    except grpc.RpcError as exc:
        yield sse("gone", {"error": str(exc.details() if hasattr(exc, "details") else exc)})
    finally:
        call.cancel()


async def task_events(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    try:
        session = await session_for(request)
    except SignInNeeded:
        return Response("sign in first", 401)

    def render(event: Any) -> tuple[bytes, bool]:
        state = TaskState(event.state)
        return sse("state", {"state": state.name, "attempt": event.attempt, "terminal": state.terminal}), \
            state.terminal

    def watch() -> Any:
        return task_service_pb2_grpc.TaskServiceStub(session.channel).WatchTask(
            task_service_pb2.WatchTaskRequest(task_id=task_id))

    return StreamingResponse(_with_keepalive(_follow(watch, render)), media_type="text/event-stream",
                             headers=SSE_HEADERS)


class WorkflowChanges:
    """Turns a workflow's successive snapshots into what the page needs to change (see the module)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}
        """node key -> (state, task id) as last sent"""
        self.groups: dict[str, str] | None = None
        """node key -> the box it is counted in (the graph never changes: laid out once)"""

    def event(self, snap: WorkflowSnapshot) -> dict[str, Any]:
        if self.groups is None:
            self.groups = layout(snap.nodes).groups()
        now = {n.key: (node_state(n.state), n.task_id) for n in snap.nodes}
        changed = [[key, *value] for key, value in now.items() if self.seen.get(key) != value]
        touched = {self.groups[key] for key, _, _ in changed if key in self.groups}
        self.seen = now
        boxes = {g: counts(now[key][0] for key, box in self.groups.items() if box == g) for g in touched}
        return {"state": snap.state.name, "run": snap.run, "terminal": snap.state.terminal,
                "finished": snap.finished_nodes, "total": len(snap.nodes),
                "counts": counts(state for state, _ in now.values()), "groups": boxes, "nodes": changed}


async def workflow_events(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    try:
        session = await session_for(request)
    except SignInNeeded:
        return Response("sign in first", 401)

    changes = WorkflowChanges()

    def render(message: Any) -> tuple[bytes, bool]:
        snap = WorkflowSnapshot.of(message.workflow)
        return sse("workflow", changes.event(snap)), snap.state.terminal

    def watch() -> Any:
        return workflow_service_pb2_grpc.WorkflowServiceStub(session.channel).WatchWorkflow(
            workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow_id))

    return StreamingResponse(_with_keepalive(_follow(watch, render)), media_type="text/event-stream",
                             headers=SSE_HEADERS)

routes = [Route("/events/overview", overview_events), Route("/events/tasks/{task_id}", task_events),
          Route("/events/workflows/{workflow_id}", workflow_events)]
