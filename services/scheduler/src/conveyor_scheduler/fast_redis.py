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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
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

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
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

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
        pending, self._pending = self._pending, collections.deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(RedisConnectionError(f"lost the connection to Redis: {exc or 'closed'}"))

    async def execute(self, *args: Any) -> Any:
        """Sends one command and returns its reply (bytes, int, list, None)."""
        for attempt in range(RETRIES + 1):
            protocol = self._protocol or await self._connect()
            try:
                return await self._send(protocol, args)
            except TransientRedisError:  # Redis answered "not now": the caller backs off, not us
                raise
            except RedisConnectionError:
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(0.01 * 2 ** attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


class Script:
    """A Lua script called by its SHA1, loaded on first NOSCRIPT (a restarted or flushed Redis)."""

    def __init__(self, conn: FastRedis, text: str) -> None:
        self.conn = conn
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, keys: tuple[str, ...] | list[str], args: list[Any]) -> Any:
        try:
            return await self.conn.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.conn.execute("SCRIPT", "LOAD", self.text)
            return await self.conn.execute("EVALSHA", self.sha, len(keys), *keys, *args)


class _Subscriber(asyncio.Protocol):
    """A SUBSCRIBE connection: each message goes straight from data_received to a callback
    (no task, no extra loop iteration per message)."""

    def __init__(self, channels: int, on_message: Callable[[bytes, bytes], None]) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.on_message = on_message
        self.unconfirmed = channels
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[Exception | None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if isinstance(reply, ResponseError):
                if not self.subscribed.done():
                    self.subscribed.set_exception(reply_error(reply))
                continue
            kind = reply[0]
            if kind == b"message":
                try:
                    self.on_message(reply[1], reply[2])
                except Exception:  # one bad message must not break the subscription
                    log.exception("handling a pub/sub message failed")
            elif kind == b"subscribe":
                self.unconfirmed -= 1
                if self.unconfirmed == 0 and not self.subscribed.done():
                    self.subscribed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(RedisConnectionError(f"lost the connection to Redis: {exc or 'closed'}"))
        if not self.closed.done():
            self.closed.set_result(exc)


async def subscribe(conn: FastRedis, channels: Sequence[str], on_message: Callable[[bytes, bytes], None]
                    ) -> tuple[asyncio.Future[Exception | None], Callable[[], None]]:
    """Subscribes a new connection of `conn`'s server to `channels`; returns once Redis
    confirmed them, with a future that completes when the connection is lost and a close
    function."""
    transport, protocol = await conn._open(functools.partial(_Subscriber, len(channels), on_message))
    if conn._password is not None:  # replies before SUBSCRIBE's are not messages: skipped
        transport.write(hiredis.pack_command(conn._auth()))
    transport.write(hiredis.pack_command(("SUBSCRIBE", *channels)))
    try:
        await protocol.subscribed
    except BaseException:
        transport.close()
        raise
    return protocol.closed, transport.close
