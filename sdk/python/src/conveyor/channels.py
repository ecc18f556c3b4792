"""The SDK's one channel factory: every client, the CLI and the worker open channels here, so TLS,
mutual TLS and the token work the same everywhere.

Settings come from the arguments, else from the environment: `CONVEYOR_TOKEN`, and
`CONVEYOR_TLS_CA`, `CONVEYOR_TLS_CERT`, `CONVEYOR_TLS_KEY` (any of the three set means TLS). An
explicit argument wins over the environment as a whole (a `TLSConfig` argument is not merged with
the TLS variables). A token travels as `authorization: Bearer <token>` metadata on every call and
at the start of every stream; it is never sent over a plaintext channel to an address that is not
loopback (`InsecureTokenError`), since anyone on the path could read it and act with its roles.

Several comma-separated addresses are resolved to IP addresses (resilience.channel_target), so
with TLS the servers' certificates must then name those IPs, or `TLSConfig.server_name` must give
the name they hold (gRPC's `grpc.ssl_target_name_override`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from conveyor.common import CHANNEL_OPTIONS
from conveyor.errors import ChannelConfigError, InsecureTokenError, TLSConfigError
from conveyor.resilience import channel_options, channel_target

TOKEN_ENV = "CONVEYOR_TOKEN"
TLS_CA_ENV = "CONVEYOR_TLS_CA"
TLS_CERT_ENV = "CONVEYOR_TLS_CERT"
TLS_KEY_ENV = "CONVEYOR_TLS_KEY"
SECURITY_ENV = (TOKEN_ENV, TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV)
"""Every variable the factory reads."""
AUTHORIZATION = "authorization"

Options = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class TLSConfig:
    """TLS for a channel: PEM file paths, read when a channel is opened (so a rotated file is
    picked up by the next channel). `ca` None trusts the system roots; `cert` and `key` together
    are a client certificate for mutual TLS. `server_name` overrides the name the server's
    certificate is checked against (for targets given as IP addresses, or several addresses)."""

    ca: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise TLSConfigError(f"a TLS client {given} was given without its {missing}: mutual TLS needs both "
                                 f"(--tls-cert and --tls-key, or {TLS_CERT_ENV} and {TLS_KEY_ENV})")

    @classmethod
    def given(cls, ca: str | Path | None, cert: str | Path | None, key: str | Path | None) -> TLSConfig | None:
        """TLS with these files, or None (plaintext) when none of the three is given; raises
        TLSConfigError for a certificate without its key or the reverse."""
        if ca is None and cert is None and key is None:
            return None
        return cls(ca=ca, cert=cert, key=key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TLSConfig | None:
        """The TLS the environment asks for, or None when no CONVEYOR_TLS_* variable is set."""
        env = os.environ if env is None else env
        return cls.given(*(env.get(name) or None for name in (TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV)))

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files as they are now."""
        cert = _read(self.cert, "client certificate")
        return grpc.ssl_channel_credentials(root_certificates=_read(self.ca, "CA"),
                                            private_key=_read(self.key, "client key"), certificate_chain=cert)

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _read(path: str | Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read the TLS {what} file {str(path)!r}: {exc.strerror or exc}") from None


def resolve_tls(tls: TLSConfig | None, env: Mapping[str, str] | None = None) -> TLSConfig | None:
    """The argument if given, else the environment's TLS (None: plaintext)."""
    return tls if tls is not None else TLSConfig.from_env(env)


def resolve_token(token: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The argument if given, else CONVEYOR_TOKEN; surrounding whitespace (a file's newline) is
    dropped, and an empty token means none."""
    if token is None:
        token = (os.environ if env is None else env).get(TOKEN_ENV)
    token = (token or "").strip()
    if not token:
        return None
    if not all(" " <= c <= "~" for c in token):  # gRPC metadata values are printable ASCII
        raise ChannelConfigError("the token holds characters other than printable ASCII (it is not shown here)")
    return token


def _hosts(target: str) -> list[str] | None:
    """Hosts a target names; None for a local socket (unix:, unix-abstract:)."""
    scheme, sep, rest = target.partition(":")
    if sep and scheme in ("unix", "unix-abstract"):
        return None
    if sep and scheme == "dns":
        target = rest.lstrip("/") if rest.startswith("///") else rest.lstrip("/").partition("/")[2]
    elif sep and scheme in ("ipv4", "ipv6"):
        target = rest
    hosts = []
    for address in (a.strip() for a in target.split(",") if a.strip()):
        if address.startswith("["):
            hosts.append(address[1:].partition("]")[0])
        elif address.count(":") > 1:  # a bare IPv6 address, without a port
            hosts.append(address)
        else:
            hosts.append(address.partition(":")[0])
    return hosts


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, no port) is this machine: localhost, 127.0.0.0/8 or
    ::1 (also as an IPv4-mapped address). Other names are not resolved. The scheduler and the
    dashboard bind only such hosts without TLS and tokens."""
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # a DNS name other than localhost: it may resolve anywhere
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def is_loopback(target: str) -> bool:
    """Whether every address of `target` stays on this machine: localhost, 127.0.0.0/8, ::1 or a
    unix: socket. Other names are not resolved: a name that happens to point at 127.0.0.1 counts
    as remote."""
    hosts = _hosts(target)
    return hosts is None or (bool(hosts) and all(is_loopback_host(h) for h in hosts))


def check_token_transport(target: str, tls: TLSConfig | None, token: str | None) -> None:
    """Raises InsecureTokenError when `token` would travel in plaintext to a non-loopback target."""
    if token and tls is None and not is_loopback(target):
        raise InsecureTokenError(
            f"refusing to send a token in plaintext to {target}, which is not a loopback address: anyone on the "
            f"network could read it and act with its roles. Use TLS (tls=TLSConfig(ca=...), --tls-ca or "
            f"{TLS_CA_ENV}; the system roots with TLSConfig()), or reach the scheduler over loopback.")


@dataclass(frozen=True)
class ChannelSecurity:
    """Resolved settings of one channel."""

    tls: TLSConfig | None
    token: str | None

    @classmethod
    def resolve(cls, target: str, tls: TLSConfig | None = None, token: str | None = None,
                env: Mapping[str, str] | None = None) -> ChannelSecurity:
        """Arguments, then the environment; refuses a plaintext token to a remote target."""
        security = cls(resolve_tls(tls, env), resolve_token(token, env))
        check_token_transport(target, security.tls, security.token)
        return security

    def __repr__(self) -> str:  # never show the token
        return f"ChannelSecurity(tls={self.tls!r}, token={'<set>' if self.token else None})"


def _options(target: str, options: Options | None, tls: TLSConfig | None) -> list[tuple[str, Any]]:
    base = list(CHANNEL_OPTIONS if options is None else options)
    return channel_options(target, base + (tls.channel_options() if tls else []))


def open_channel(target: str, *, tls: TLSConfig | None = None, token: str | None = None,
                 options: Options | None = None, env: Mapping[str, str] | None = None) -> grpc.Channel:
    """A sync channel to `target` (one address or several, comma-separated): TLS when `tls` or
    the environment asks for it, else plaintext; `token` (or CONVEYOR_TOKEN) on every call.
    `options` replaces the SDK's CHANNEL_OPTIONS; `env` replaces os.environ ({} ignores it)."""
    security = ChannelSecurity.resolve(target, tls, token, env)
    resolved, opts = channel_target(target), _options(target, options, security.tls)
    if security.tls is None:
        channel = grpc.insecure_channel(resolved, options=opts)
    else:
        channel = grpc.secure_channel(resolved, security.tls.credentials(), options=opts)
    if security.token is None:
        return channel
    return grpc.intercept_channel(channel, _BearerToken(security.token))


def open_aio_channel(target: str, *, tls: TLSConfig | None = None, token: str | None = None,
                     options: Options | None = None, env: Mapping[str, str] | None = None) -> grpc.aio.Channel:
    """open_channel for asyncio code."""
    security = ChannelSecurity.resolve(target, tls, token, env)
    resolved, opts = channel_target(target), _options(target, options, security.tls)
    interceptors = _aio_bearer_token(security.token) if security.token is not None else None
    if security.tls is None:
        return grpc.aio.insecure_channel(resolved, options=opts, interceptors=interceptors)
    return grpc.aio.secure_channel(resolved, security.tls.credentials(), options=opts, interceptors=interceptors)


# A token goes onto every call through client interceptors: they work on plaintext loopback
# channels as on TLS ones (call credentials are refused by gRPC on a plaintext channel).


def _with_token(metadata: Any, header: tuple[str, str]) -> list[tuple[str, str | bytes]]:
    return [*(m for m in (metadata or ()) if m[0] != AUTHORIZATION), header]


class _Details(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str | bytes]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the token to every call of a sync channel, whatever its kind."""

    def __init__(self, token: str) -> None:
        self._header = (AUTHORIZATION, f"Bearer {token}")

    def __repr__(self) -> str:
        return "_BearerToken(<token>)"

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(details, _with_token(details.metadata, self._header))

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                               request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                               request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                                request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)


def _aio_details(details: grpc.aio.ClientCallDetails, header: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(details.method, details.timeout,
                                      grpc.aio.Metadata(*_with_token(details.metadata, header)),
                                      details.credentials, details.wait_for_ready)


class _AioBearer:
    def __init__(self, header: tuple[str, str]) -> None:
        self.header = header

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<token>)"


class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(_aio_details(details, self.header), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(_aio_details(details, self.header), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                     request_iterator: Any) -> Any:
        return await continuation(_aio_details(details, self.header), request_iterator)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                      request_iterator: Any) -> Any:
        return await continuation(_aio_details(details, self.header), request_iterator)


def _aio_bearer_token(token: str) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per call kind: grpc.aio files an interceptor under the first kind it is an
    instance of, so one object of all four kinds would only see unary-unary calls."""
    header = (AUTHORIZATION, f"Bearer {token}")
    return [_AioUnaryUnary(header), _AioUnaryStream(header), _AioStreamUnary(header), _AioStreamStream(header)]
