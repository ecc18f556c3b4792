"""Periodic tasks ("beat"): schedule definitions, the client calls that manage them, and the
declarative `@app.periodic` / `app.add_schedule` that workers apply on start-up.

The scheduler fires schedules itself (one replica at a time holds the beat lease); each
firing is a normal task submitted with the idempotency key ``SCHEDULE_ID@FIRE_TIME``.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from conveyor.calls import AsyncCalls, Rpc, Steps, SyncCalls
from conveyor.options import Seconds, SubmitOptions, _duration, _timestamp, build_spec
from conveyor.v1 import schedule_service_pb2 as pb
from conveyor.v1 import schedule_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conveyor.app import Task
    from conveyor.client import Client

P = ParamSpec("P")
R = TypeVar("R")
Schedule = pb.Schedule
CatchUp = Literal["skip", "fire_once"]
CATCHUP = {"skip": pb.CATCHUP_POLICY_SKIP, "fire_once": pb.CATCHUP_POLICY_FIRE_ONCE,
           "fire-once": pb.CATCHUP_POLICY_FIRE_ONCE}
_TEMPLATE_OPTIONS = ("queue", "priority", "timeout", "max_retries", "retry_backoff", "retry_backoff_max", "headers")


def build_schedule(
    schedule_id: str, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
    every: Seconds | None = None, cron: str | None = None, tz: str | None = None,
    start: dt.datetime | None = None, end: dt.datetime | None = None, catchup: CatchUp | None = None,
    options: SubmitOptions | None = None,
) -> pb.Schedule:
    """A Schedule message: fire task `task` with these arguments every `every` seconds, or at
    the times the cron expression `cron` names in time zone `tz` (IANA name; default UTC)."""
    if (every is None) == (cron is None):
        raise ValueError("give exactly one of every= (seconds or timedelta) or cron= (expression)")
    if tz and cron is None:
        raise ValueError("tz= applies to cron schedules")
    opts = options or SubmitOptions()
    for name in ("eta", "countdown", "expires", "idempotency_key"):
        if getattr(opts, name) is not None:
            raise ValueError(f"a schedule's task cannot set {name}: each firing sets its own")
    msg = pb.Schedule(id=schedule_id, template=build_spec(task, args, kwargs, opts))
    if every is not None:
        msg.interval.CopyFrom(_duration(every))
    else:
        msg.cron.expression = cron or ""
        msg.cron.time_zone = tz or ""
    if start is not None:
        msg.start_time.CopyFrom(_timestamp(start))
    if end is not None:
        msg.end_time.CopyFrom(_timestamp(end))
    if catchup is not None:
        if catchup not in CATCHUP:
            raise ValueError(f"catchup must be 'skip' or 'fire_once', got {catchup!r}")
        msg.catchup = CATCHUP[catchup]
    return msg


def _schedule_of(schedule: str | pb.Schedule, task: str | None, args: Sequence[Any],
                 kwargs: Mapping[str, Any] | None, fields: dict[str, Any]) -> pb.Schedule:
    if isinstance(schedule, pb.Schedule):
        if task is not None or args or kwargs or fields:
            raise TypeError("pass either a Schedule message or an id with the task and its fields, not both")
        return schedule
    if task is None:
        raise TypeError("a schedule needs the task name to submit")
    trigger = {k: fields.pop(k) for k in ("every", "cron", "tz", "start", "end", "catchup") if k in fields}
    return build_schedule(schedule, task, args, kwargs, options=SubmitOptions(**fields), **trigger)


class ScheduleCalls:
    """Request builders and result parsers of the schedule calls; no I/O. Only reads are
    retried through an outage (a retried create could answer AlreadyExists for itself)."""

    @staticmethod
    def create(schedule: str | pb.Schedule, task: str | None, args: Sequence[Any],
               kwargs: Mapping[str, Any] | None, fields: dict[str, Any]) -> Rpc[pb.Schedule]:
        msg = _schedule_of(schedule, task, args, kwargs, fields)
        return Rpc("CreateSchedule", pb.CreateScheduleRequest(schedule=msg), _schedule)

    @staticmethod
    def update(schedule: str | pb.Schedule, task: str | None, args: Sequence[Any],
               kwargs: Mapping[str, Any] | None, allow_missing: bool, fields: dict[str, Any]) -> Rpc[pb.Schedule]:
        msg = _schedule_of(schedule, task, args, kwargs, fields)
        req = pb.UpdateScheduleRequest(schedule=msg, allow_missing=allow_missing)
        return Rpc("UpdateSchedule", req, _schedule)

    @staticmethod
    def delete(schedule_id: str) -> Rpc[None]:
        return Rpc("DeleteSchedule", pb.DeleteScheduleRequest(schedule_id=schedule_id), lambda _: None)

    @staticmethod
    def pause(schedule_id: str) -> Rpc[pb.Schedule]:
        return Rpc("PauseSchedule", pb.PauseScheduleRequest(schedule_id=schedule_id), _schedule)

    @staticmethod
    def resume(schedule_id: str) -> Rpc[pb.Schedule]:
        return Rpc("ResumeSchedule", pb.ResumeScheduleRequest(schedule_id=schedule_id), _schedule)

    @staticmethod
    def fire(schedule_id: str) -> Rpc[str]:
        return Rpc("FireSchedule", pb.FireScheduleRequest(schedule_id=schedule_id), lambda r: r.task_id)

    @staticmethod
    def get(schedule_id: str) -> Rpc[pb.Schedule]:
        return Rpc("GetSchedule", pb.GetScheduleRequest(schedule_id=schedule_id), _schedule, idempotent=True)

    @staticmethod
    def beat_leader() -> Rpc[str]:
        return Rpc("ListSchedules", pb.ListSchedulesRequest(page_size=1), lambda r: r.beat_leader, idempotent=True)

    @staticmethod
    def list() -> Steps[list[pb.Schedule]]:
        """Every page, 1,000 schedules each."""
        out: list[pb.Schedule] = []
        token = ""
        while True:
            resp: pb.ListSchedulesResponse = yield Rpc(
                "ListSchedules", pb.ListSchedulesRequest(page_size=1000, page_token=token), idempotent=True)
            out += resp.schedules
            token = resp.next_page_token
            if not token:
                return out


def _schedule(resp: Any) -> pb.Schedule:
    return resp.schedule  # type: ignore[no-any-return]


class Schedules(SyncCalls):
    """`Client.schedules`: create, change and read periodic schedules."""

    stub_type = pb_grpc.ScheduleServiceStub

    def create(self, /, schedule: str | pb.Schedule, task: str | None = None, args: Sequence[Any] = (),
               kwargs: Mapping[str, Any] | None = None, **fields: Any) -> pb.Schedule:
        """Creates a schedule: `create("nightly", "reports.build", cron="0 2 * * *",
        tz="Europe/Berlin")`, or from a Schedule message. Fields are build_schedule's keyword
        arguments plus the task options queue, priority, timeout, max_retries, retry_backoff,
        retry_backoff_max and headers. Raises AlreadyExists when the id is taken."""
        return self._call(ScheduleCalls.create(schedule, task, args, kwargs, fields))

    def update(self, /, schedule: str | pb.Schedule, task: str | None = None, args: Sequence[Any] = (),
               kwargs: Mapping[str, Any] | None = None, *, allow_missing: bool = False, **fields: Any) -> pb.Schedule:
        """Replaces a schedule's definition (same arguments as create); it applies from the
        next firing. With allow_missing it creates a missing schedule."""
        return self._call(ScheduleCalls.update(schedule, task, args, kwargs, allow_missing, fields))

    def apply(self, schedule: pb.Schedule) -> pb.Schedule:
        """Creates or updates; a no-op when the stored definition is the same."""
        return self._call(ScheduleCalls.update(schedule, None, (), None, True, {}))

    def delete(self, schedule_id: str) -> None:
        """Deletes a schedule; it never fires again."""
        return self._call(ScheduleCalls.delete(schedule_id))

    def pause(self, schedule_id: str) -> pb.Schedule:
        """Stops firing until resumed."""
        return self._call(ScheduleCalls.pause(schedule_id))

    def resume(self, schedule_id: str) -> pb.Schedule:
        """Fires again from the next fire time (the paused time is not caught up)."""
        return self._call(ScheduleCalls.resume(schedule_id))

    def fire(self, schedule_id: str) -> str:
        """Submits the schedule's task once, now, outside its plan; returns the task id (the plan,
        last fire and counts do not change; a second call in the same second answers the same task)."""
        return self._call(ScheduleCalls.fire(schedule_id))

    def get(self, schedule_id: str) -> pb.Schedule:
        return self._call(ScheduleCalls.get(schedule_id))

    def beat_leader(self) -> str:
        """The scheduler replica firing schedules now ('' when none holds the beat lease)."""
        return self._call(ScheduleCalls.beat_leader())

    def list(self) -> builtins.list[pb.Schedule]:
        """Every schedule, in id order."""
        return self._run(ScheduleCalls.list())


class AsyncSchedules(AsyncCalls):
    """`AsyncClient.schedules`: see Schedules."""

    stub_type = pb_grpc.ScheduleServiceStub

    async def create(self, /, schedule: str | pb.Schedule, task: str | None = None, args: Sequence[Any] = (),
                     kwargs: Mapping[str, Any] | None = None, **fields: Any) -> pb.Schedule:
        """See Schedules.create."""
        return await self._call(ScheduleCalls.create(schedule, task, args, kwargs, fields))

    async def update(self, /, schedule: str | pb.Schedule, task: str | None = None, args: Sequence[Any] = (),
                     kwargs: Mapping[str, Any] | None = None, *, allow_missing: bool = False,
                     **fields: Any) -> pb.Schedule:
        """See Schedules.update."""
        return await self._call(ScheduleCalls.update(schedule, task, args, kwargs, allow_missing, fields))

    async def apply(self, schedule: pb.Schedule) -> pb.Schedule:
        """See Schedules.apply."""
        return await self._call(ScheduleCalls.update(schedule, None, (), None, True, {}))

    async def delete(self, schedule_id: str) -> None:
        return await self._call(ScheduleCalls.delete(schedule_id))

    async def pause(self, schedule_id: str) -> pb.Schedule:
        return await self._call(ScheduleCalls.pause(schedule_id))

    async def resume(self, schedule_id: str) -> pb.Schedule:
        return await self._call(ScheduleCalls.resume(schedule_id))

    async def fire(self, schedule_id: str) -> str:
        return await self._call(ScheduleCalls.fire(schedule_id))

    async def get(self, schedule_id: str) -> pb.Schedule:
        return await self._call(ScheduleCalls.get(schedule_id))

    async def beat_leader(self) -> str:
        """See Schedules.beat_leader."""
        return await self._call(ScheduleCalls.beat_leader())

    async def list(self) -> builtins.list[pb.Schedule]:
        """Every schedule, in id order."""
        return await self._run(ScheduleCalls.list())


class Periodic:
    """Declarative schedules of `App`: `@app.periodic(...)` and `app.add_schedule(...)`.

    They are only recorded here; `conveyor-worker` applies them on start-up (create or update
    by id, a no-op when unchanged), and `app.apply_schedules()` does the same from any process.
    Schedules removed from the code are not deleted: `conveyor schedules rm ID` does that.
    """

    schedules: dict[str, pb.Schedule]

    if TYPE_CHECKING:
        tasks: dict[str, Task[Any, Any]]

        def task(self, *, name: str | None = ..., queue: str | None = ..., priority: int | None = ...,
                 timeout: Seconds | None = ..., max_retries: int | None = ..., retry_backoff: Seconds | None = ...,
                 retry_backoff_max: Seconds | None = ...) -> Any: ...

        @property
        def client(self) -> Client: ...

    def add_schedule(self, schedule_id: str, task: str | Task[Any, Any], args: Sequence[Any] = (),
                     kwargs: Mapping[str, Any] | None = None, *, every: Seconds | None = None, cron: str | None = None,
                     tz: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None,
                     catchup: CatchUp | None = None, **options: Any) -> pb.Schedule:
        """Declares a schedule firing `task` (a Task or a task name) with these arguments.
        Options are task options (queue, priority, timeout, max_retries, retry_backoff,
        retry_backoff_max, headers); a Task's own options apply unless overridden."""
        if schedule_id in self.schedules:
            raise ValueError(f"schedule {schedule_id!r} is already declared")
        unknown = set(options) - set(_TEMPLATE_OPTIONS)
        if unknown:
            raise TypeError(f"unknown schedule task options: {', '.join(sorted(unknown))}")
        if isinstance(task, str):
            name, opts = task, SubmitOptions(**options)
        else:
            name, opts = task.name, task.options.merged(**options)
        msg = build_schedule(schedule_id, name, args, kwargs, every=every, cron=cron, tz=tz, start=start, end=end,
                             catchup=catchup, options=opts)
        self.schedules[schedule_id] = msg
        return msg

    def periodic(self, *, every: Seconds | None = None, cron: str | None = None, tz: str | None = None,
                 id: str | None = None, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                 catchup: CatchUp | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None,
                 name: str | None = None, queue: str | None = None, priority: int | None = None,
                 timeout: Seconds | None = None, max_retries: int | None = None) -> _PeriodicDecorator:
        """Registers the decorated function as a task (unless it already is one of this app's
        tasks) and declares a schedule for it, whose id defaults to the task name:

            @app.periodic(cron="*/5 * * * *", tz="Europe/Berlin")
            def sweep() -> None: ...
        """
        build_schedule("check", "check", every=every, cron=cron, tz=tz, catchup=catchup)  # fail at import time

        def register(fn: Any) -> Any:
            registered = any(fn is t for t in self.tasks.values())
            task = fn if registered else self.task(name=name, queue=queue, priority=priority, timeout=timeout,
                                                   max_retries=max_retries)(fn)
            self.add_schedule(id or task.name, task, args, kwargs, every=every, cron=cron, tz=tz, start=start,
                              end=end, catchup=catchup)
            return task

        return _PeriodicDecorator(register)

    def apply_schedules(self, client: Client | None = None) -> list[pb.Schedule]:
        """Creates or updates every declared schedule (idempotent), via `client` or the app's own."""
        via = (client or self.client).schedules
        return [via.apply(s) for s in self.schedules.values()]


class _PeriodicDecorator:
    def __init__(self, register: Callable[[Any], Any]) -> None:
        self._register = register

    @overload
    def __call__(self, fn: Task[P, R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    def __call__(self, fn: Any, /) -> Any:
        return self._register(fn)
