"""Registers servicers from the service descriptors, with two guarantees for every call.

- A request that does not parse as its message gets INVALID_ARGUMENT naming the message
  (grpc's default would be INTERNAL).
- Domain errors become their gRPC status; Redis outages become UNAVAILABLE: a lost or
  refused connection, and an error reply that means "not now" (Redis replaying its AOF after
  a restart, failing over, ...; fast_redis.transient), from either Redis client. status_for
  is the one mapping: unary and streaming handlers, and each pipelined call, end with it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory
from google.protobuf.message import DecodeError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor_scheduler.errors import SchedulerError
from conveyor_scheduler.fast_redis import transient

log = logging.getLogger(__name__)


class Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, type_name: str, problem: str) -> None:
        self.message = f"request is not a valid {type_name} message ({problem})"


def _deserializer(cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return Malformed(cls.DESCRIPTOR.full_name, str(exc) or type(exc).__name__)

    return parse


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The gRPC status a call that raised `exc` ends with; None for what is not ours."""
    if isinstance(exc, SchedulerError):
        return exc.code, str(exc)
    if transient(exc):
        return grpc.StatusCode.UNAVAILABLE, f"Redis cannot serve the scheduler right now: {exc}"
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError)):
        return grpc.StatusCode.UNAVAILABLE, f"the scheduler cannot reach Redis: {exc}"
    return None


async def abort_for(exc: BaseException, context: grpc.aio.ServicerContext) -> None:
    """Aborts the call with the status that fits `exc` (re-raises what is not ours)."""
    status = status_for(exc)
    if status is not None:
        await context.abort(*status)
    raise exc


def _unary(impl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(impl)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return await impl(request, context)
        except Exception as exc:  # noqa: BLE001 - mapped or re-raised
            await abort_for(exc, context)

    return handler


def _streaming(impl: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(impl)
    async def handler(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in impl(requests, context):
                yield response
        except Exception as exc:  # noqa: BLE001 - mapped or re-raised
            await abort_for(exc, context)

    return handler


def _writing(impl: Callable[..., Any]) -> Callable[..., Any]:
    """A streaming handler that answers with context.write (a coroutine, not a generator)."""
    @functools.wraps(impl)
    async def handler(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        try:
            await impl(requests, context)
        except Exception as exc:  # noqa: BLE001 - mapped or re-raised
            await abort_for(exc, context)

    return handler


def method_of(details: grpc.HandlerCallDetails) -> str:
    """The full method name an interceptor sees ("/package.Service/Method"), as text: grpc.aio
    may hand it over as bytes."""
    method = details.method  # type: ignore[attr-defined]
    return method.decode() if isinstance(method, bytes) else str(method)


def add_servicer(server: grpc.aio.Server, servicer: object, service: descriptor.ServiceDescriptor) -> None:
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        impl = getattr(servicer, method.name)
        kwargs = {"request_deserializer": _deserializer(request_cls),
                  "response_serializer": response_cls.SerializeToString}
        if method.client_streaming and method.server_streaming:
            wrap = _streaming if inspect.isasyncgenfunction(impl) else _writing
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(wrap(impl), **kwargs)
        elif not method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(_streaming(impl), **kwargs)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(_unary(impl), **kwargs)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
