"""/tasks (filters and cursor pagination, one page at a time) and /tasks/{id} (decoded args,
kwargs and result, the last attempt's error and traceback, headers, trace link); cancel, retry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.common import TaskState
from conveyor.v1 import task_pb2
from conveyor_dashboard.payloads import show_bytes, show_call
from conveyor_dashboard.render import trace_id
from conveyor_dashboard.sessions import Session
from conveyor_dashboard.task_query import PAGE_SIZE, STATES, TaskQuery
from conveyor_dashboard.web import act, dashboard, page

RETRYABLE = frozenset({TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED})
SLACK = dt.timedelta(seconds=1)
CANCELLABLE = frozenset({TaskState.SCHEDULED, TaskState.QUEUED, TaskState.ACTIVE})


async def tasks(request: Request) -> Response:
    async def load(session: Session) -> Mapping[str, Any]:
        query = TaskQuery.of(request.query_params)  # ValueError: 400
        args = query.filter_args()
        found = await session.client.admin.list_tasks(**args, page_size=PAGE_SIZE, cursor=query.cursor)
        return {"query": query, "tasks": found.tasks, "states": STATES,
                "next_url": query.url(found.next_cursor) if found.next_cursor else "",
                "first_url": query.url() if query.cursor else ""}

    return await page(request, "tasks.html", load)


async def task(request: Request) -> Response:
    task_id = request.path_params["task_id"]

    async def load(session: Session) -> Mapping[str, Any]:
        t = await session.client.get_task(task_id)
        args, kwargs = show_call(t.payload, t.content_type)
        trace_url = dashboard(request).settings.trace_url
        tid = trace_id(t.headers)
        return {"t": t, "state": TaskState(t.state).name, "terminal": TaskState(t.state).terminal,
                "args": args, "kwargs": kwargs,
                "result": show_bytes(t.result.data, t.result.content_type) if t.HasField("result") else None,
                "headers": sorted(t.headers.items()),
                "trace_link": trace_url.replace("{trace_id}", tid) if trace_url and tid else "",
                "cancellable": TaskState(t.state) in CANCELLABLE,
                "retryable": TaskState(t.state) in RETRYABLE | {TaskState.DEAD}}

    return await page(request, "task.html", load)


async def cancel(request: Request) -> Response:
    task_id = request.path_params["task_id"]

    async def run(session: Session, form: FormData) -> str:
        state = await session.client.cancel(task_id)
        return f"task {task_id}: {state.name}"

    return await act(request, "task.cancel", run, f"/tasks/{task_id}")


async def retry(request: Request) -> Response:
    task_id = request.path_params["task_id"]

    async def run(session: Session, form: FormData) -> str:
        t = await session.client.get_task(task_id)
        state = TaskState(t.state)
        if state is TaskState.DEAD:
            done = await session.client.admin.requeue_dead_letters(t.queue, [task_id])
            return f"task {task_id}: requeued" if done else f"task {task_id} was not a dead letter any more"
        if state not in RETRYABLE:
            raise ValueError(f"task {task_id} is {state.name}: only FAILED, CANCELLED, EXPIRED and DEAD run again")
        return await _retry_one(session, t, state)

    return await act(request, "task.retry", run, f"/tasks/{task_id}")


async def _retry_one(session: Session, t: task_pb2.Task, state: TaskState) -> str:
    """RetryTasks takes a filter, not ids: narrow it to this task's queue, name, state, worker and
    the second around its submit (the index's time is Redis' at the submit call, not created_at
    exactly), and act only when the dry run matches exactly one task."""
    at = t.created_at.ToDatetime(dt.UTC)
    narrow: dict[str, Any] = {"queue": t.queue, "states": [state], "name": t.name, "worker_id": t.worker_id or None,
              "since": at - SLACK, "until": at + SLACK}
    dry = await session.client.admin.retry_tasks(**narrow, dry_run=True)
    if dry.matched != 1:
        raise ValueError(f"task {t.id}: {dry.matched} tasks match its queue, name, state and time; retry them "
                         f"from the CLI (conveyor tasks retry) instead")
    done = await session.client.admin.retry_tasks(**narrow)
    return f"task {t.id}: queued again" if done.retried else f"task {t.id} was not {state.name} any more"


routes = [
    Route("/tasks", tasks),
    Route("/tasks/{task_id}", task),
    Route("/tasks/{task_id}/cancel", cancel, methods=["POST"]),
    Route("/tasks/{task_id}/retry", retry, methods=["POST"]),
]
