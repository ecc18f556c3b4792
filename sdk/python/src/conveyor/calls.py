"""How a sub-client (`client.admin`, `client.schedules`) is written once for both clients.

Its core builds each call as an `Rpc` (the stub method, the request, how to read the
response) and does no I/O; `SyncCalls` and `AsyncCalls` only send it. A call of several
round trips (paging) is a generator of Rpcs that is sent each response and returns the
result, so it is written once too (Hatchet's shared request builders, taken one step
further: the parsing is shared as well). A listing that hands out items as it pages (a
`Walk`) yields both: Rpcs, which are sent, and items, which go to the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import grpc

from conveyor.errors import amapped_rpc_errors, mapped_rpc_errors
from conveyor.resilience import acall_with_retry, call_with_retry

T = TypeVar("T")
P = ParamSpec("P")


def _same(resp: Any) -> Any:
    return resp


@dataclass(frozen=True, slots=True)
class Rpc(Generic[T]):
    """One unary call, described but not sent."""

    method: str
    """The stub's method, e.g. "ListDeadLetters"."""
    request: Any
    parse: Callable[[Any], T] = _same
    """Turns the response message into what the SDK returns."""
    idempotent: bool = False
    """Safe to send again: retried through an outage (UNAVAILABLE) within the client's timeout."""


Steps = Generator[Rpc[Any], Any, T]
"""A call of several round trips: yields each Rpc, is sent its parsed result, returns the value."""


Walk = Generator[Rpc[Any] | T, Any, None]
"""A listing over several round trips: yields an Rpc (and is sent its parsed result) or an
item for the caller (and is sent None), until it returns."""


class HasTimeout(Protocol):
    timeout: float


class SyncCalls:
    """The blocking transport: sends Rpcs on the client's channel."""

    stub_type: Callable[[grpc.Channel], Any]

    def __init__(self, channel: grpc.Channel, client: HasTimeout) -> None:
        self._stub = self.stub_type(channel)
        self._client = client
        """The owning client, whose `timeout` (changeable) bounds every call."""

    def _call(self, rpc: Rpc[T]) -> T:
        send = getattr(self._stub, rpc.method)
        with mapped_rpc_errors():
            if rpc.idempotent:
                resp = call_with_retry(lambda left: send(rpc.request, timeout=left), self._client.timeout)
            else:
                resp = send(rpc.request, timeout=self._client.timeout)
        return rpc.parse(resp)

    def _run(self, steps: Steps[T]) -> T:
        try:
            rpc = next(steps)
            while True:
                rpc = steps.send(self._call(rpc))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _walk(self, walk: Walk[T]) -> Iterator[T]:
        """Runs a Walk, yielding its items as they come (a page is fetched when needed)."""
        reply: Any = None
        while True:
            try:
                out = walk.send(reply)
            except StopIteration:
                return
            if isinstance(out, Rpc):
                reply = self._call(out)
            else:
                reply = None
                yield out


class AsyncCalls:
    """The asyncio transport: the same Rpcs, awaited on a grpc.aio channel."""

    stub_type: Callable[[grpc.aio.Channel], Any]

    def __init__(self, channel: grpc.aio.Channel, client: HasTimeout) -> None:
        self._stub = self.stub_type(channel)
        self._client = client
        """See SyncCalls._client."""

    async def _call(self, rpc: Rpc[T]) -> T:
        send = getattr(self._stub, rpc.method)
        async with amapped_rpc_errors():
            if rpc.idempotent:
                resp = await acall_with_retry(lambda left: send(rpc.request, timeout=left), self._client.timeout)
            else:
                resp = await send(rpc.request, timeout=self._client.timeout)
        return rpc.parse(resp)

    async def _run(self, steps: Steps[T]) -> T:
        try:
            rpc = next(steps)
            while True:
                rpc = steps.send(await self._call(rpc))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _walk(self, walk: Walk[T]) -> AsyncIterator[T]:
        """See SyncCalls._walk."""
        reply: Any = None
        while True:
            try:
                out = walk.send(reply)
            except StopIteration:
                return
            if isinstance(out, Rpc):
                reply = await self._call(out)
            else:
                reply = None
                yield out


class renamed(Generic[P, T]):  # noqa: N801 - used like a decorator-made function
    """A deprecated client method that moved to a sub-client: `client.dead_letters` is now
    `client.admin.list_dead_letters`. Reading it warns (DeprecationWarning) and gives the
    sub-client's bound method, so old callers keep working, typed, on both clients."""

    def __init__(self, sub: str, method: Callable[Concatenate[Any, P], T]) -> None:
        self.sub, self.method = sub, method
        self.__wrapped__ = method  # so inspect.signature shows the new method's parameters
        self.__doc__ = f"Deprecated: use `client.{sub}.{method.__name__}`."
        self.name = method.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, client: None, owner: type) -> Callable[Concatenate[Any, P], T]: ...
    @overload
    def __get__(self, client: object, owner: type) -> Callable[P, T]: ...
    def __get__(self, client: object | None, owner: type) -> Callable[..., T]:
        if client is None:
            return self.method
        warnings.warn(f"{type(client).__name__}.{self.name} is deprecated: use "
                      f".{self.sub}.{self.method.__name__}", DeprecationWarning, stacklevel=2)
        bound: Callable[P, T] = getattr(getattr(client, self.sub), self.method.__name__)
        return bound
