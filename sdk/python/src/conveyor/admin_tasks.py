"""`client.admin`'s task search and bulk actions: list_tasks, iter_tasks, cancel_tasks, retry_tasks.

Kept apart from admin.py (dead letters, workers); `Admin` and `AsyncAdmin` take these
methods from `TaskAdmin` and `AsyncTaskAdmin`. Every method takes the same filter
(AdminService's `TaskFilter`: fields set must all match, a list matches any of its values);
`task_filter` builds it once for all of them, and `TaskCalls.walk_tasks` is the one paging
loop behind both `iter_tasks`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.calls import AsyncCalls, Rpc, SyncCalls, Walk
from conveyor.common import TaskState
from conveyor.v1 import admin_service_pb2 as pb
from conveyor.v1 import task_pb2

When = dt.datetime | float
"""A point in time for `since`/`until`: an aware datetime, or that many seconds before now."""
States = Iterable[TaskState | str] | TaskState | str
"""TaskState values or their names, any case ("failed", "FAILED"); one or several."""


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a task search, newest first."""

    tasks: list[task_pb2.Task]
    """Without payloads and result bytes unless asked `with_payloads`."""
    next_cursor: str
    """Pass it as `cursor` (with the same filter) for the next page; empty when the search is done.
    A page may be short, even empty, while the cursor is not: follow it until it is empty."""


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What `cancel_tasks` or `retry_tasks` did (with `dry_run`, only `matched` is counted)."""

    matched: int
    """Tasks that matched the filter."""
    dry_run: bool
    cancelled: int = 0
    """cancel_tasks: queued and scheduled tasks ended CANCELLED."""
    stopping: int = 0
    """cancel_tasks: running tasks asked to stop (they end CANCELLED through their worker, or finish first)."""
    retried: int = 0
    """retry_tasks: tasks queued again for a fresh set of attempts."""


def task_states(states: States) -> list[task_pb2.TaskState.ValueType]:
    """The contract's TaskState values of enum members or names; ValueError names an unknown one."""
    if isinstance(states, str | TaskState):
        states = [states]
    return [task_pb2.TaskState.ValueType(_named_state(s) if isinstance(s, str) else TaskState(s)) for s in states]


def _named_state(name: str) -> TaskState:
    key = name.strip().upper().removeprefix("TASK_STATE_")
    if key not in TaskState.__members__ or key == "UNSPECIFIED":
        known = ", ".join(m.name.lower() for m in TaskState if m is not TaskState.UNSPECIFIED)
        raise ValueError(f"unknown task state {name!r} (one of: {known})")
    return TaskState[key]


def _timestamp(field: str, when: When, now: float) -> Timestamp:
    ts = Timestamp()
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:  # protobuf would take it as UTC, Python as local time: refuse to guess
            raise ValueError(f"{field}: a naive datetime is ambiguous; give it a tzinfo or pass seconds ago")
        ts.FromDatetime(when)
    else:
        ts.FromNanoseconds(round((now - when) * 1e9))
    return ts


def task_filter(queue: str | None = None, states: States = (), name: str | None = None,
                name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                until: When | None = None) -> pb.TaskFilter:
    """The TaskFilter of the admin task calls. Relative times are resolved now, so a filter built
    twice with `since=3600` differs, and the scheduler refuses a cursor made for the other one."""
    now = time.time()
    flt = pb.TaskFilter(queue=queue or "", states=task_states(states), name=name or "",
                        name_prefix=name_prefix or "", worker_id=worker_id or "")
    if since is not None:
        flt.submitted_after.CopyFrom(_timestamp("since", since, now))
    if until is not None:
        flt.submitted_before.CopyFrom(_timestamp("until", until, now))
    return flt


class TaskCalls:
    """Request builders and result parsers of the task calls; no I/O.

    Searches and dry runs are retried through an outage; real bulk actions are not, so their
    counts are this call's (repeating one is safe, and would count only what is left)."""

    @staticmethod
    def list_tasks(flt: pb.TaskFilter, page_size: int, cursor: str, with_payloads: bool) -> Rpc[TaskPage]:
        req = pb.ListTasksRequest(filter=flt, page_size=page_size, cursor=cursor, with_payloads=with_payloads)
        return Rpc("ListTasks", req, lambda r: TaskPage(list(r.tasks), r.next_cursor), idempotent=True)

    @staticmethod
    def walk_tasks(flt: pb.TaskFilter, page_size: int, cursor: str, with_payloads: bool) -> Walk[task_pb2.Task]:
        """Every match, page after page, with one filter throughout (a cursor is bound to it)."""
        while True:
            page: TaskPage = yield TaskCalls.list_tasks(flt, page_size, cursor, with_payloads)
            yield from page.tasks
            cursor = page.next_cursor
            if not cursor:
                return

    @staticmethod
    def cancel_tasks(flt: pb.TaskFilter, dry_run: bool) -> Rpc[BulkResult]:
        return Rpc("CancelTasks", pb.CancelTasksRequest(filter=flt, dry_run=dry_run),
                   lambda r: BulkResult(r.matched, dry_run, cancelled=r.cancelled, stopping=r.stopping),
                   idempotent=dry_run)

    @staticmethod
    def retry_tasks(flt: pb.TaskFilter, dry_run: bool) -> Rpc[BulkResult]:
        return Rpc("RetryTasks", pb.RetryTasksRequest(filter=flt, dry_run=dry_run),
                   lambda r: BulkResult(r.matched, dry_run, retried=r.retried), idempotent=dry_run)


class TaskAdmin(SyncCalls):
    """The task calls of `Client.admin`.

    Filters: `queue` (else every queue; one that never had a task raises NotFound), `states`
    (TaskState values or names), `name` or `name_prefix`, `worker_id` (of the current or last
    lease), `since` (inclusive) and `until` (exclusive) on the time the task was stored: an aware
    datetime, or seconds before now (`since=3600`: the last hour)."""

    def list_tasks(self, queue: str | None = None, *, states: States = (), name: str | None = None,
                   name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                   until: When | None = None, page_size: int = 100, cursor: str = "",
                   with_payloads: bool = False) -> TaskPage:
        """One page (1 to 1,000 tasks) of the matching tasks, newest first. Paging by hand, pass
        `since`/`until` as datetimes (seconds ago would make another filter each call, and the
        scheduler refuses the cursor): or let `iter_tasks` follow the cursors."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        return self._call(TaskCalls.list_tasks(flt, page_size, cursor, with_payloads))

    def iter_tasks(self, queue: str | None = None, *, states: States = (), name: str | None = None,
                   name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                   until: When | None = None, page_size: int = 100, cursor: str = "",
                   with_payloads: bool = False) -> Iterator[task_pb2.Task]:
        """Every matching task, newest first, fetching a page of `page_size` when needed; each
        task at most once. Tasks stored after the first page are not included."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        yield from self._walk(TaskCalls.walk_tasks(flt, page_size, cursor, with_payloads))

    def cancel_tasks(self, queue: str | None = None, *, states: States, name: str | None = None,
                     name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                     until: When | None = None, dry_run: bool = False) -> BulkResult:
        """Cancels every matching task: `states` may name only scheduled, queued and active (a
        running task is asked to stop). With `dry_run`, only counts the matches."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        return self._call(TaskCalls.cancel_tasks(flt, dry_run))

    def retry_tasks(self, queue: str | None = None, *, states: States, name: str | None = None,
                    name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                    until: When | None = None, dry_run: bool = False) -> BulkResult:
        """Queues every matching task again for a fresh set of attempts (same id): `states` may name
        only failed, dead, cancelled and expired. With `dry_run`, only counts the matches."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        return self._call(TaskCalls.retry_tasks(flt, dry_run))


class AsyncTaskAdmin(AsyncCalls):
    """The task calls of `AsyncClient.admin`: see TaskAdmin."""

    async def list_tasks(self, queue: str | None = None, *, states: States = (), name: str | None = None,
                         name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                         until: When | None = None, page_size: int = 100, cursor: str = "",
                         with_payloads: bool = False) -> TaskPage:
        """See Admin.list_tasks."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        return await self._call(TaskCalls.list_tasks(flt, page_size, cursor, with_payloads))

    async def iter_tasks(self, queue: str | None = None, *, states: States = (), name: str | None = None,
                         name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                         until: When | None = None, page_size: int = 100, cursor: str = "",
                         with_payloads: bool = False) -> AsyncIterator[task_pb2.Task]:
        """See Admin.iter_tasks (use with `async for`)."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        async for t in self._walk(TaskCalls.walk_tasks(flt, page_size, cursor, with_payloads)):
            yield t

    async def cancel_tasks(self, queue: str | None = None, *, states: States, name: str | None = None,
                           name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                           until: When | None = None, dry_run: bool = False) -> BulkResult:
        """See Admin.cancel_tasks."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        return await self._call(TaskCalls.cancel_tasks(flt, dry_run))

    async def retry_tasks(self, queue: str | None = None, *, states: States, name: str | None = None,
                          name_prefix: str | None = None, worker_id: str | None = None, since: When | None = None,
                          until: When | None = None, dry_run: bool = False) -> BulkResult:
        """See Admin.retry_tasks."""
        flt = task_filter(queue, states, name, name_prefix, worker_id, since, until)
        return await self._call(TaskCalls.retry_tasks(flt, dry_run))
