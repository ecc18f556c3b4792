"""`App` and `@app.task`: task definitions that keep their function's signature."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Generic, ParamSpec, TypeVar, overload

from conveyor.aio import AsyncClient, AsyncTaskHandle
from conveyor.canvas import Signature
from conveyor.channels import TLSConfig
from conveyor.client import Client, TaskHandle
from conveyor.common import DEFAULT_TARGET, Call
from conveyor.options import Seconds, SubmitOptions
from conveyor.schedules import Periodic, Schedule

P = ParamSpec("P")
R = TypeVar("R")
POOLS = ("threads", "processes")
"""Where a worker runs plain functions (`@app.task(pool=...)`, `conveyor-worker --pool`)."""


class Task(Generic[P, R]):
    """A registered task. Call it to run it here; `submit` it to run it on a worker."""

    def __init__(self, app: App, fn: Callable[P, Any], name: str, options: SubmitOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self.retry_for: tuple[type[BaseException], ...] = (Exception,)
        self.dont_retry_for: tuple[type[BaseException], ...] = ()
        self.pool: str | None = None
        """Where a worker runs it, a plain function: "threads", "processes" or None (its default)."""
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This task with arguments (Celery's signature): for `submit_many`, and a step of a
        canvas (`a.s(1) | b.s()`). Its arguments are not checked against the function's, as
        submit's are: in a chain they are partial, the previous step's result coming first."""
        return Signature(self.name, args, kwargs, self.options, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a canvas it runs with exactly these arguments, after the
        steps before it but given none of their results."""
        return Signature(self.name, args, kwargs, self.options, immutable=True, app=self.app)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        """What submit and send send: a plain Call (a Signature costs more to make)."""
        return Call(self.name, args, kwargs, self.options)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy with other submit options (queue=, priority=, countdown=, ...)."""
        copy: Task[P, R] = Task(self.app, self.fn, self.name, replace(self.options, **options))
        copy.retry_for, copy.dont_retry_for, copy.pool = self.retry_for, self.dont_retry_for, self.pool
        return copy

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        return self.app.client.submit_many([self._call(args, kwargs)])[0]

    def send(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Like submit, without waiting for the scheduler's answer (see Client.send)."""
        return self.app.client.send_call(self._call(args, kwargs))

    async def asubmit(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskHandle[R]:
        return (await self.app.aclient.submit_many([self._call(args, kwargs)]))[0]

    async def asend(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskHandle[R]:
        """Like asubmit, without waiting for the scheduler's answer (see AsyncClient.send)."""
        return await self.app.aclient.send_call(self._call(args, kwargs))


class App(Periodic):
    """A set of task definitions plus the scheduler address to submit them to."""

    def __init__(self, name: str = "conveyor", *, scheduler: str = DEFAULT_TARGET, tls: TLSConfig | None = None,
                 token: str | None = None) -> None:
        """`tls` and `token` secure the clients the app opens (else CONVEYOR_TLS_* and CONVEYOR_TOKEN)."""
        self.name = name
        self.scheduler = scheduler
        self.tls = tls
        self._token = token
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        """Declared periodic schedules by id (`@app.periodic`, `app.add_schedule`)."""
        self._client: Client | None = None
        self._aclient: AsyncClient | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.scheduler, tls=self.tls, token=self._token)
        return self._client

    @property
    def aclient(self) -> AsyncClient:
        if self._aclient is None:
            self._aclient = AsyncClient(self.scheduler, tls=self.tls, token=self._token)
        return self._aclient

    def set_security(self, *, tls: TLSConfig | None = None, token: str | None = None) -> None:
        """Replaces the TLS and/or the token (None: leave it) the app's clients connect with, and
        drops clients opened before so the next use opens them anew. `conveyor-worker` passes the
        --tls-* and --token given on its command line, so tasks that submit tasks (`app.client`)
        connect as the worker does."""
        tls = self.tls if tls is None else tls
        token = self._token if token is None else token
        if tls == self.tls and token == self._token:
            return  # nothing changes (a forked pool child, say): keep the clients
        self.tls, self._token = tls, token
        self.close()

    def close(self) -> None:
        """Closes the app's client and forgets it (and the async one, which the caller closes
        with `await app.aclient.close()` if it used it); the next use opens new ones."""
        if self._client is not None:
            self._client.close()
        self._client = self._aclient = None

    def queues(self) -> set[str]:
        """Queues named by the task definitions."""
        return {t.options.queue for t in self.tasks.values() if t.options.queue}

    def default_queues(self) -> set[str]:
        """The queues a worker takes when given none (`conveyor-worker` without --queues): the
        task definitions' queues plus "default"."""
        return self.queues() | {"default"}

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, *, name: str | None = None, queue: str | None = None, priority: int | None = None,
             timeout: Seconds | None = None, soft_timeout: Seconds | None = None, max_retries: int | None = None,
             retry_backoff: Seconds | None = None, retry_backoff_max: Seconds | None = None,
             rate_limit: str | None = None, retry_for: tuple[type[BaseException], ...] = (Exception,),
             dont_retry_for: tuple[type[BaseException], ...] = (), pool: str | None = None,
             ignore_result: bool = False) -> _Decorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None, queue: str | None = None,
             priority: int | None = None, timeout: Seconds | None = None, soft_timeout: Seconds | None = None,
             max_retries: int | None = None, retry_backoff: Seconds | None = None,
             retry_backoff_max: Seconds | None = None, rate_limit: str | None = None,
             retry_for: tuple[type[BaseException], ...] = (Exception,),
             dont_retry_for: tuple[type[BaseException], ...] = (), pool: str | None = None,
             ignore_result: bool = False) -> Any:
        """Registers a task; usable bare (`@app.task`) or with options (`@app.task(queue="emails")`).

        A failed attempt is retried (while max_retries allows) when its exception is an
        instance of `retry_for` and not of `dont_retry_for`; `raise Retry(delay=...)` always
        asks for one. Time limits (TimeLimitExceeded, SoftTimeLimitExceeded) and a lost child
        process (WorkerLost) are retried whatever `retry_for` says, unless in `dont_retry_for`.
        `rate_limit` ("100/s", "5000/m") is global across all workers.
        `pool` ("threads" or "processes") says where a worker runs a plain function (default:
        the worker's first `--pool`); only workers that run that pool are leased the task.
        `ignore_result` (Celery's name): its outcome is not pushed back to the submitting client
        (it is still stored and can be read).
        """
        if pool is not None and pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)} (got {pool!r})")
        options = SubmitOptions(queue=queue, priority=priority, timeout=timeout, soft_timeout=soft_timeout,
                                max_retries=max_retries, retry_backoff=retry_backoff,
                                retry_backoff_max=retry_backoff_max, rate_limit=rate_limit,
                                ignore_result=ignore_result)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self.tasks:
                raise ValueError(f"task {task_name!r} is already registered")
            t: Task[Any, Any] = Task(self, f, task_name, options)
            if pool is not None and t.is_async:
                raise ValueError(f"task {task_name!r}: async def handlers run on the event loop; pool= is "
                                 "for plain functions")
            t.retry_for, t.dont_retry_for, t.pool = retry_for, dont_retry_for, pool
            self.tasks[task_name] = t
            return t

        return register(fn) if fn is not None else _Decorator(register)


class _Decorator:
    """What `app.task(...)` returns: applies the options to the decorated function."""

    def __init__(self, register: Callable[[Callable[..., Any]], Task[Any, Any]]) -> None:
        self._register = register

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Any:
        return self._register(fn)
