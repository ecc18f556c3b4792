"""Redis error replies that mean "not now" (LOADING while Redis replays its AOF, BUSY, a
failover's READONLY, ...) end a call UNAVAILABLE, which the SDK retries, whichever client met
them: the hot path's FastRedis (parsed here by its own protocol, as off the socket) or redis-py
(parsed by its own parser). Any other error reply stays unmapped (UNKNOWN / INTERNAL)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from redis._parsers import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from conveyor_scheduler.fast_redis import FastRedis, TransientRedisError, _Protocol
from conveyor_scheduler.grpc_glue import status_for

TRANSIENT = [
    "LOADING Redis is loading the dataset in memory",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "CLUSTERDOWN The cluster is down",
    "READONLY You can't write against a read only replica.",
    "NOREPLICAS Not enough good replicas to write.",
]
FINAL = [
    "ERR user_script:12: Script attempted to access nonexistent global variable 'x'",
    "ERR Error running script (call to f_0123): @user_script:1: oops",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "BUSYKEY Target key name already exists.",
    "BUSYGROUP Consumer Group name already exists",
    "OOM command not allowed when used memory > 'maxmemory'.",
]


def fast_redis_raises(reply: str) -> BaseException:
    """What a FastRedis caller gets for `reply` arriving on its socket."""
    async def main() -> BaseException:
        conn = FastRedis("redis://127.0.0.1:1/0")  # never connects: the reply is fed to its protocol
        fut = asyncio.get_running_loop().create_future()
        conn._pending.append(fut)
        _Protocol(conn).data_received(b"-" + reply.encode() + b"\r\n")
        exc = fut.exception()
        assert exc is not None
        return exc

    return asyncio.run(main())


@pytest.mark.parametrize("reply", TRANSIENT, ids=lambda r: r.split()[0])
def test_transient_reply_from_fast_redis_is_unavailable(reply: str) -> None:
    exc = fast_redis_raises(reply)
    assert isinstance(exc, TransientRedisError)
    assert isinstance(exc, RedisConnectionError)  # so every `except` for an outage handles it too
    status = status_for(exc)
    assert status is not None and status[0] == grpc.StatusCode.UNAVAILABLE
    assert reply.split(" ", 1)[1] in status[1]


@pytest.mark.parametrize("reply", TRANSIENT, ids=lambda r: r.split()[0])
def test_transient_reply_from_redis_py_is_unavailable(reply: str) -> None:
    status = status_for(BaseParser.parse_error(reply))
    assert status is not None and status[0] == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("reply", FINAL, ids=lambda r: r.split()[0])
def test_other_error_replies_stay_unmapped(reply: str) -> None:
    for exc in (fast_redis_raises(reply), BaseParser.parse_error(reply)):
        assert isinstance(exc, ResponseError)
        assert not isinstance(exc, RedisConnectionError)
        assert status_for(exc) is None, reply  # the handler ends UNKNOWN, a pipelined call INTERNAL


def test_noscript_still_makes_the_script_load() -> None:
    assert isinstance(fast_redis_raises("NOSCRIPT No matching script. Please use EVAL."), NoScriptError)
