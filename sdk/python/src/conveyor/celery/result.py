"""Celery's results (`celery.result`) over Conveyor's handles: `AsyncResult` for a task,
`WorkflowResult` for a chain or chord (and `AsyncResult("wf_...")`), `GroupResult` for a group,
`EagerResult` for `task.apply()`.

A failed task's error comes back as Celery brings it: `get()` raises it and `.result` is it.
Conveyor stores the error's type name, message and traceback, not a pickled exception, so a
builtin type (ValueError, KeyError, ZeroDivisionError, ...) comes back as itself, with the
message; any other type as conveyor's TaskFailed, whose `error_type` names it. `.traceback` is
the worker's traceback either way.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Iterator
from typing import Any

from conveyor.celery import states
from conveyor.celery.current import current_app
from conveyor.celery.exceptions import MaxRetriesExceededError, TaskRevokedError, Unsupported
from conveyor.common import TaskState
from conveyor.errors import (
    NotFound,
    SoftTimeLimitExceeded,
    TaskFailed,
    TimeLimitExceeded,
    WorkflowCancelled,
    WorkflowFailed,
)
from conveyor.serialization import decode_call, decode_result
from conveyor.v1 import task_pb2
from conveyor.workflow_snapshots import NodeSnapshot, WorkflowSnapshot, WorkflowState
from conveyor.workflows import WorkflowHandle

_KNOWN: dict[str, type[BaseException]] = {
    "MaxRetriesExceededError": MaxRetriesExceededError, "SoftTimeLimitExceeded": SoftTimeLimitExceeded,
    "TimeLimitExceeded": TimeLimitExceeded,
}
_SIGNALS = (None, "SIGTERM", "TERM", 15)


def task_exception(task_id: str, state: str, error_type: str, message: str, traceback: str) -> BaseException:
    """The exception a task's stored error stands for: a builtin (or Celery-named) type rebuilt
    with its message, else TaskFailed naming the type. It carries a note with the task id."""
    cls = _KNOWN.get(error_type) or getattr(builtins, error_type, None)
    exc: BaseException | None = None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - a type whose constructor wants more than a message
            exc = None
    if exc is None:
        exc = TaskFailed(task_id, state, error_type, message, traceback)
    exc.add_note(f"raised by task {task_id} on a worker (its traceback: result.traceback)")
    return exc


def retry_reason(delay: float, exc: BaseException | None) -> str:
    """The message of the Retry self.retry() raises: it names the exception the retry is for, so
    the task's record (RETRY) gives it back as `.result` (see retried)."""
    return f"Retry in {delay:g}s" + (f": {type(exc).__name__}: {exc}" if exc is not None else "")


def retried(task_id: str, message: str, traceback: str) -> BaseException | None:
    """The exception a RETRY record's Retry names (retry_reason), rebuilt; None if it names none."""
    _, _, rest = message.partition("s: ")
    error_type, sep, error_message = rest.partition(": ")
    if not message.startswith("Retry in ") or not sep:
        return None
    return task_exception(task_id, states.RETRY, error_type, error_message, traceback)


def revoked(task_id: str, state: TaskState) -> TaskRevokedError:
    why = "it expired before it started" if state is TaskState.EXPIRED else "it was revoked (cancelled)"
    return TaskRevokedError(task_id, states.REVOKED, why)


def check_signal(signal: Any) -> None:
    if signal not in _SIGNALS:
        raise Unsupported(f"revoke(signal={signal!r})", "a terminated task is stopped as Conveyor stops it: its "
                          "child process gets SIGTERM, then SIGKILL (processes pool); a thread sees "
                          "current_task().cancelled")


class AsyncResult:
    """A submitted task by id (Celery's AsyncResult): `.state`, `.get()`, `.ready()`, `.revoke()`.
    Each property that reads the task (state, result, traceback, ...) asks the scheduler anew.
    An id starting with "wf_" is a workflow's: you get a WorkflowResult."""

    def __new__(cls, id: str | None = None, *args: Any, **kwargs: Any) -> AsyncResult:
        kind = WorkflowResult if cls is AsyncResult and str(id).startswith("wf_") else cls
        return object.__new__(kind)

    def __init__(self, id: str, backend: Any = None, task_name: str | None = None, app: Any = None,
                 parent: Any = None, *, handle: Any = None) -> None:
        self.id = str(id)
        self.app = app if app is not None else current_app()
        self.parent = parent
        self.task_name = task_name
        self._handle = handle
        """The TaskHandle, kept so a result pushed to this client is found without a call."""

    @property
    def task_id(self) -> str:
        return self.id

    @property
    def handle(self) -> Any:
        """The conveyor TaskHandle (submitted here, or made for the id)."""
        if self._handle is None:
            self._handle = self.app.client.handle(self.id)
        return self._handle

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return self.id == other.id
        return isinstance(other, str) and other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _record(self) -> task_pb2.Task | None:
        try:
            return self.app.client.get_task(self.id)  # type: ignore[no-any-return]
        except NotFound:
            return None

    @property
    def state(self) -> str:
        """The Celery state (see conveyor.celery.states for the mapping); PENDING for an unknown id."""
        record = self._record()
        return states.PENDING if record is None else states.task_state(TaskState(record.state), record.attempt)

    status = state

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, no_ack: bool = True,
            follow_parents: bool = True, callback: Any = None, on_message: Any = None, on_interval: Any = None,
            disable_sync_subtasks: bool = True, **kwargs: Any) -> Any:
        """Waits (by push, not by polling: `interval` is not used) and returns the task's value.
        A failure is raised (or, with propagate=False, returned); a revoked or expired task raises
        TaskRevokedError; ResultTimeout (Celery's TimeoutError) after `timeout` seconds."""
        for name, value in (("callback", callback), ("on_message", on_message), ("on_interval", on_interval)):
            if value is not None:
                raise Unsupported(f"get({name}=...)", "get() waits for the outcome only; watch the task's states "
                                                      "with app.client.watch(id)")
        resp = self.handle.client.wait(self.id, timeout)
        state = TaskState(resp.state)
        if state is TaskState.SUCCEEDED:
            return decode_result(resp.result.data, resp.result.content_type)
        if state in (TaskState.CANCELLED, TaskState.EXPIRED):
            exc: BaseException = revoked(self.id, state)
        else:
            exc = task_exception(self.id, states.FAILURE, resp.error.type, resp.error.message, resp.error.traceback)
        if propagate:
            raise exc
        return exc

    wait = get

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    @property
    def result(self) -> Any:
        """The value (SUCCESS), the exception (FAILURE, REVOKED; while RETRY, the one the retry was
        asked for with), else None."""
        record = self._record()
        if record is None:
            return None
        state = TaskState(record.state)
        if state is TaskState.SUCCEEDED:
            return decode_result(record.result.data, record.result.content_type)
        if state in (TaskState.CANCELLED, TaskState.EXPIRED):
            return revoked(self.id, state)
        if record.HasField("error") and record.error.type == "Retry" and state is TaskState.SCHEDULED:
            return retried(self.id, record.error.message, record.error.traceback)
        if record.HasField("error"):
            return task_exception(self.id, states.task_state(state, record.attempt), record.error.type,
                                  record.error.message, record.error.traceback)
        return None

    info = result

    @property
    def traceback(self) -> str | None:
        """The worker's traceback of the failure (None unless it failed or waits for a retry)."""
        record = self._record()
        return record.error.traceback if record is not None and record.HasField("error") else None

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None, wait: bool = False,
               timeout: float | None = None) -> None:
        """Cancels the task: one not started never runs; a running one is stopped through its
        worker (a child process is terminated; a thread sees current_task().cancelled), whether
        or not `terminate` is given. `wait` waits until it has ended."""
        check_signal(signal)
        self.app.client.cancel(self.id)
        if wait:
            self.handle.client.wait(self.id, timeout)

    def forget(self) -> None:
        raise Unsupported("AsyncResult.forget()", "results expire with the scheduler's --result-ttl; a single "
                                                  "one cannot be deleted")

    @property
    def children(self) -> list[AsyncResult] | None:
        """Celery's children of a task (None: Conveyor does not track them; a group's are its results)."""
        return None

    def _field(self, read: Any) -> Any:
        record = self._record()
        return None if record is None else read(record)

    @property
    def name(self) -> str | None:
        return self._field(lambda r: r.name)  # type: ignore[no-any-return]

    @property
    def args(self) -> list[Any] | None:
        return self._field(lambda r: decode_call(r.payload, r.content_type)[0])  # type: ignore[no-any-return]

    @property
    def kwargs(self) -> dict[str, Any] | None:
        return self._field(lambda r: decode_call(r.payload, r.content_type)[1])  # type: ignore[no-any-return]

    @property
    def queue(self) -> str | None:
        return self._field(lambda r: r.queue)  # type: ignore[no-any-return]

    @property
    def retries(self) -> int | None:
        return self._field(lambda r: max(r.attempt - 1, 0))  # type: ignore[no-any-return]

    @property
    def date_done(self) -> dt.datetime | None:
        return self._field(lambda r: r.finished_at.ToDatetime(dt.UTC) if r.HasField("finished_at") else None)  # type: ignore[no-any-return]


class WorkflowResult(AsyncResult):
    """A chain's or chord's result (Celery gives the last task's AsyncResult): `get()` waits for
    the workflow and returns its result, raising the error of the step that failed it. `.id` is
    the workflow's id; `.workflow` the conveyor WorkflowHandle (its steps, `conveyor workflow ID`)."""

    def __init__(self, id: str, backend: Any = None, task_name: str | None = None, app: Any = None,
                 parent: Any = None, *, handle: WorkflowHandle | None = None) -> None:
        super().__init__(id, backend, task_name, app, parent)
        self.workflow = handle if handle is not None else self.app.client.workflow(self.id)

    def _snapshot(self) -> WorkflowSnapshot:
        return self.workflow.get()

    @property
    def state(self) -> str:
        try:
            return states.workflow_state(self._snapshot().state)
        except NotFound:
            return states.PENDING

    status = state

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, no_ack: bool = True,
            follow_parents: bool = True, callback: Any = None, on_message: Any = None, on_interval: Any = None,
            disable_sync_subtasks: bool = True, **kwargs: Any) -> Any:
        """Waits for the workflow (its WatchWorkflow stream) and returns its result."""
        try:
            return self.workflow.result(timeout)
        except WorkflowFailed as failed:
            exc: BaseException = task_exception(failed.task_id, states.FAILURE, failed.error_type,
                                                failed.error_message, failed.traceback)
            exc.add_note(f"step {failed.node} of workflow {self.id} ended {failed.node_state}")
        except WorkflowCancelled:
            exc = TaskRevokedError(self.id, states.REVOKED, "the workflow was revoked (cancelled)")
        if propagate:
            raise exc
        return exc

    wait = get

    @property
    def result(self) -> Any:
        snapshot = self._snapshot()
        if not snapshot.state.terminal:
            return None
        return self.get(propagate=False)

    info = result

    @property
    def traceback(self) -> str | None:
        error = self._snapshot().error
        return error.traceback if error is not None else None

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None, wait: bool = False,
               timeout: float | None = None) -> None:
        """Cancels the workflow: steps not started never will, running ones are cancelled."""
        check_signal(signal)
        if not self._snapshot().state.terminal:
            self.workflow.cancel()
        if wait:
            self.get(timeout, propagate=False)

    @property
    def parent(self) -> Any:
        raise Unsupported("result.parent", "a workflow's steps are its nodes: result.workflow.nodes() gives each "
                                           "step's TaskHandle, `conveyor workflow ID` shows them")

    @parent.setter
    def parent(self, value: Any) -> None:
        pass

    def _leaves(self, snapshot: WorkflowSnapshot) -> list[NodeSnapshot]:
        """The nodes nothing runs after, in node order: what the workflow's result lists."""
        parents = {p for node in snapshot.nodes for p in node.parents}
        return [node for node in snapshot.nodes if node.key not in parents]


class GroupResult(WorkflowResult):
    """A group's result (Celery's GroupResult): `get()` gives the members' results in order;
    `results` are AsyncResults of the members' tasks (a member that is a chain: its last task,
    once submitted)."""

    def __init__(self, id: str | None = None, results: Any = None, parent: Any = None, app: Any = None, *,
                 handle: WorkflowHandle | None = None) -> None:
        if id is None:
            raise Unsupported("GroupResult(results=...)", "a group's result is its workflow's: submit a group() "
                                                          "and keep the GroupResult it returns (or its id)")
        super().__init__(id, app=app, handle=handle)

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: Any = None) -> GroupResult:
        """The GroupResult of a group submitted earlier, by its (workflow) id."""
        return cls(id, app=app)

    def save(self, backend: Any = None) -> GroupResult:
        """A no-op: the workflow is stored already; GroupResult.restore(id) finds it."""
        return self

    @property
    def results(self) -> list[AsyncResult]:
        snapshot = self.workflow.last if self.workflow.last is not None else self._snapshot()
        leaves = self._leaves(snapshot)
        if not all(node.submitted for node in leaves):
            leaves = self._leaves(self._snapshot())
        return [AsyncResult(node.task_id, app=self.app) for node in leaves if node.submitted]

    @property
    def children(self) -> list[AsyncResult] | None:
        return self.results

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self._leaves(self.workflow.last or self._snapshot()))

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def join(self, timeout: float | None = None, propagate: bool = True, **kwargs: Any) -> Any:
        return self.get(timeout, propagate)

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(node.state is TaskState.SUCCEEDED for node in self._leaves(self._snapshot()))

    def ready(self) -> bool:
        return self._snapshot().state.terminal

    def successful(self) -> bool:
        return self._snapshot().state is WorkflowState.SUCCEEDED

    def failed(self) -> bool:
        snapshot = self._snapshot()
        return snapshot.state is WorkflowState.FAILED or any(
            node.state in (TaskState.FAILED, TaskState.DEAD) for node in self._leaves(snapshot))

    def waiting(self) -> bool:
        return not self.ready()


class EagerResult(AsyncResult):
    """What task.apply() returns: the outcome of a run in this process, already known."""

    def __init__(self, id: str, ret_value: Any, state: str, traceback: str | None = None,
                 name: str | None = None, app: Any = None) -> None:
        self.id, self.app, self.parent, self.task_name, self._handle = id, app, None, name, None
        self._value, self._state, self._traceback = ret_value, state, traceback

    @property
    def state(self) -> str:
        return self._state

    status = state

    def get(self, timeout: float | None = None, propagate: bool = True, *args: Any, **kwargs: Any) -> Any:
        if self._state in states.PROPAGATE_STATES and propagate:
            raise self._value
        return self._value

    wait = get

    def ready(self) -> bool:
        return True

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def traceback(self) -> str | None:
        return self._traceback

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        self._state = states.REVOKED
