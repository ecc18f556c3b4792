"""A Celery task on a Conveyor task: `@app.task` makes a `Task` here and registers its handler
as a real conveyor Task (the worker runs that). The handler gives Celery's behaviour on top:
`bind=True` and `self.request`, `self.retry()`, `autoretry_for` with Celery's backoff, and the
base class hooks (on_success, on_failure, on_retry, after_return).

Retries are asked for with conveyor's `Retry(delay=...)`: the delay is always computed here,
as Celery computes it, and the conveyor task retries nothing else by itself (its retry_for is
empty), so an exception autoretry_for does not name fails the task, as in Celery.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import inspect
import math
import random
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from conveyor.celery import states
from conveyor.celery.canvas import Signature
from conveyor.celery.exceptions import MaxRetriesExceededError, Unsupported
from conveyor.celery.options import TaskSettings, aware
from conveyor.celery.request import Called, Request, calling, done
from conveyor.celery.result import AsyncResult, EagerResult, retry_reason
from conveyor.common import Call
from conveyor.context import TaskContext, bind
from conveyor.errors import Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from conveyor.serialization import decode_call, decode_result, encode_call, encode_result

MAX_RETRIES = 1000
"""Conveyor's most retries: what max_retries=None (Celery: retry forever) becomes."""


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """What Celery's hooks get as `einfo`: the exception and its formatted traceback."""

    exception: BaseException
    traceback: str

    @property
    def type(self) -> type[BaseException]:
        return type(self.exception)

    @classmethod
    def of(cls, exc: BaseException) -> ExceptionInfo:
        return cls(exc, "".join(traceback.format_exception(exc)))


def backoff(factor: float, retries: int, maximum: float, jitter: bool) -> float:
    """Celery's autoretry delay: factor * 2**retries, capped at maximum, drawn from [0, delay] with jitter."""
    delay = min(maximum, factor * (2 ** retries))
    if jitter:
        delay = random.randrange(math.floor(delay) + 1)
    return max(0.0, float(delay))


class Task:
    """A Celery task (Celery's `Task`): call it to run it here; `delay`/`apply_async` submit it;
    `s`/`si` make signatures. Subclass it and pass `base=` for shared behaviour and hooks."""

    def __init__(self, app: Any, fn: Callable[..., Any], name: str, settings: TaskSettings) -> None:
        self.app = app
        self.name = name
        self.settings = settings
        self._fn = fn
        self.bind = settings.bind
        self.typing = settings.typing
        self.max_retries = settings.max_retries
        self.default_retry_delay = settings.default_retry_delay
        self.autoretry_for = settings.autoretry_for
        self.dont_autoretry_for = settings.dont_autoretry_for
        self.retry_kwargs = dict(settings.retry_kwargs)
        self.retry_backoff = settings.retry_backoff
        self.retry_backoff_max = settings.retry_backoff_max
        self.retry_jitter = settings.retry_jitter
        self.rate_limit = settings.rate_limit
        self.time_limit = settings.time_limit
        self.soft_time_limit = settings.soft_time_limit
        self.ignore_result = settings.ignore_result
        self.queue = settings.queue
        self.priority = settings.priority
        self.expires = settings.expires
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.conveyor_task: Any = None
        """The conveyor Task the worker runs (set when the app registers this task)."""

    def __repr__(self) -> str:
        return f"<@task: {self.name} of {self.app.main}>"

    @property
    def run(self) -> Callable[..., Any]:
        """The task's function (bound to the task with bind=True)."""
        return functools.partial(self._fn, self) if self.bind else self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the function here (Celery's `task(...)`; with bind=True the task comes first)."""
        return self.run(*args, **kwargs)

    @property
    def request(self) -> Request:
        """The running attempt (Celery's request); the empty request outside a task."""
        return Request.current()

    @property
    def retries_allowed(self) -> int:
        """The max_retries the scheduler holds the task to: enough for autoretry's retry_kwargs too."""
        limits = [self.max_retries, self.retry_kwargs.get("max_retries", self.max_retries)]
        return max((MAX_RETRIES if limit is None else int(limit)) for limit in limits)

    def not_retried(self) -> tuple[type[BaseException], ...]:
        """What the conveyor task must not retry by itself: time limits, which fail a Celery task
        (unless autoretry_for names them). Everything else is retried only when asked (Retry)."""
        return tuple(e for e in (TimeLimitExceeded, SoftTimeLimitExceeded)
                     if not (self.autoretry_for and issubclass(e, self.autoretry_for)))

    # Submitting

    def _check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if not self.typing:
            return
        try:
            params = inspect.signature(self._fn)
        except (TypeError, ValueError):
            return
        try:
            (params.bind(None, *args, **kwargs) if self.bind else params.bind(*args, **kwargs))
        except TypeError as exc:
            raise TypeError(f"{self.name}: {exc}") from None

    def _call(self, args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any]) -> Call:
        self._check_arguments(args, kwargs)
        return Call(self.name, tuple(args), dict(kwargs), self.app.submit_options(self.name, self, options, args,
                                                                                   kwargs))

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        """Submits the task (options in Celery's names: countdown, eta, expires, queue, priority, ...)."""
        call = self._call(tuple(args or ()), dict(kwargs or {}), options)
        handle = self.app.client.submit_many([call])[0]
        return AsyncResult(handle.id, app=self.app, task_name=self.name, handle=handle)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def signature(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
                  immutable: bool = False, **options: Any) -> Signature:
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        opts = self.app.submit_options(self.name, self, options, args, kwargs)
        return Signature(self.name, args, kwargs, opts, immutable, self.app)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return self.signature(args, kwargs, immutable=True)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, app=self.app, task_name=self.name)

    # Retrying

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None, throw: bool = True,
              eta: dt.datetime | None = None, countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> NoReturn:
        """Asks for another attempt after `countdown` seconds (or at `eta`; default_retry_delay
        otherwise) by raising conveyor's Retry; once max_retries are used up, raises `exc` (the
        task fails with it) or MaxRetriesExceededError. Use as Celery's: `raise self.retry(exc=exc)`."""
        if args is not None or kwargs is not None:
            raise Unsupported("retry(args=, kwargs=)", "a retry runs the task with the arguments it was submitted "
                                                       "with; submit a new task for new arguments")
        if not throw:
            raise Unsupported("retry(throw=False)", "a retry is asked for by raising; the handler must raise it")
        if options:
            raise Unsupported(f"retry({', '.join(options)}=...)", "a retry keeps the task's queue and options")
        request = self.request
        if request.called_directly:
            raise exc if exc is not None else Retry(reason="the task was called directly, not run by a worker")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and limit > self.retries_allowed:
            raise Unsupported(f"retry(max_retries={limit})", f"the task was submitted allowing {self.retries_allowed} "
                              "retries (its max_retries); raise the task's max_retries instead")
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"Can't retry {self.name}[{request.id}] args:{request.args} "
                                          f"kwargs:{request.kwargs}")
        if countdown is None and eta is not None:
            countdown = (aware(eta, self.app.conf.zone()) - dt.datetime.now(dt.UTC)).total_seconds()
        delay = max(0.0, self.default_retry_delay if countdown is None else float(countdown))
        raise Retry(delay=delay, reason=retry_reason(delay, exc)) from exc

    def _autoretry(self, exc: BaseException, request: Request) -> NoReturn:
        retry_kwargs = dict(self.retry_kwargs)
        if self.retry_backoff:
            retry_kwargs["countdown"] = backoff(max(1.0, self.retry_backoff), request.retries, self.retry_backoff_max,
                                                self.retry_jitter)
        self.retry(exc=exc, **retry_kwargs)

    # Running (in the worker, or in this process with apply)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Hook: the task returned `retval` (override in a base class)."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo) -> None:
        """Hook: the task failed with `exc` and will not be retried."""

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo) -> None:
        """Hook: the task asked for a retry."""

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any,
                     einfo: ExceptionInfo | None) -> None:
        """Hook: after the attempt, whatever its outcome."""

    def _failed(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
        """Turns what the function raised into what the attempt raises, running the hooks."""
        request = self.request
        task_id = request.id or ""
        if not isinstance(exc, Retry) and self.autoretry_for and isinstance(exc, self.autoretry_for) and not (
                self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for)):
            try:
                self._autoretry(exc, request)
            except BaseException as outcome:  # noqa: BLE001 - a Retry, or the error that ends the task
                exc = outcome
        einfo = ExceptionInfo.of(exc)
        if isinstance(exc, Retry):
            self.on_retry(exc, task_id, args, kwargs, einfo)
            self.after_return(states.RETRY, exc, task_id, args, kwargs, einfo)
        else:
            self.on_failure(exc, task_id, args, kwargs, einfo)
            self.after_return(states.FAILURE, exc, task_id, args, kwargs, einfo)
        raise exc

    def _succeeded(self, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        task_id = self.request.id or ""
        self.on_success(value, task_id, args, kwargs)
        self.after_return(states.SUCCESS, value, task_id, args, kwargs, None)
        return value

    def _invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any], eager: bool = False) -> Any:
        token = calling(Called(args, kwargs, eager))
        try:
            try:
                value = self.run(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - hooks and retries see every failure
                self._failed(exc, args, kwargs)
            return self._succeeded(value, args, kwargs)
        finally:
            done(token)

    async def _invoke_async(self, args: tuple[Any, ...], kwargs: dict[str, Any], eager: bool = False) -> Any:
        token = calling(Called(args, kwargs, eager))
        try:
            try:
                value = await self.run(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - hooks and retries see every failure
                self._failed(exc, args, kwargs)
            return self._succeeded(value, args, kwargs)
        finally:
            done(token)

    def handler(self) -> Callable[..., Any]:
        """The function the conveyor Task runs: the task's own, with Celery's behaviour around it."""
        if inspect.iscoroutinefunction(self._fn):
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await self._invoke_async(args, kwargs)
            return run_async

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._invoke(args, kwargs)
        return run

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              task_id: str | None = None, retries: int = 0, throw: bool | None = None, **options: Any) -> EagerResult:
        """Runs the task in this process, now (Celery's `apply`, the in-process testing helper):
        arguments and result go through JSON as they would through the scheduler, `self.request`
        is filled, and a retry runs again at once (no countdown) until max_retries. Returns an
        EagerResult; `throw` (or task_eager_propagates) raises a failure instead."""
        call = self._call(tuple(args or ()), dict(kwargs or {}), options)
        run_args, run_kwargs = decode_call(encode_call(call.args, call.kwargs))
        task_id = task_id or f"eager-{uuid.uuid4().hex}"
        while True:
            ctx = TaskContext(id=task_id, name=self.name, queue=call.options.queue or "default", attempt=retries + 1,
                              max_retries=self.retries_allowed, headers=dict(call.options.headers),
                              deadline=time.time() + (call.options.timeout or 300.0))  # type: ignore[operator]
            try:
                value = contextvars.copy_context().run(self._eager_attempt, ctx, tuple(run_args), run_kwargs)
            except Retry:
                retries += 1
                continue
            except Exception as exc:
                if throw or (throw is None and self.app.conf.task_eager_propagates):
                    raise
                return EagerResult(task_id, exc, states.FAILURE, ExceptionInfo.of(exc).traceback, self.name, self.app)
            return EagerResult(task_id, decode_result(encode_result(value)), states.SUCCESS, None, self.name, self.app)

    def _eager_attempt(self, ctx: TaskContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bind(ctx)
        if inspect.iscoroutinefunction(self._fn):
            return asyncio.run(self._invoke_async(args, kwargs, eager=True))
        return self._invoke(args, kwargs, eager=True)
