"""Pins `Client` and `AsyncClient` to one public surface (as Temporal pins its exports).

Every public member of a sync class has a same-named counterpart on its async twin: a
coroutine function with the same parameters (names, kinds, defaults) for a method, a
property for a property; and the async class adds nothing public of its own. Sub-clients
(public attributes annotated with an SDK class, like `admin` and `schedules`) are compared
the same way, recursively. Genuine differences are listed in ALLOWED below, with why.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from typing import Any

from conveyor import AsyncClient, AsyncTaskHandle, AsyncWorkflowHandle, Client, TaskHandle, WorkflowHandle

PAIRS: list[tuple[type, type]] = [(Client, AsyncClient), (TaskHandle, AsyncTaskHandle),
                                  (WorkflowHandle, AsyncWorkflowHandle)]
"""The roots; sub-clients are found from their annotations."""

SUB_CLIENTS = {"admin", "schedules"}
"""Sub-clients both clients must have (issue 14)."""

ALLOWED: dict[tuple[str, str], tuple[str, str]] = {
    # A handle is made locally, with no call to the scheduler: a plain method on both.
    ("Client", "handle"): ("sync", "sync"),
    ("Client", "workflow"): ("sync", "sync"),
    # Streams of state changes: an iterator on the sync side, an async generator on the
    # async side (used with `async for`, not awaited).
    ("Client", "watch"): ("generator", "asyncgen"),
    ("TaskHandle", "watch"): ("sync", "asyncgen"),
    ("WorkflowHandle", "watch"): ("generator", "asyncgen"),
    # Every task a search matches, page after page (one paging loop, TaskCalls.walk_tasks,
    # behind both): `for` on the sync side, `async for` on the async side.
    ("Admin", "iter_tasks"): ("generator", "asyncgen"),
    # Reading the state needs a call: a property on TaskHandle (kept for compatibility), a
    # coroutine on AsyncTaskHandle (a property cannot be awaited).
    ("TaskHandle", "state"): ("property", "coroutine"),
}
"""(sync class, member) -> (its kind, the async member's kind) where they are not
(plain method, coroutine function) or (property, property). Context managers differ by
protocol (`__enter__`/`__exit__` vs `__aenter__`/`__aexit__`); those are not public names."""


def _public(cls: type) -> dict[str, Any]:
    """Public members by name, as the class gives them (a property stays a property)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):  # object's members are nobody's surface
        for name, value in vars(klass).items():
            if not name.startswith("_") and not isinstance(value, type):
                out[name] = getattr(cls, name)  # a deprecated alias gives the method it moved to
    return out


def _sub_clients(cls: type) -> dict[str, type]:
    """Public attributes annotated with a class of the SDK (the sub-clients)."""
    hints = typing.get_type_hints(cls)
    return {n: t for n, t in hints.items() if not n.startswith("_") and isinstance(t, type)
            and t.__module__.startswith("conveyor.")}


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def _kind(member: Any) -> str:
    if isinstance(member, property):
        return "property"
    fn = member.__func__ if isinstance(member, staticmethod | classmethod) else member
    if inspect.isasyncgenfunction(fn):
        return "asyncgen"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "generator" if inspect.isgeneratorfunction(fn) else "sync"


def _differences(sync: type, aio: type, path: str) -> Iterator[str]:
    mine, theirs = _public(sync), _public(aio)
    for name in sorted(set(theirs) - set(mine)):
        yield f"{path}.{name}: only on {aio.__name__}"
    for name, member in sorted(mine.items()):
        where = f"{path}.{name}"
        if name not in theirs:
            yield f"{where}: missing on {aio.__name__}"
            continue
        default = ("property", "property") if isinstance(member, property) else ("sync", "coroutine")
        want = ALLOWED.get((sync.__name__, name), default)
        got = (_kind(member), _kind(theirs[name]))
        if got != want:
            yield f"{where}: {sync.__name__}'s is {got[0]} and {aio.__name__}'s {got[1]}, expected {want}"
        elif "property" not in got and _params(member) != _params(theirs[name]):
            yield f"{where}: parameters differ:\n    {_params(member)}\n    {_params(theirs[name])}"
    subs, asubs = _sub_clients(sync), _sub_clients(aio)
    for name in sorted(set(subs) | set(asubs)):
        if name not in subs or name not in asubs:
            yield f"{path}.{name}: a sub-client of only one of {sync.__name__} and {aio.__name__}"
            continue
        yield from _differences(subs[name], asubs[name], f"{path}.{name}")


def test_sync_and_async_surfaces_are_equal() -> None:
    found = [d for sync, aio in PAIRS for d in _differences(sync, aio, sync.__name__)]
    assert not found, "the sync and async surfaces differ:\n" + "\n".join(found)


def test_both_clients_have_the_sub_clients() -> None:
    for cls in (Client, AsyncClient):
        assert set(_sub_clients(cls)) >= SUB_CLIENTS, f"{cls.__name__} lacks {SUB_CLIENTS - set(_sub_clients(cls))}"


def test_every_allowed_difference_is_still_needed() -> None:
    """A stale entry would hide a future difference under the same name."""
    classes = {c.__name__: c for pair in PAIRS for c in pair}
    for sync, aio in PAIRS:
        stack = [(sync, aio)]
        while stack:
            s, a = stack.pop()
            classes[s.__name__] = s
            subs, asubs = _sub_clients(s), _sub_clients(a)
            stack += [(subs[n], asubs[n]) for n in subs.keys() & asubs.keys()]
    for (owner, name), kinds in ALLOWED.items():
        assert name in _public(classes[owner]), f"ALLOWED lists {owner}.{name}, which no longer exists"
        assert kinds not in (("sync", "coroutine"), ("property", "property")), f"{owner}.{name} needs no entry"
