"""Riding through outages: several scheduler addresses, and retries of idempotent calls.

A target may list several addresses ("10.0.0.1:50051,10.0.0.2:50051"); the channel then
balances over them round robin and routes around a replica that is down. Idempotent calls
(reads, cancels, and submits whose tasks all carry idempotency keys) are retried on
UNAVAILABLE with exponential backoff and jitter (tenacity) until the call's time budget is
spent; then the caller gets UNAVAILABLE, never a hang.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

T = TypeVar("T")


def channel_target(target: str) -> str:
    """gRPC target for one address, or a round-robin ipv4/ipv6 list for several."""
    addresses = [a.strip() for a in target.split(",") if a.strip()]
    if len(addresses) <= 1:
        return target
    resolved = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        for family, _, _, _, sockaddr in socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM):
            if family == socket.AF_INET:
                resolved.append(f"{sockaddr[0]}:{port}")
                break
    return "ipv4:" + ",".join(dict.fromkeys(resolved))


def channel_options(target: str, base: list[tuple[str, object]]) -> list[tuple[str, object]]:
    if "," in target:
        return [*base, ("grpc.lb_policy_name", "round_robin")]
    return base


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def _policy(budget: float) -> dict[str, object]:
    return {"retry": retry_if_exception(_unavailable),
            "wait": wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
            "stop": stop_after_delay(budget), "reraise": True}


def call_with_retry(call: Callable[[float], T], budget: float) -> T:
    """Runs call(seconds left) and retries it on UNAVAILABLE until `budget` seconds pass.

    When the budget runs out during an outage the caller gets the outage (UNAVAILABLE),
    not the deadline of whichever retry happened to be in flight."""
    deadline = time.monotonic() + budget
    outage: grpc.RpcError | None = None
    for attempt in Retrying(**_policy(budget)):  # type: ignore[arg-type]
        with attempt:
            try:
                return call(max(deadline - time.monotonic(), 0.05))
            except grpc.RpcError as exc:
                if _unavailable(exc):
                    outage = exc
                elif outage is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                    raise outage from None  # the outage outlasted the budget
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def acall_with_retry(call: Callable[[float], Awaitable[T]], budget: float) -> T:
    deadline = time.monotonic() + budget
    outage: grpc.RpcError | None = None
    async for attempt in AsyncRetrying(**_policy(budget)):  # type: ignore[arg-type]
        with attempt:
            try:
                return await call(max(deadline - time.monotonic(), 0.05))
            except grpc.RpcError as exc:
                if _unavailable(exc):
                    outage = exc
                elif outage is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                    raise outage from None  # the outage outlasted the budget
                raise
    raise AssertionError("unreachable")  # pragma: no cover
