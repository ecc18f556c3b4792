"""FastRedis (the scheduler's pipelined hiredis connection), Script and subscribe() against
real Redis servers: the session's, and a private one per test where a test kills
connections or restarts the server (so nothing else loses its connections)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from conveyor_scheduler.fast_redis import FastRedis, NotReplicated, Script, TransientRedisError, subscribe
from tests.harness import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis").start()
    yield server
    server.stop(hard=True)


@pytest.fixture
def admin(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=own_redis.port)
    yield client
    client.close()


def run(scenario: Callable[[FastRedis], Awaitable[None]], url: str) -> None:
    async def main() -> None:
        conn = FastRedis(url)
        try:
            await scenario(conn)
        finally:
            await conn.aclose()

    asyncio.run(main())


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Yields to the loop until predicate() holds (fails after `timeout` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_commands_and_concurrent_commands_answer_in_order(redis_url: str) -> None:
    async def scenario(conn: FastRedis) -> None:
        assert await conn.execute("SET", "fr:k", "v") == b"OK"
        assert await conn.execute("GET", "fr:k") == b"v"
        assert await conn.execute("GET", "fr:missing") is None
        assert await conn.execute("RPUSH", "fr:l", 1, 2, 3) == 3
        assert await conn.execute("LRANGE", "fr:l", 0, -1) == [b"1", b"2", b"3"]
        # Issued in one loop tick, they share the socket; each caller gets its own reply.
        replies = await asyncio.gather(*(conn.execute("INCR", "fr:n") for _ in range(500)),
                                       *(conn.execute("ECHO", f"e{i}") for i in range(500)))
        assert replies == list(range(1, 501)) + [f"e{i}".encode() for i in range(500)]
        with pytest.raises(ResponseError):
            await conn.execute("INCR", "fr:k")  # not an integer
        assert await conn.execute("GET", "fr:k") == b"v"  # the connection is still fine

    run(scenario, redis_url)


def test_cancelled_caller_does_not_shift_the_replies(redis_url: str) -> None:
    async def scenario(conn: FastRedis) -> None:
        await conn.execute("PING")
        slow = asyncio.ensure_future(conn.execute("BLPOP", "fr:empty", 0.2))
        await asyncio.sleep(0)  # let it be written first
        slow.cancel()
        after = await conn.execute("ECHO", "mine")
        assert after == b"mine"

    run(scenario, redis_url)


def test_the_url_selects_the_database(redis_server: RedisServer) -> None:
    url = redis_server.url()  # redis://127.0.0.1:PORT/N, a database no other test uses
    db = int(url.rsplit("/", 1)[1])
    assert db > 0

    async def scenario(conn: FastRedis) -> None:
        await conn.execute("SET", "fr:where", "here")

    run(scenario, url)
    with redis.Redis(port=redis_server.port, db=db) as mine, redis.Redis(port=redis_server.port, db=0) as zero:
        assert mine.get("fr:where") == b"here"
        assert zero.get("fr:where") is None


def test_a_script_is_loaded_again_after_script_flush(redis_url: str) -> None:
    text = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
    with redis.Redis.from_url(redis_url) as admin:

        async def scenario(conn: FastRedis) -> None:
            script = Script(conn, text)
            admin.script_flush()
            assert admin.script_exists(script.sha) == [False]
            assert await script(["fr:s"], ["a"]) == [b"fr:s", b"a", 1]  # NOSCRIPT, then loaded
            assert admin.script_exists(script.sha) == [True]
            assert await script(["fr:s"], ["b"]) == [b"fr:s", b"b", 2]  # by its SHA1
            admin.script_flush()
            assert await asyncio.gather(script(["fr:s"], ["c"]), script(["fr:s"], ["d"])) == [
                [b"fr:s", b"c", 3], [b"fr:s", b"d", 4]]
            with pytest.raises(ResponseError):
                await Script(conn, "return redis.call('NOSUCHCOMMAND')")([], [])

        run(scenario, redis_url)


def test_reconnects_after_the_server_drops_the_connection(own_redis: RedisServer, admin: redis.Redis) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/3"

    async def scenario(conn: FastRedis) -> None:
        await conn.execute("SET", "fr:k", "db3")
        first = await conn.execute("CLIENT", "ID")
        admin.client_kill_filter(_id=first)
        second = await conn.execute("CLIENT", "ID")  # a new connection ...
        assert second != first
        assert await conn.execute("GET", "fr:k") == b"db3"  # ... on the same database
        # A command in flight when its connection is dropped is sent again on a new one.
        blocked = asyncio.ensure_future(conn.execute("BLPOP", "fr:q", 0))
        await until(lambda: _blocked_clients(admin) == 1)
        admin.client_kill_filter(_id=second)
        with redis.Redis(port=own_redis.port, db=3) as db3:
            await until(lambda: _blocked_clients(admin) == 1)  # resent and blocking again
            db3.rpush("fr:q", "x")
        assert await asyncio.wait_for(blocked, 10) == [b"fr:q", b"x"]
        assert await conn.execute("CLIENT", "ID") not in (first, second)

    run(scenario, url)


def _blocked_clients(admin: redis.Redis) -> int:
    return int(admin.info("clients")["blocked_clients"])


def test_commands_in_flight_fail_when_the_server_goes_away(own_redis: RedisServer, admin: redis.Redis) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/2"

    async def scenario(conn: FastRedis) -> None:
        await conn.execute("SET", "fr:k", "before")
        in_flight = [asyncio.ensure_future(conn.execute("BLPOP", f"fr:q{i}", 0)) for i in range(3)]
        await until(lambda: _blocked_clients(admin) == 1)
        await asyncio.to_thread(own_redis.stop, True)  # SIGKILL: the socket closes, nothing listens
        for fut in in_flight:
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(fut, 10)
        with pytest.raises(RedisConnectionError):
            await conn.execute("PING")  # cannot connect: fails at once, not hanging
        await asyncio.to_thread(own_redis.start)  # the same port again
        assert await conn.execute("PING") == b"PONG"  # reconnected by the next command
        await conn.execute("SET", "fr:k", "after")
        with redis.Redis(port=own_redis.port, db=2) as db2:
            assert db2.get("fr:k") == b"after"  # and SELECTed its database again

    run(scenario, url)


def test_a_busy_server_is_an_outage_reported_at_once(own_redis: RedisServer, admin: redis.Redis) -> None:
    """BUSY (a script past its time limit) raises TransientRedisError, a ConnectionError, so it
    ends calls UNAVAILABLE; the command is not resent (Redis answered), and the connection stays."""
    url = f"redis://127.0.0.1:{own_redis.port}/4"
    admin.config_set("lua-time-limit", 10)  # busy-reply-threshold since Redis 7
    outcome: list[BaseException] = []

    def spin() -> None:
        with redis.Redis(port=own_redis.port) as blocker:
            try:
                blocker.eval("while true do end", 0)
            except ResponseError as exc:  # killed
                outcome.append(exc)

    async def scenario(conn: FastRedis) -> None:
        await conn.execute("SET", "fr:k", "v")
        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        async with asyncio.timeout(10):
            while True:  # until the script runs: before it does, GET simply answers
                try:
                    await conn.execute("GET", "fr:k")
                except TransientRedisError as exc:
                    busy = exc
                    break
        assert isinstance(busy, RedisConnectionError) and str(busy).startswith("BUSY")
        admin.script_kill()
        await asyncio.to_thread(spinner.join, 10)
        assert outcome and "killed" in str(outcome[0]).lower()
        assert admin.info("commandstats")["cmdstat_get"]["rejected_calls"] == 1  # sent once, not resent
        assert await conn.execute("GET", "fr:k") == b"v"  # the same connection serves again

    run(scenario, url)


def test_subscribe_delivers_messages_and_reports_a_lost_connection(own_redis: RedisServer,
                                                                  admin: redis.Redis) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/5"
    got: list[tuple[bytes, bytes]] = []

    def on_message(channel: bytes, data: bytes) -> None:
        if data == b"bad":
            raise ValueError("a handler bug")  # logged; the subscription carries on
        got.append((channel, data))

    async def scenario(conn: FastRedis) -> None:
        closed, close = await subscribe(conn, ["fr:a", "fr:b"], on_message)
        try:
            assert admin.pubsub_numsub("fr:a", "fr:b") == [(b"fr:a", 1), (b"fr:b", 1)]  # confirmed on return
            for channel, data in [("fr:a", "1"), ("fr:b", "2"), ("fr:a", "bad"), ("fr:c", "elsewhere"),
                                  ("fr:b", "3")]:
                admin.publish(channel, data)
            await until(lambda: len(got) == 3)
            assert got == [(b"fr:a", b"1"), (b"fr:b", b"2"), (b"fr:b", b"3")]
            assert not closed.done()
            assert admin.client_kill_filter(_type="pubsub") == 1
            await asyncio.wait_for(closed, 10)
        finally:
            close()
        # close() ends a healthy subscription too, and completes its future.
        closed, close = await subscribe(conn, ["fr:a"], on_message)
        close()
        await asyncio.wait_for(closed, 10)
        await until(lambda: admin.pubsub_numsub("fr:a") == [(b"fr:a", 0)])

    run(scenario, url)


def test_subscribe_to_a_server_that_is_down_raises_connection_error(own_redis: RedisServer) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    own_redis.stop(hard=True)

    async def scenario(conn: FastRedis) -> None:
        with pytest.raises(RedisConnectionError):
            await subscribe(conn, ["fr:a"], lambda channel, data: None)
        with pytest.raises(RedisConnectionError):
            await conn.execute("PING")

    run(scenario, url)


def test_redis_rediss_and_unix_urls_are_taken() -> None:
    assert FastRedis.supports("redis://127.0.0.1:1/0") and FastRedis.supports("unix:///tmp/redis.sock")
    assert FastRedis.supports("rediss://127.0.0.1:1/0")  # TLS: tests/integration/test_redis_tls.py
    assert not FastRedis.supports("valkey://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="valkey"):
        FastRedis("valkey://127.0.0.1:1/0")


def test_a_write_waiting_for_replicas_holds_up_no_other_command(redis_url: str) -> None:
    """--redis-wait-replicas: WAIT blocks its connection until the replicas answer. This server
    has none, so each WAIT lasts its whole timeout and the write is refused as NotReplicated,
    while reads and writes that do not wait go on answering on the main connection."""
    script = "return redis.call('INCR', KEYS[1])"

    async def scenario(conn: FastRedis) -> None:
        conn.wait_timeout_ms = 600
        durable = asyncio.ensure_future(Script(conn, script)(["w"], [], replicas=1))
        await asyncio.sleep(0)  # the WAIT is on its way first
        started = asyncio.get_running_loop().time()
        for _ in range(20):
            assert await Script(conn, script)(["plain"], []) >= 1
            assert await conn.execute("GET", "w") in (None, b"1")
        assert asyncio.get_running_loop().time() - started < 0.5 and not durable.done()
        with pytest.raises(NotReplicated, match="reached 0 of 1 replicas within 600 ms"):
            await durable
        assert await conn.execute("GET", "w") == b"1"  # written on the primary all the same

    run(scenario, redis_url)
