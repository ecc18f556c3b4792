"""Calls with a token, through raw gRPC on a real socket: any method by its descriptor, any kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory

from conveyor.cli_token import entry


def auth_file(path: Path, tokens: dict[str, tuple[str, Sequence[str], Sequence[str] | None]]) -> Path:
    """Writes [[token]] entries: secret -> (name, roles, queue globs or None)."""
    path.write_text("\n\n".join(entry(name, secret, list(roles), list(queues) if queues is not None else None)
                                for secret, (name, roles, queues) in tokens.items()) + "\n")
    return path


def bearer(secret: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {secret}")] if secret is not None else []


@dataclass(frozen=True)
class Method:
    """One RPC as a test calls it: its path, kind, a request to send and its response type."""

    path: str
    kind: str
    """"unary", "server" (server streaming) or "bidi"."""
    request: Any
    response: Any

    @classmethod
    def of(cls, method: descriptor.MethodDescriptor, request: Any = None) -> Method:
        kind = "bidi" if method.client_streaming else "server" if method.server_streaming else "unary"
        if request is None:
            request = message_factory.GetMessageClass(method.input_type)()
        return cls(f"/{method.containing_service.full_name}/{method.name}", kind, request,
                   message_factory.GetMessageClass(method.output_type))


def call(channel: grpc.Channel, method: Method, secret: str | None, request: Any = None,
         timeout: float = 10.0) -> tuple[grpc.StatusCode, str]:
    """Makes one call (for a bidi stream, `request` is the one message sent before half-closing)
    and returns its final status and details."""
    request = method.request if request is None else request
    kw = {"request_serializer": type(request).SerializeToString, "response_deserializer": method.response.FromString}
    md = bearer(secret)
    try:
        if method.kind == "bidi":
            for _ in channel.stream_stream(method.path, **kw)(iter([request]), metadata=md, timeout=timeout):
                pass
        elif method.kind == "server":
            for _ in channel.unary_stream(method.path, **kw)(request, metadata=md, timeout=timeout):
                pass
        else:
            channel.unary_unary(method.path, **kw)(request, metadata=md, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def granted(status: tuple[grpc.StatusCode, str]) -> bool:
    return status[0] not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
