"""`Celery`: a Celery app on a Conveyor `App`. Its tasks are registered on the conveyor App as
real conveyor tasks (so `conveyor-worker -A module` runs them); its settings are checked against
the settings table; producing resolves Celery's routes and defaults into Conveyor's submit options.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import sys
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from conveyor.aio import AsyncClient
from conveyor.app import App
from conveyor.celery import current
from conveyor.celery.broker import scheduler_target
from conveyor.celery.canvas import Signature, signature
from conveyor.celery.conf import Settings
from conveyor.celery.control import Control
from conveyor.celery.exceptions import Unsupported
from conveyor.celery.options import call_fields, task_settings
from conveyor.celery.result import AsyncResult, GroupResult
from conveyor.celery.routes import Router, compile_routes, route
from conveyor.celery.schedules import BeatEntry, beat_entries, schedule_id, trigger
from conveyor.celery.settings import OLD_STYLE
from conveyor.celery.signals import Signal
from conveyor.celery.task import Task as CeleryTask
from conveyor.client import Client
from conveyor.common import DEFAULT_TARGET, Call
from conveyor.options import SubmitOptions
from conveyor.schedules import build_schedule

APP_REFUSED: dict[str, str] = {
    "worker_main": "run the worker as its own command: conveyor-worker -A MODULE",
    "start": "run the worker as its own command: conveyor-worker -A MODULE",
    "Worker": "run the worker as its own command: conveyor-worker -A MODULE",
    "WorkController": "run the worker as its own command: conveyor-worker -A MODULE",
    "Beat": "beat runs inside the scheduler; there is no beat process",
    "connection": "there are no broker connections: the app talks to the scheduler through app.client",
    "connection_for_read": "there are no broker connections: the app talks to the scheduler through app.client",
    "connection_for_write": "there are no broker connections: the app talks to the scheduler through app.client",
    "producer_or_acquire": "there are no kombu producers: the app talks to the scheduler through app.client",
    "producer_pool": "there are no kombu producers: the app talks to the scheduler through app.client",
    "pool": "there is no broker connection pool: the app talks to the scheduler through app.client",
    "amqp": "there is no AMQP layer",
    "backend": "results are kept by the scheduler: read them with AsyncResult(id)",
    "events": "there are no worker events: `conveyor watch ID`, the dashboard and OpenTelemetry",
    "config_from_envvar": "load the module yourself: app.config_from_object(os.environ['VAR'])",
    "config_from_cmdline": "worker options are conveyor-worker flags",
    "setup_security": "message signing is not supported: use TLS and tokens (CONVEYOR_TLS_*, CONVEYOR_TOKEN)",
}
"""Celery app attributes refused, and why."""

_CONSTRUCTOR_REFUSED = ("loader", "amqp", "events", "log", "control", "fixups", "tasks")


def gen_task_name(app_main: str | None, name: str, module_name: str) -> str:
    """Celery's default task name: `module.function`, the app's main name for `__main__`."""
    module = sys.modules.get(module_name)
    if module is not None:
        module_name = module.__name__
    if module_name == "__main__" and app_main:
        return f"{app_main}.{name}"
    return ".".join(p for p in (module_name, name) if p)


class WorkerApp(App):
    """The conveyor App a Celery app registers its tasks on. A worker given no -Q takes
    task_default_queue only ("default" unless set), as Celery's worker takes its default queue."""

    def __init__(self, celery: Celery) -> None:
        super().__init__(celery.main or "celery")
        self.celery = celery

    def default_queues(self) -> set[str]:
        return {self.celery.conf.task_default_queue or "default"}


class Celery:
    """Celery's app, on Conveyor. `broker` names the scheduler (`conveyor://host:port`);
    `backend` is accepted whatever it names (the scheduler keeps results). See
    docs/migrating-from-celery.md for every setting and option."""

    def __init__(self, main: str | None = None, loader: Any = None, backend: Any = None, amqp: Any = None,
                 events: Any = None, log: Any = None, control: Any = None, set_as_current: bool = True,
                 tasks: Any = None, broker: str | None = None, include: Sequence[str] | None = None,
                 changes: Mapping[str, Any] | None = None, config_source: Any = None, fixups: Any = None,
                 task_cls: type[CeleryTask] | None = None, autofinalize: bool = True, namespace: str | None = None,
                 strict_typing: bool = True, **kwargs: Any) -> None:
        given = {"loader": loader, "amqp": amqp, "events": events, "log": log, "control": control,
                 "fixups": fixups, "tasks": tasks}
        for name in _CONSTRUCTOR_REFUSED:
            if given[name] is not None:
                raise Unsupported(f"Celery({name}=...)", "Conveyor's app has no pluggable loader, AMQP, event, log or "
                                                         "control classes")
        if task_cls is not None and not (isinstance(task_cls, type) and issubclass(task_cls, CeleryTask)):
            raise Unsupported("Celery(task_cls=...)", "give a subclass of conveyor.celery.Task")
        self.main = main
        self.namespace = namespace
        self.task_cls: type[CeleryTask] = task_cls or CeleryTask
        self.tasks: dict[str, CeleryTask] = {}
        self.conveyor_app = WorkerApp(self)
        """The conveyor App the tasks are registered on (what conveyor-worker runs)."""
        self.control = Control(self)
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        self._routers: list[Router] = []
        self._periodic: dict[str, tuple[BeatEntry, SubmitOptions]] = {}
        self._autodiscover: list[tuple[Any, str]] = []
        self._finalized = False
        self._target: str | None = None
        self._preconf = {k: v for k, v in {"broker_url": broker, "result_backend": backend, "include": include,
                                           **(changes or {}), **kwargs}.items() if v is not None}
        self.conf = Settings(self._changed)
        self.conf.update(self._preconf)
        if config_source is not None:
            self.config_from_object(config_source, namespace=namespace)
        if set_as_current:
            current.set_current(self)
        current.app_created(self)

    def __repr__(self) -> str:
        return f"<Celery {self.main or '__main__'} at {id(self):#x} (Conveyor)>"

    def __getattr__(self, name: str) -> Any:
        if name in APP_REFUSED:
            raise Unsupported(f"app.{name}", APP_REFUSED[name])
        raise AttributeError(name)

    @property
    def Task(self) -> type[CeleryTask]:
        """The app's task base class (subclass it for `base=`)."""
        return self.task_cls

    # Settings and what follows from them

    def _changed(self, names: set[str]) -> None:
        if "broker_url" in names:
            self.close()
        if "task_routes" in names:
            self._routers = compile_routes(self.conf.task_routes)
        if names & {"beat_schedule", "timezone", "enable_utc", "task_routes", "task_default_queue",
                    "task_default_priority"} and (self.conf.enable_utc is not False or self.conf.timezone):
            self._build_schedules()  # checked now; with enable_utc=False, once the timezone is set (or at finalize)

    def config_from_object(self, obj: Any, silent: bool = False, force: bool = False,
                           namespace: str | None = None) -> None:
        """Reads settings from a module (or its name, 'pkg.settings' or 'pkg.module:attr'), class
        or dict, replacing those set before (the constructor's win), as Celery does. With
        `namespace='CELERY'`, only CELERY_-prefixed names are read (Django's settings)."""
        if isinstance(obj, str):
            try:
                obj = _import_object(obj)
            except ImportError:
                if silent:
                    return
                raise
        items: Iterable[tuple[str, Any]] = (obj.items() if isinstance(obj, Mapping) else
                                            ((k, getattr(obj, k)) for k in dir(obj) if not k.startswith("_")))
        changes: dict[str, Any] = {}
        prefix = f"{namespace or self.namespace}_" if (namespace or self.namespace) else None
        for key, value in items:
            if prefix is not None:
                if key.startswith(prefix):
                    changes[key[len(prefix):].lower()] = value
            elif key.isupper() and key.startswith(OLD_STYLE):
                raise Unsupported(key, "an old-style (Celery 3) setting name: use the lower-case Celery 4+ name, "
                                       "or config_from_object(..., namespace='CELERY') for CELERY_-prefixed ones")
            elif key == key.lower():
                changes[key] = value
        self.conf.replace_all(changes, {k: self.conf[k] for k in self._preconf})
        self.on_configure.send(sender=self)

    def now(self) -> dt.datetime:
        """Now, in the app's timezone."""
        tz = self.conf.zone()
        return dt.datetime.now(zoneinfo.ZoneInfo(tz) if tz else dt.UTC)

    @property
    def timezone(self) -> dt.tzinfo:
        tz = self.conf.zone()
        return zoneinfo.ZoneInfo(tz) if tz else dt.UTC

    # The scheduler

    @property
    def scheduler(self) -> str:
        """The scheduler address(es) the app talks to: CELERY_BROKER_URL, else broker_url, else
        CONVEYOR_SCHEDULER, else 127.0.0.1:50051."""
        url = os.environ.get("CELERY_BROKER_URL") or self.conf.broker_url
        return scheduler_target(url) if url else os.environ.get("CONVEYOR_SCHEDULER") or DEFAULT_TARGET

    @property
    def client(self) -> Client:
        """The conveyor Client the app submits and reads with (opened on first use)."""
        if self._target is None:
            self._target = self.conveyor_app.scheduler = self.scheduler
        return self.conveyor_app.client

    @property
    def aclient(self) -> AsyncClient:
        if self._target is None:
            self._target = self.conveyor_app.scheduler = self.scheduler
        return self.conveyor_app.aclient

    def close(self) -> None:
        """Closes the app's client; the next use reads the broker URL again."""
        self.conveyor_app.close()
        self._target = None

    # Tasks

    def task(self, *args: Any, **options: Any) -> Any:
        """Celery's `@app.task`, bare or with options (see the table in docs/migrating-from-celery.md)."""
        if len(args) == 1 and callable(args[0]) and not isinstance(args[0], CeleryTask):
            return self._register(args[0], options)
        if args:
            raise TypeError("@app.task takes the function, or keyword options: @app.task(name=..., ...)")
        return lambda fn: self._register(fn, options)

    def _register(self, fn: Callable[..., Any], options: Mapping[str, Any]) -> CeleryTask:
        settings = task_settings(options)
        name = settings.name or gen_task_name(self.main, fn.__name__, fn.__module__)
        if name in self.tasks:
            return self.tasks[name]
        cls = settings.base or self.task_cls
        if not (isinstance(cls, type) and issubclass(cls, CeleryTask)):
            raise Unsupported("@app.task(base=...)", "give a subclass of conveyor.celery.Task (its hooks run)")
        task = cls(self, fn, name, settings)
        task.conveyor_task = self.conveyor_app.task(
            name=name, queue=settings.queue, priority=settings.priority, timeout=settings.time_limit,
            soft_timeout=settings.soft_time_limit, max_retries=task.retries_allowed, rate_limit=settings.rate_limit,
            retry_for=(), dont_retry_for=task.not_retried(), ignore_result=bool(settings.ignore_result),
            pool=settings.pool)(task.handler())
        self.tasks[name] = task
        return task

    def submit_options(self, name: str, task: CeleryTask | None, options: Mapping[str, Any], args: Sequence[Any],
                       kwargs: Mapping[str, Any]) -> SubmitOptions:
        """The SubmitOptions of a call: the call's options, then the task's, then task_routes,
        then the app's defaults (Celery's order). A task this app does not define gets Celery's
        default retry limit (3)."""
        given = call_fields(options, self.conf.zone())
        base = task.conveyor_task.options if task is not None else SubmitOptions(max_retries=3)
        conf = self.conf
        routed: dict[str, Any] = {}
        unrouted = (given.get("queue") is None and base.queue is None,
                    given.get("priority") is None and base.priority is None)
        if any(unrouted):
            routed = route(self._routers, name, args, kwargs, options, task)
        ignore = task.ignore_result if task is not None else None
        chosen = {
            "queue": _first(given.get("queue"), base.queue, routed.get("queue"), conf.task_default_queue),
            "priority": _first(given.get("priority"), base.priority, routed.get("priority"),
                               conf.task_default_priority),
            "timeout": _first(given.get("timeout"), base.timeout, conf.task_time_limit),
            "soft_timeout": _first(given.get("soft_timeout"), base.soft_timeout, conf.task_soft_time_limit),
            "rate_limit": _first(base.rate_limit, conf.task_default_rate_limit),
            "ignore_result": _first(given.get("ignore_result"), ignore, conf.task_ignore_result),
            "expires": _first(given.get("expires"), task.expires if task is not None else None),
        }
        rest = {k: v for k, v in given.items() if k not in chosen}
        return replace(base, **{k: v for k, v in chosen.items() if v is not None}, **rest)

    def send_task(self, name: str, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> AsyncResult:
        """Submits a task by name (it need not be defined here)."""
        task = self.tasks.get(name)
        if task is not None:
            return task.apply_async(args, kwargs, **options)
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        call = Call(name, args, kwargs, self.submit_options(name, None, options, args, kwargs))
        handle = self.client.submit_many([call])[0]
        return AsyncResult(handle.id, app=self, task_name=name, handle=handle)

    def signature(self, name: str, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> Signature:
        return signature(name, args, kwargs, app=self, **options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:
        return AsyncResult(task_id, app=self, **kwargs)

    def GroupResult(self, group_id: str, **kwargs: Any) -> GroupResult:
        return GroupResult(group_id, app=self, **kwargs)

    # Start-up: what the worker does when it loads the app

    def autodiscover_tasks(self, packages: Sequence[str] | Callable[[], Sequence[str]] | None = None,
                           related_name: str = "tasks", force: bool = False) -> None:
        """Imports `PACKAGE.tasks` of each package when the worker loads the app (now with force)."""
        if packages is None:
            raise Unsupported("autodiscover_tasks() without packages", "there is no Django fix-up: pass the "
                              "packages, e.g. app.autodiscover_tasks(lambda: settings.INSTALLED_APPS)")
        self._autodiscover.append((packages, related_name))
        if force or self._finalized:
            self._discover(packages, related_name)

    @staticmethod
    def _discover(packages: Sequence[str] | Callable[[], Sequence[str]], related_name: str) -> None:
        for package in packages() if callable(packages) else packages:
            module = f"{package}.{related_name}"
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise

    def finalize(self, auto: bool = False) -> App:
        """Imports `include`/`imports` and discovered task modules, sends on_after_configure and
        on_after_finalize, and declares the beat schedule; returns the conveyor App to run."""
        if not self._finalized:
            self._finalized = True
            for module in (*self.conf.imports, *self.conf.include):
                importlib.import_module(module)
            for packages, related_name in self._autodiscover:
                self._discover(packages, related_name)
            self.on_after_configure.send(sender=self, source=self.conf)
            self.on_after_finalize.send(sender=self)
            self._build_schedules()
        return self.conveyor_app

    def add_periodic_task(self, schedule: Any, sig: Any, args: Sequence[Any] = (),
                          kwargs: Mapping[str, Any] | None = None, name: str | None = None, **opts: Any) -> str:
        """Declares a periodic task (a signature, every `schedule`: seconds, timedelta, crontab);
        returns its schedule id (`name`, else the signature's repr, made a schedule id: see schedule_id)."""
        if not isinstance(sig, Signature):
            sig = signature(sig, app=self)
        if args or kwargs:
            sig = sig.clone(args, dict(kwargs or {}))
        key = schedule_id(name or repr(sig))
        every, cron = trigger(schedule, f"add_periodic_task({key!r})")
        fields = call_fields(opts, self.conf.zone(), "add_periodic_task")
        entry = BeatEntry(key, sig.name, tuple(sig.args), dict(sig.kwargs), every, cron)
        self._periodic[key] = (entry, replace(sig.options, **fields))
        self._build_schedules()
        return key

    def _build_schedules(self) -> None:
        """Declares beat_schedule's entries and add_periodic_task's on the conveyor App (replacing
        earlier ones), for the worker to apply at start-up."""
        tz = self.conf.zone()
        declared = {}
        entries = [(e, None) for e in beat_entries(self.conf.beat_schedule)] + list(self._periodic.values())
        for entry, fixed in entries:
            if entry.id in declared:
                raise Unsupported(f"beat_schedule[{entry.id!r}]", "two entries have this schedule id (names differing "
                                  "only in characters a schedule id cannot hold: letters, digits and _.:- remain)")
            opts = fixed or self.submit_options(entry.task, self.tasks.get(entry.task), entry.options, entry.args,
                                                entry.kwargs)
            try:
                declared[entry.id] = build_schedule(entry.id, entry.task, entry.args, entry.kwargs, every=entry.every,
                                                    cron=entry.cron, tz=tz if entry.cron else None, options=opts)
            except ValueError as exc:
                raise Unsupported(f"beat_schedule[{entry.id!r}]", str(exc)) from None
        self.conveyor_app.schedules.clear()
        self.conveyor_app.schedules.update(declared)

    def set_current(self) -> None:
        current.set_current(self)

    def set_default(self) -> None:
        current.set_current(self)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _import_object(ref: str) -> Any:
    """'pkg.module', 'pkg.module:attr' or 'pkg.module.attr'."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        if attr or "." not in module_name:
            raise
        module_name, _, attr = module_name.rpartition(".")
        module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def shared_task(*args: Any, **options: Any) -> Any:
    """Celery's `shared_task`: a task registered on every app, made before or after it; the
    object returned acts as the current app's task."""
    def create(fn: Callable[..., Any]) -> SharedTask:
        name = options.get("name") or gen_task_name(None, fn.__name__, fn.__module__)
        current.on_every_app(lambda app: app._register(fn, {**options, "name": name}))
        return SharedTask(name)

    if len(args) == 1 and callable(args[0]):
        return create(args[0])
    if args:
        raise TypeError("@shared_task takes the function, or keyword options")
    return create


class SharedTask:
    """A shared task: every attribute and call is the current app's task of that name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _task(self) -> CeleryTask:
        return current.current_app().tasks[self.name]  # type: ignore[no-any-return]

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._task(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@shared_task: {self.name}>"


current.default_factory = lambda: Celery("default")
