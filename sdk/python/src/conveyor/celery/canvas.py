"""Celery's canvas calls on Conveyor's canvas: the same `Signature`, `chain`, `group` and `chord`
(conveyor.canvas), with Celery's ways to run them: `delay`, `apply_async`, calling a chain,
group or chord, `chord(header)(body)`, partial arguments, and options in Celery's names.

A lone signature is submitted as a task (an AsyncResult); a chain, group or chord as one
workflow, which the scheduler runs step by step (a WorkflowResult, or a GroupResult for a group).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from conveyor import canvas as base
from conveyor.celery.current import current_app
from conveyor.celery.exceptions import Unsupported
from conveyor.celery.options import call_fields
from conveyor.celery.result import AsyncResult, EagerResult, GroupResult, WorkflowResult
from conveyor.common import Call

WORKFLOW_REFUSED = {
    "countdown": "set it on the first step: task.s(...).set(countdown=...)",
    "eta": "set it on the first step: task.s(...).set(eta=...)",
    "expires": "set it on the steps: task.s(...).set(expires=...)",
    "idempotency_key": "a workflow's steps get their keys from the scheduler",
}


def _app_of(canvas: base.Canvas) -> Any:
    for sig in canvas.signatures():
        if sig.app is not None:
            return sig.app
    return current_app()


def _timezone(app: Any) -> str | None:
    return app.conf.zone() if hasattr(app, "conf") else None


def _pipe(left: base.Canvas | Call, right: Any) -> Any:
    """`left | right` in Celery's terms, made of this module's classes."""
    if not isinstance(right, Call | base.Canvas):
        return NotImplemented
    if isinstance(left, base.group) and not isinstance(right, base.group):
        return chord(left, right)
    return chain(left, right)


def _merged(sig: base.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]) -> base.Signature:
    """Celery's partial arguments: new args come first, kwargs update (an immutable signature ignores both)."""
    if sig.immutable or (not args and not kwargs):
        return sig
    return Signature(sig.name, (*args, *sig.args), {**sig.kwargs, **kwargs}, sig.options, sig.immutable, sig.app)


def _rebuild(part: base.Canvas, change: Callable[[base.Signature], base.Signature], first_only: bool = False
             ) -> base.Canvas:
    """The canvas with `change` applied to its signatures (only to those that start it, with first_only)."""
    if isinstance(part, base.Signature):
        return change(part)
    if isinstance(part, base.chain):
        steps = list(part.tasks)
        if first_only:
            return chain(_rebuild(steps[0], change, True), *steps[1:]) if steps else chain()
        return chain(*(_rebuild(s, change) for s in steps))
    if isinstance(part, base.chord):
        body = part.body if first_only or part.body is None else _rebuild(part.body, change)
        return chord(_rebuild(part.header, change, first_only), body)
    if isinstance(part, base.group):
        return group(*(_rebuild(m, change, first_only) for m in part.tasks))
    raise TypeError(f"not a canvas: {part!r}")


class Signature(base.Signature):
    """A task with its arguments and options (Celery's signature), made by `task.s()`, `task.si()`
    or `signature(name, ...)`: `delay()`/`apply_async()` submit it, `|` chains it, and calling it
    runs the task here, as in Celery."""

    __slots__ = ()

    def __or__(self, other: Any) -> Any:
        return _pipe(self, other)

    def __ror__(self, other: Any) -> Any:
        return chain(other, self) if isinstance(other, Call) else NotImplemented

    def set(self, *, immutable: bool | None = None, **options: Any) -> Signature:
        """A copy with other options, in Celery's names (queue, countdown, time_limit, ...)."""
        fields = call_fields(options, _timezone(self.app or current_app()), "set")
        return cast(Signature, base.Signature.set(self, immutable=immutable, **fields))

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        sig = cast(Signature, _merged(self, tuple(args or ()), dict(kwargs or {})))
        return sig.set(**options) if options else sig

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        """Submits it as a task (Celery's partial arguments: `args` come before the signature's)."""
        sig = self.clone(args, kwargs, **options)
        app = self.app or current_app()
        handle = app.client.submit_many([sig])[0]
        return AsyncResult(handle.id, app=app, task_name=self.name, handle=handle)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the task here, now, with the signature's arguments (Celery's `sig()`)."""
        sig = _merged(self, args, kwargs)
        return _task(self)(*sig.args, **sig.kwargs)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> EagerResult:
        """Runs it in this process (task.apply)."""
        sig = _merged(self, tuple(args or ()), dict(kwargs or {}))
        return _task(self).apply(sig.args, sig.kwargs, **options)  # type: ignore[no-any-return]

    @property
    def task(self) -> str:
        return self.name


def _task(sig: base.Signature) -> Any:
    app = sig.app or current_app()
    if sig.name not in app.tasks:
        raise KeyError(f"task {sig.name!r} is not registered on {app!r}: it can be submitted, not run here")
    return app.tasks[sig.name]


class _Workflow:
    """What Celery's chain, group and chord add to Conveyor's: submitting by calling, `delay`,
    `apply_async` (partial arguments for the first steps, options for every step)."""

    __slots__ = ()

    def __or__(self, other: Any) -> Any:
        return _pipe(self, other)  # type: ignore[arg-type]

    def __ror__(self, other: Any) -> Any:
        return chain(other, self) if isinstance(other, Call) else NotImplemented  # type: ignore[arg-type]

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                    **options: Any) -> WorkflowResult:
        """Submits it as one workflow. `args`/`kwargs` go to the steps that start it; options
        (queue, priority, headers, time limits) to every step."""
        canvas: base.Canvas = self  # type: ignore[assignment]
        app = _app_of(canvas)
        if args or kwargs:
            canvas = _rebuild(canvas, lambda s: _merged(s, tuple(args or ()), dict(kwargs or {})), first_only=True)
        for name, why in WORKFLOW_REFUSED.items():
            if options.get(name) is not None:
                raise Unsupported(f"{type(self).__name__}.apply_async({name}=...)", why)
        fields = call_fields(options, _timezone(app))
        if fields:
            canvas = _rebuild(canvas, lambda s: base.Signature.set(s, **fields))
        handle = app.client.submit_workflow(canvas)
        result = GroupResult if isinstance(self, base.group) else WorkflowResult
        return result(handle.id, app=app, handle=handle)

    def delay(self, *args: Any, **kwargs: Any) -> WorkflowResult:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> WorkflowResult:
        """Submits it (Celery's `chain(...)()`, `group(...)()`): args and kwargs go to its first steps."""
        return self.apply_async(args, kwargs)


class chain(_Workflow, base.chain):  # type: ignore[misc]  # noqa: N801 - Celery's name: called as Celery's
    """Steps one after another, each given the previous result first: `chain(a.s(1), b.s())`."""

    __slots__ = ()


class group(_Workflow, base.group):  # type: ignore[misc]  # noqa: N801 - Celery's name: called as Celery's
    """Tasks run in parallel; `group(...)()` gives a GroupResult whose get() lists their results."""

    __slots__ = ()


class chord(_Workflow, base.chord):  # noqa: N801 - Celery's name
    """A group and a callback given the list of its results: `chord(header)(body)` submits it."""

    __slots__ = ()

    def __init__(self, header: Any, body: Any = None, *, app: Any = None, **options: Any) -> None:
        if options:
            raise Unsupported(f"chord({', '.join(options)}=...)", "give options to the steps (task.s().set(...)) "
                                                                  "or to apply_async")
        super().__init__(header, body)

    def __call__(self, body: Any = None, **options: Any) -> WorkflowResult:  # type: ignore[override]
        """Submits the chord, with `body` as its callback (Celery's `chord(header)(body)`)."""
        whole = self if body is None else chord(self.header, body)
        return _Workflow.apply_async(whole, **options)


def signature(varies: Any, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              options: Mapping[str, Any] | None = None, *, immutable: bool = False, app: Any = None,
              **ex: Any) -> Signature:
    """Celery's `signature`: by task name (`signature('tasks.add', args=(2, 2), countdown=10)`), from
    a Celery signature dict, or a copy of a signature. Options are Celery's names."""
    if isinstance(varies, base.Signature):
        sig = varies if isinstance(varies, Signature) else Signature(
            varies.name, varies.args, varies.kwargs, varies.options, varies.immutable, varies.app)
        return sig.clone(args, kwargs, **{**(options or {}), **ex})
    if isinstance(varies, Mapping):
        known = {"task", "args", "kwargs", "options", "immutable", "subtask_type", "chord_size"}
        unknown = sorted(set(varies) - known)
        if unknown or varies.get("subtask_type"):
            raise Unsupported("signature(dict)", "only a plain task's signature dict (task, args, kwargs, options, "
                                                 "immutable) is read")
        return signature(varies["task"], varies.get("args"), varies.get("kwargs"), varies.get("options"),
                         immutable=bool(varies.get("immutable")), app=app)
    if not isinstance(varies, str):
        raise TypeError(f"signature() takes a task name, a signature or its dict, not {varies!r}")
    owner = app if app is not None else current_app()
    args, kwargs = tuple(args or ()), dict(kwargs or {})
    opts = owner.submit_options(varies, owner.tasks.get(varies), {**(options or {}), **ex}, args, kwargs)
    return Signature(varies, args, kwargs, opts, immutable, owner)


subtask = signature
"""Celery's old name for signature."""
