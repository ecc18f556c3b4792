"""The auth interceptor: every call is checked before any handler work, for every method kind.

A call presents a token as metadata `authorization: Bearer <secret>`, or, with mutual TLS,
a client certificate whose subject the auth file lists (a token wins when both come).
UNAUTHENTICATED for no credential or an unknown token; PERMISSION_DENIED for a caller
whose roles (`access`) or queues (`queue_scopes`) do not cover the call. Messages name the
method, the caller (a token's name, never its secret) and what was missing.

Cost on the hot path: for a token, one cached SHA-256 (a dict lookup), one dict lookup for
its principal and one for the handler decided for (method, principal); an unscoped
principal with the role gets the original handler back. Scoped principals pay for reading
the queues their request names. Streams (WorkerService.Connect, TaskService.Pipeline) check
the credential again on every message, so a token removed from the file (or a role taken
away) ends an open stream at its next message; Pipeline checks each message's queues, Connect
the hello's. Pipeline is open to every role that may make one of the calls it carries, and
each message is checked as that call (`access.CARRIED`): a reader's get_results passes, its
submit ends the stream with PERMISSION_DENIED. Server-streaming calls (WatchTask,
WatchWorkflow), which may stay open for hours with nothing coming from the client, check the
credential before each message they send and every RECHECK_S while none does (`_held`): a
removed token ends them with UNAUTHENTICATED within about two seconds, a role or queue taken
away with PERMISSION_DENIED. Health checks are not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc

from conveyor_scheduler import access
from conveyor_scheduler.auth_denials import NO_CREDENTIAL, QUEUE, ROLE, UNKNOWN_TOKEN, Denials
from conveyor_scheduler.auth_file import AuthTable, Principal
from conveyor_scheduler.auth_source import AuthSource
from conveyor_scheduler.errors import PermissionDenied, Unauthenticated
from conveyor_scheduler.grpc_glue import Malformed, abort_for, method_of
from conveyor_scheduler.queue_scopes import FINDERS, QUEUE_FREE, STREAM_FINDERS, Finder, Resolver, SpansQueues

Gate = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
"""Runs before a handler: returns the request (or a checking request iterator), or raises."""
MAX_CACHED = 10_000
RECHECK_S = 1.0
"""How often an open server-streaming call looks at its credential while it sends nothing (the
auth file itself is looked at once a second)."""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, source: AuthSource, resolver: Resolver, denials: Denials | None = None) -> None:
        self.source = source
        self.resolver = resolver
        """Finds the queues a request names, for principals scoped to queues."""
        self.denials = denials or Denials()
        self._table = source.table
        self._cache: dict[tuple[str, Principal | None], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method = method_of(details)
        if handler is None or access.is_public(method):
            return handler
        table = self.source.current()
        if table is not self._table:  # reloaded: decisions were made for the old principals
            self._table = table
            self._cache.clear()
        header = _authorization(details.invocation_metadata)  # type: ignore[attr-defined]
        principal: Principal | None = None
        if header is not None:
            scheme, _, secret = header.partition(" ")
            principal = table.tokens.get(self.source.digest(secret.strip())) if scheme.lower() == "bearer" else None
            if principal is None:
                return self._refusing(handler, method, Unauthenticated(
                    f"{method.lstrip('/')}: the token is not known (send 'authorization: Bearer <token>' "
                    f"with a token the scheduler's auth file lists)"), UNKNOWN_TOKEN, "an unknown token")
        elif not (table.subjects or table.common_names):
            return self._refusing(handler, method, Unauthenticated(
                f"{method.lstrip('/')} needs a token: send the metadata 'authorization: Bearer <token>'"),
                NO_CREDENTIAL, "anonymous")
        key = (method, principal)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not handler:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            base = self._held(method, principal, handler) if handler.unary_stream else handler
            checked = _before(base, self._certificate_gate(method, base) if principal is None
                              else self._gate(method, principal, base))
            cached = self._cache[key] = (handler, checked or base)
        return cached[1]

    # -- decisions ---------------------------------------------------------------------------

    def _gate(self, method: str, principal: Principal, handler: grpc.RpcMethodHandler) -> Gate | None:
        """What a call of `method` by `principal` must pass (None: nothing, it may go)."""
        denied = self._role_denial(method, principal)
        if denied is not None:
            return self._refuse_gate(method, denied, ROLE, principal.describe())
        stream = STREAM_FINDERS.get(method)
        if stream is not None:
            finder, every = stream
            return self._stream_gate(method, principal, finder, every)
        if principal.queues is None or method in QUEUE_FREE:
            return None
        one = FINDERS.get(method)
        if one is None:
            return self._refuse_gate(method, self._spans_denial(method, principal, ""), QUEUE, principal.describe())
        return self._queue_gate(method, principal, one)

    def _certificate_gate(self, method: str, handler: grpc.RpcMethodHandler) -> Gate:
        """No token came: the caller is the client certificate's subject, if the file lists it."""
        gates: dict[tuple[str, Principal], Gate | None] = {}  # dropped with the cache when the file changes

        async def gate(request: Any, context: grpc.aio.ServicerContext) -> Any:
            subject, principal = self._by_certificate(context)
            if principal is None:
                exc = Unauthenticated(f"{method.lstrip('/')} needs a token ('authorization: Bearer <token>') or "
                                      f"a client certificate the scheduler's auth file lists")
                self._deny(method, NO_CREDENTIAL, f"certificate {subject!r}" if subject else "anonymous", context, exc)
            key = (method, principal)
            if key not in gates:  # decided once per certificate entry, as for a token
                if len(gates) >= MAX_CACHED:
                    gates.clear()
                gates[key] = self._gate(method, principal, handler)
            inner = gates[key]
            return request if inner is None else await inner(request, context)

        return gate

    def _by_certificate(self, context: grpc.aio.ServicerContext) -> tuple[str, Principal | None]:
        """The client certificate's subject, and its principal if the auth file lists it."""
        auth = context.auth_context()
        subject = b"".join(auth.get("x509_subject", ())).decode(errors="replace")
        common_name = b"".join(auth.get("x509_common_name", ())).decode(errors="replace")
        return subject, self.source.current().by_certificate(subject, common_name) if subject else None

    def _again(self, method: str, principal: Principal, table: AuthTable,
               context: grpc.aio.ServicerContext) -> Principal:
        """`principal`'s credential as `table` (a newer load of the file) has it; raises
        Unauthenticated when it was removed, PermissionDenied when its roles no longer cover `method`."""
        again = table.again(principal)
        if again is None:
            self._deny(method, UNKNOWN_TOKEN, principal.describe(), context, Unauthenticated(
                f"{method.lstrip('/')}: the {principal.kind} {principal.name!r} was removed from the "
                f"scheduler's auth file"))
        denied = self._role_denial(method, again)
        if denied is not None:
            self._deny(method, ROLE, again.describe(), context, denied)
        return again

    def _role_denial(self, method: str, principal: Principal) -> PermissionDenied | None:
        roles = access.roles_for(method)
        if principal.roles & roles:
            return None
        needed = " or ".join(r for r in access.ROLES if r in roles)
        return PermissionDenied(f"{method.lstrip('/')} needs role {needed}; {principal.describe()} has none of them")

    def _kind_denial(self, method: str, principal: Principal, kind: str | None) -> PermissionDenied | None:
        """Whether `principal` may send a `kind` message on stream `method` (access.MESSAGE_ROLES)."""
        roles = access.roles_for_message(method, kind)
        if roles is None or principal.roles & roles:
            return None
        needed = " or ".join(r for r in access.ROLES if r in roles)
        return PermissionDenied(f"{method.lstrip('/')}: a {kind} message needs role {needed}; "
                                f"{principal.describe()} has none of them")

    def _spans_denial(self, method: str, principal: Principal, field: str) -> PermissionDenied:
        what = f"without {field} it covers every queue" if field else "it is not tied to a queue"
        return PermissionDenied(f"{method.lstrip('/')}: {what}, and {principal.describe()} may use only the "
                                f"queues {', '.join(principal.queues or ())}")

    # -- gates ---------------------------------------------------------------------------------

    def _deny(self, method: str, reason: str, who: str, context: grpc.aio.ServicerContext,
              exc: Unauthenticated | PermissionDenied) -> NoReturn:
        self.denials.record(method, reason, who, context.peer(), str(exc))
        raise exc

    def _refuse_gate(self, method: str, exc: Unauthenticated | PermissionDenied, reason: str, who: str) -> Gate:
        async def gate(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
            self._deny(method, reason, who, context, exc)

        return gate

    def _refusing(self, handler: grpc.RpcMethodHandler, method: str, exc: Unauthenticated, reason: str,
                  who: str) -> grpc.RpcMethodHandler:
        """A handler of the same kind that only refuses: the request's bytes are not even parsed."""
        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            self.denials.record(method, reason, who, context.peer(), str(exc))
            await context.abort(exc.code, str(exc))

        return _same_kind(handler, refuse, request_deserializer=_ignore)

    def _queue_gate(self, method: str, principal: Principal, finder: Finder) -> Gate:
        async def gate(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not isinstance(request, Malformed):  # the handler refuses it
                await self._check_queues(method, principal, finder, request, context)
            return request

        return gate

    async def _check_queues(self, method: str, principal: Principal, finder: Finder, request: Any,
                            context: grpc.aio.ServicerContext) -> None:
        try:
            named = await finder(request, self.resolver)
        except SpansQueues as exc:
            self._deny(method, QUEUE, principal.describe(), context,
                       self._spans_denial(method, principal, exc.field))
        for field, queue in named:
            if not principal.may_use(queue):
                self._deny(method, QUEUE, principal.describe(), context, PermissionDenied(
                    f"{method.lstrip('/')}: {field} is queue {queue!r}, outside the queues {principal.describe()} "
                    f"may use ({', '.join(principal.queues or ())}); nothing was done"))

    def _stream_gate(self, method: str, principal: Principal, finder: Finder, every: bool) -> Gate:
        """Checks the first message's queues before the handler sees it (every message's when
        `every`), each message's kind against the roles of the call it carries
        (access.MESSAGE_ROLES), and the credential again on each message."""
        async def gate(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                return _nothing()
            oneof = self._kinds_to_check(method, principal)
            if oneof is not None and not isinstance(first, Malformed):
                self._check_kind(method, principal, oneof, first, context)
            if principal.queues is not None and not isinstance(first, Malformed):
                await self._check_queues(method, principal, finder, first, context)
            return self._watched(method, principal, finder if every else None, first, requests, context)

        return gate

    def _kinds_to_check(self, method: str, principal: Principal) -> str | None:
        """The oneof to read on each message, or None when the principal may send every kind
        (a producer's stream pays nothing)."""
        carried = access.MESSAGE_ROLES.get(method)
        if carried is None or all(principal.roles & roles for roles in carried[1].values()):
            return None
        return carried[0]

    def _check_kind(self, method: str, principal: Principal, oneof: str, msg: Any,
                    context: grpc.aio.ServicerContext) -> None:
        denied = self._kind_denial(method, principal, msg.WhichOneof(oneof))
        if denied is not None:
            self._deny(method, ROLE, principal.describe(), context, denied)

    async def _watched(self, method: str, principal: Principal, finder: Finder | None, first: Any,
                       requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        yield first
        table = self._table
        oneof = self._kinds_to_check(method, principal)
        async for msg in requests:
            current = self.source.current()
            if current is not table:  # the file changed: is the credential still good for this?
                table = current
                principal = self._again(method, principal, current, context)
                oneof = self._kinds_to_check(method, principal)
            if isinstance(msg, Malformed):
                yield msg
                continue
            if oneof is not None:
                self._check_kind(method, principal, oneof, msg, context)
            if finder is not None and principal.queues is not None:
                await self._check_queues(method, principal, finder, msg, context)
            yield msg

    def _held(self, method: str, principal: Principal | None, handler: grpc.RpcMethodHandler
              ) -> grpc.RpcMethodHandler:
        """`handler` (server-streaming) ended once its caller's credential no longer allows the
        call: looked at before each message it sends and every RECHECK_S while it sends none.
        `principal` None: the caller's client certificate (the gate, run before, found it listed).

        The handler's generator is stepped in tasks of its own, all in one copy of the call's
        context (its span stays current across steps), so a wait for the next message can be
        cut short; the step in flight is cancelled when the call ends."""
        inner = handler.unary_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            who = principal or self._by_certificate(context)[1]
            responses = inner(request, context)
            steps = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            table = self.source.current()
            pending: asyncio.Task[Any] | None = None
            try:
                while True:
                    if pending is None:
                        pending = loop.create_task(_step(responses), context=steps)
                    done, _ = await asyncio.wait((pending,), timeout=RECHECK_S)
                    current = self.source.current()
                    if who is not None and current is not table:
                        table = current
                        try:
                            again = self._again(method, who, current, context)
                            if again.queues is not None:  # re-scoped: does it still cover the request?
                                gate = self._gate(method, again, handler)
                                if gate is not None:
                                    await gate(request, context)
                        except (Unauthenticated, PermissionDenied) as exc:
                            await abort_for(exc, context)
                        who = again
                    if not done:
                        continue
                    step, pending = pending, None
                    try:
                        response = step.result()
                    except StopAsyncIteration:
                        return
                    yield response
            finally:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
                await responses.aclose()

        return _same_kind(handler, streaming)


async def _step(responses: AsyncIterator[Any]) -> Any:
    """The next message of a handler's generator (StopAsyncIteration at its end), as a coroutine."""
    return await anext(responses)


def _authorization(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


async def _nothing() -> AsyncIterator[Any]:
    return
    yield


def _ignore(data: bytes) -> None:
    return None


def _same_kind(handler: grpc.RpcMethodHandler, fn: Callable[..., Any], **overrides: Any) -> grpc.RpcMethodHandler:
    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer, **overrides}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(fn, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(fn, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(fn, **kw)
    return grpc.stream_stream_rpc_method_handler(fn, **kw)


def _before(handler: grpc.RpcMethodHandler, gate: Gate | None) -> grpc.RpcMethodHandler | None:
    """`handler` with `gate` run first (its errors end the call with their status); None for no gate."""
    if gate is None:
        return None
    inner = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

    async def passed(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await gate(request, context)
        except Exception as exc:  # noqa: BLE001 - mapped to its status, or re-raised
            await abort_for(exc, context)

    if inspect.isasyncgenfunction(inner):
        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request = await passed(request, context)
            async for response in inner(request, context):
                yield response

        return _same_kind(handler, streaming)

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        request = await passed(request, context)
        return await inner(request, context)

    return _same_kind(handler, call)
