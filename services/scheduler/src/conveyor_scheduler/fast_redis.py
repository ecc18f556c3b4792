"""The hot path's Redis connection: one pipelined socket, hiredis to pack and parse.

Every task costs the scheduler two or three script calls. Through redis-py's asyncio
client each costs ~100 µs of CPU (argument encoding in Python, a pool checkout with a
getpid check, retry wrappers); here it is ~15 µs: `hiredis.pack_command` packs in C, the
reply parser is hiredis', and there is no pool — concurrent callers share one connection,
so commands issued in the same loop tick leave in one write and their replies come back
in order (Redis answers each connection's commands in sequence).

A lost connection fails the commands in flight with redis-py's ConnectionError (so callers
map it to UNAVAILABLE as before) and the next command reconnects. An error reply that says
Redis cannot serve now but will by itself (TRANSIENT_REPLIES: replaying its AOF, failing
over, ...) is raised as TransientRedisError, a ConnectionError too: every caller that rides
out a lost connection (the gRPC status mapping, the background loops' `except RedisError`)
rides out these the same way, and `transient()` recognises the same replies as redis-py
raises them, so both clients map to one status. Like the redis-py client
it replaces here, a command that met a broken connection is sent again, at most twice:
the scripts are safe to resend (ids are chosen before the call; see server.py).
`subscribe` opens the event bus's pub/sub connection the same way. Everything else (beat,
admin reads) stays on redis-py. rediss:// URLs connect over TLS (`tls_context`: the same
query parameters as redis-py's), and a URL's user:password@ is sent as AUTH (an ACL user).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)
RETRIES = 2
P = TypeVar("P", bound=asyncio.BaseProtocol)

TRANSIENT_REPLIES = frozenset({"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "NOREPLICAS"})
"""Error codes of replies that mean "not now" rather than "no": replaying the dataset after a
restart (LOADING), a script past its time limit (BUSY), a replica cut off from its master
(MASTERDOWN), a slot moving or uncovered (TRYAGAIN, CLUSTERDOWN), a master demoted by a
failover the client has not followed yet (READONLY), too few replicas for
min-replicas-to-write (NOREPLICAS). Redis refused the command before it wrote anything, so
sending it again later is safe."""

SCHEMES = ("redis", "rediss", "unix")
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(query: dict[str, str]) -> ssl.SSLContext:
    """The TLS context of a rediss:// URL, from the query parameters redis-py reads too:
    ssl_ca_certs (CA bundle; default: the system roots), ssl_certfile and ssl_keyfile (a client
    certificate, for `tls-auth-clients yes`), ssl_cert_reqs (none | optional | required, the
    default) and ssl_check_hostname (true unless ssl_cert_reqs=none)."""
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}, not {reqs!r}")
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    check = query.get("ssl_check_hostname", "true").lower() not in ("0", "false", "no", "n", "off")
    context.check_hostname = check and reqs != "none"
    context.verify_mode = CERT_REQS[reqs]
    if query.get("ssl_certfile") or query.get("ssl_keyfile"):
        context.load_cert_chain(query.get("ssl_certfile") or query["ssl_keyfile"], query.get("ssl_keyfile"))
    return context


_REDIS_PY_TRANSIENT = (BusyLoadingError, ReadOnlyError, TryAgainError, ClusterDownError)
"""redis-py's classes for some of those replies (it strips the code from their message)."""


class TransientRedisError(RedisConnectionError):
    """A TRANSIENT_REPLIES error reply. A ConnectionError, as redis-py's BusyLoadingError is,
    because callers should treat it as an outage: UNAVAILABLE, back off, retry."""


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a TRANSIENT_REPLIES reply, as raised by FastRedis or by redis-py."""
    if isinstance(exc, (TransientRedisError, *_REDIS_PY_TRANSIENT)):
        return True
    return isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in TRANSIENT_REPLIES


def reply_error(reply: ResponseError) -> Exception:
    """The exception an error reply is raised as: NoScriptError, TransientRedisError, or itself."""
    code = str(reply).split(" ", 1)[0]
    if code == "NOSCRIPT":
        return NoScriptError(str(reply))
    if code in TRANSIENT_REPLIES:
        return TransientRedisError(str(reply))
    return reply


class _Protocol(asyncio.Protocol):
    def __init__(self, conn: FastRedis) -> None:
        self.conn = conn
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.conn._pending
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            fut = pending.popleft()
            if fut.done():  # its caller was cancelled; the reply still had to be consumed
                continue
            if isinstance(reply, ResponseError):
                fut.set_exception(reply_error(reply))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._lost(self, exc)


class FastRedis:
    """A minimal asyncio Redis client for redis://, rediss:// (TLS) and unix:// URLs."""

    def __init__(self, url: str, *, wait_timeout_ms: int = 1000) -> None:
        parsed = urlparse(url)
        self.url = url
        self.wait_timeout_ms = wait_timeout_ms
        """WAIT's timeout for `run_script(replicas=N)`."""
        if parsed.scheme not in SCHEMES:
            raise ValueError(f"FastRedis takes redis://, rediss:// or unix:// URLs, not {parsed.scheme}://")
        self._unix = parsed.path if parsed.scheme == "unix" else ""
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        db = parsed.path.lstrip("/") if parsed.scheme != "unix" else ""
        query = {name: values[0] for name, values in parse_qs(parsed.query).items()}
        self._db = int(db or query.get("db") or 0)
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        self._ssl = tls_context(query) if parsed.scheme == "rediss" else None
        self._protocol: _Protocol | None = None
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._connecting = asyncio.Lock()
        self._durable: FastRedis | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the server (a unix socket's path and 0)."""
        return (self._unix, 0) if self._unix else (self._host, self._port)

    @staticmethod
    def supports(url: str) -> bool:
        return urlparse(url).scheme in SCHEMES

    async def _connect(self) -> _Protocol:
        async with self._connecting:
            if self._protocol is not None:
                return self._protocol
            transport, protocol = await self._open(lambda: _Protocol(self))
            setup = [self._auth()] if self._password is not None else []
            if self._db:
                setup.append(("SELECT", self._db))
            try:
                for command in setup:  # AUTH refused: no command may go out unauthenticated
                    await self._send(protocol, command)
            except BaseException:
                transport.close()
                raise
            self._protocol = protocol
            return protocol

    async def _open(self, factory: Callable[[], P]) -> tuple[asyncio.BaseTransport, P]:
        """A new connection to the server, speaking `factory`'s protocol."""
        loop = asyncio.get_running_loop()
        try:
            if self._unix:
                return await loop.create_unix_connection(factory, self._unix)
            if self._ssl is not None:
                return await loop.create_connection(factory, self._host, self._port, ssl=self._ssl,
                                                    server_hostname=self._host)
            return await loop.create_connection(factory, self._host, self._port)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc

    def _auth(self) -> tuple[Any, ...]:
        return ("AUTH", self._username, self._password) if self._username else ("AUTH", self._password)

    def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert protocol.transport is not None
        fut = asyncio.get_running_loop().create_future()
        self._pending.append(fut)
        protocol.transport.write(hiredis.pack_command(args))
        return fut

    def _send_many(self, protocol: _Protocol, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(futures)
        protocol.transport.write(b"".join(hiredis.pack_command(args) for args in commands))
        return futures

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
        pending, self._pending = self._pending, collections.deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(RedisConnectionError(f"lost the connection to Redis: {exc or 'closed'}"))

    async def execute(self, *args: Any) -> Any:
        """Sends one command and returns its reply (bytes, int, list, None)."""
        reply = (await self.pipeline((args,)))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Sends `commands` in one write and returns their replies in order, an error reply as
        its exception (returned, not raised). A lost connection sends them all again."""
        for attempt in range(RETRIES + 1):
            protocol = self._protocol or await self._connect()
            futures = self._send_many(protocol, commands)
            try:
                await futures[-1]  # Redis answers a connection's commands in order
            except (ResponseError, TransientRedisError):  # a reply; the caller looks at it
                pass
            except RedisConnectionError:
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(0.01 * 2 ** attempt)
                continue
            return [f.exception() or f.result() for f in futures]
        raise AssertionError("unreachable")  # pragma: no cover

    def durable(self) -> FastRedis:
        """A second connection to the same server, for the writes that WAIT for replicas. WAIT
        holds up every command sent after it on its connection until the replicas answer (up to
        its timeout, when they cannot): on a connection of their own, only other durable
        writes, which must wait anyway, queue behind it; reads, claims and the rest do not."""
        if self._durable is None:
            self._durable = FastRedis(self.url, wait_timeout_ms=self.wait_timeout_ms)
        return self._durable

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Any], replicas: int = 0) -> Any:
        """EVALSHA `script`; with `replicas`, its writes are on that many replicas when it returns."""
        send = self.durable().pipeline if replicas else self.pipeline
        return await run_script(send, script, keys, args, replicas, self.wait_timeout_ms)

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
        if self._durable is not None:
            await self._durable.aclose()


class NotReplicated(TransientRedisError):
    """WAIT timed out before enough replicas had a write: it is on the primary only, and a failover
    now could lose it (the caller is told UNAVAILABLE; a resend is safe, see server.py)."""


class Script:
    """A Lua script called by its SHA1, loaded on first NOSCRIPT (a restarted or flushed Redis,
    a cluster node that never ran it)."""

    def __init__(self, conn: FastRedis | ScriptRunner, text: str) -> None:
        self.conn = conn
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], replicas: int = 0) -> Any:
        return await self.conn.run_script(self, keys, args, replicas)


class ScriptRunner(Protocol):
    """What Script calls: FastRedis, or FastCluster (which routes by the script's first key)."""

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Any], replicas: int = 0
                         ) -> Any: ...


Send = Callable[[Sequence[tuple[Any, ...]]], Awaitable[list[Any]]]


async def run_script(send: Send, script: Script, keys: Sequence[str], args: Sequence[Any], replicas: int,
                     wait_timeout_ms: int) -> Any:
    """EVALSHA through `send` (one connection's pipeline); on NOSCRIPT, SCRIPT LOAD and EVALSHA again.
    With `replicas`, WAIT follows in the same write: it counts the replicas that have every write
    the connection made so far, this script's included, and NotReplicated is raised when fewer
    than `replicas` had it within `wait_timeout_ms`."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    commands = [command, ("WAIT", replicas, wait_timeout_ms)] if replicas else [command]
    replies = await send(commands)
    if isinstance(replies[0], NoScriptError):  # loaded and run in one write, so on the node that said so
        loaded, *replies = await send([("SCRIPT", "LOAD", script.text), *commands])
        if isinstance(loaded, Exception):
            raise loaded
    if isinstance(replies[0], Exception):
        raise replies[0]
    if replicas:
        if isinstance(replies[1], Exception):
            raise replies[1]
        if replies[1] < replicas:
            raise NotReplicated(f"NOREPLICAS the write reached {replies[1]} of {replicas} replicas within "
                                f"{wait_timeout_ms} ms (--redis-wait-replicas); it is on the primary only")
    return replies[0]


class Subscriber(asyncio.Protocol):
    """A pub/sub connection: each message goes straight from data_received to a callback
    (no task, no extra loop iteration per message). SUBSCRIBE (classic channels) and SSUBSCRIBE
    (a cluster's shard channels) both; `request` adds channels while it runs."""

    def __init__(self, on_message: Callable[[bytes, bytes], None]) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.on_message = on_message
        self._requests: collections.deque[list[Any]] = collections.deque()
        """[confirmations still due, future] per subscribe command, in the order sent."""
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def authenticate(self, auth: tuple[Any, ...]) -> None:
        """Sends AUTH first; its reply is skipped (a refusal fails the subscribe that follows)."""
        assert self.transport is not None
        self._requests.append([1, None])
        self.transport.write(hiredis.pack_command(auth))

    def request(self, command: str, channels: Sequence[str]) -> asyncio.Future[None]:
        """Sends `command` (SUBSCRIBE or SSUBSCRIBE) for `channels`; the future completes once
        Redis confirmed every channel."""
        assert self.transport is not None
        if self.closed.done():
            raise RedisConnectionError("the subscription is closed")
        done = asyncio.get_running_loop().create_future()
        self._requests.append([len(channels), done])
        self.transport.write(hiredis.pack_command((command, *channels)))
        return done

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if isinstance(reply, ResponseError) or not isinstance(reply, list):  # refused, or AUTH's +OK
                request = self._requests.popleft() if self._requests else [0, None]
                if isinstance(reply, ResponseError) and request[1] is not None and not request[1].done():
                    request[1].set_exception(reply_error(reply))
                continue
            kind = reply[0]
            if kind in (b"message", b"smessage"):
                try:
                    self.on_message(reply[1], reply[2])
                except Exception:  # one bad message must not break the subscription
                    log.exception("handling a pub/sub message failed")
            elif kind in (b"subscribe", b"ssubscribe") and self._requests:
                request = self._requests[0]
                request[0] -= 1
                if request[0] <= 0:
                    self._requests.popleft()
                    if request[1] is not None and not request[1].done():
                        request[1].set_result(None)
            elif kind == b"sunsubscribe":  # the slot moved away (never asked for here): start over
                self._close(RedisConnectionError(f"shard channel {reply[1]!r} moved to another node"))

    def _close(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"lost the connection to Redis: {exc or 'closed'}")
        for _, done in self._requests:
            if done is not None and not done.done():
                done.set_exception(error)
        self._requests.clear()
        if not self.closed.done():
            self.closed.set_result(exc)


async def open_subscriber(conn: FastRedis, on_message: Callable[[bytes, bytes], None]) -> Subscriber:
    """A new pub/sub connection to `conn`'s server (authenticated as `conn` is)."""
    _, protocol = await conn._open(functools.partial(Subscriber, on_message))
    if conn._password is not None:
        protocol.authenticate(conn._auth())
    return protocol


async def subscribe(conn: FastRedis, channels: Sequence[str], on_message: Callable[[bytes, bytes], None]
                    ) -> tuple[asyncio.Future[Exception | None], Callable[[], None]]:
    """Subscribes a new connection of `conn`'s server to `channels`; returns once Redis
    confirmed them, with a future that completes when the connection is lost and a close
    function."""
    protocol = await open_subscriber(conn, on_message)
    assert protocol.transport is not None
    try:
        await protocol.request("SUBSCRIBE", channels)
    except BaseException:
        protocol.transport.close()
        raise
    return protocol.closed, protocol.transport.close
