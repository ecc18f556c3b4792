"""Server-side sessions in memory, keyed by a random id in an HttpOnly SameSite=Strict cookie.

A signed-in session holds its token and its own gRPC channel; the token never goes to the
browser. Every channel to the schedulers, the dashboard's own and each session's, comes from
`Sessions.open`: the SDK's factory with the one TLS setting resolved at start-up (Settings.tls,
else CONVEYOR_TLS_*), so a session reaches a mutual-TLS scheduler exactly as the dashboard does. Visitors who
need not sign in (no auth on the scheduler, or --token-free-read-only) share the dashboard's
own channel. Sessions idle longer than Settings.session_idle_s are dropped."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import grpc
from starlette.requests import Request
from starlette.responses import Response

from conveyor.aio import AsyncClient
from conveyor.channels import open_aio_channel, resolve_tls, resolve_token
from conveyor_dashboard.identity import Identity, who_am_i
from conveyor_dashboard.settings import Settings

COOKIE = "conveyor_dashboard_session"
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    csrf: str
    identity: Identity
    channel: grpc.aio.Channel
    client: AsyncClient
    token: str | None
    """The signed-in token (None: the dashboard's own channel); kept server-side only."""
    last_seen: float = field(default_factory=time.monotonic)
    flashes: list[tuple[str, str]] = field(default_factory=list)
    """(kind, message) shown once on the next page."""
    new: bool = True
    """The cookie still has to be set."""

    @property
    def credential_key(self) -> str:
        """Sessions with the same key see the same data: they share one overview poll."""
        return f"token:{self.token}" if self.token else "dashboard"


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_id: dict[str, Session] = {}
        self.tls = resolve_tls(settings.tls)
        """Read once: a session opened later must not differ from the dashboard's own channel."""
        self.channel = self.open(resolve_token(settings.service_token))
        self.client = AsyncClient(channel=self.channel, pipeline=False)
        self._guest: Identity | None = None

    def open(self, token: str | None) -> grpc.aio.Channel:
        """A channel to the schedulers with `token` (None: none) and the dashboard's TLS; nothing
        else is read from the environment (a session must not pick up CONVEYOR_TOKEN)."""
        return open_aio_channel(self.settings.scheduler, tls=self.tls, token=token or "", env={})

    async def guest_identity(self) -> Identity | None:
        """Who a visitor is before signing in; None when they must sign in."""
        if self._guest is None or not self._guest.auth_enabled:
            try:
                self._guest = await who_am_i(self.channel, signed_in=False)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise
                return None
        if self._guest.auth_enabled and not self.settings.token_free_read_only:
            return None
        return self._guest

    def get(self, request: Request) -> Session | None:
        session = self._by_id.get(request.cookies.get(COOKIE, ""))
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.settings.session_idle_s:
            self._by_id.pop(session.id, None)
            return None
        session.last_seen = now
        return session

    def _add(self, identity: Identity, channel: grpc.aio.Channel, client: AsyncClient, token: str | None) -> Session:
        if len(self._by_id) >= MAX_SESSIONS:
            self._evict()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), identity, channel, client, token)
        self._by_id[session.id] = session
        return session

    def guest(self, identity: Identity) -> Session:
        return self._add(identity, self.channel, self.client, None)

    async def sign_in(self, token: str) -> Session:
        """Raises grpc.aio.AioRpcError when the scheduler does not know the token."""
        channel = self.open(token)
        try:
            identity = await who_am_i(channel, signed_in=True)
        except BaseException:
            await channel.close()
            raise
        return self._add(identity, channel, AsyncClient(channel=channel, pipeline=False), token)

    async def sign_out(self, session: Session) -> None:
        self._by_id.pop(session.id, None)
        if session.channel is not self.channel:
            await session.channel.close()

    def _evict(self) -> None:
        for session in sorted(self._by_id.values(), key=lambda s: s.last_seen)[: MAX_SESSIONS // 10]:
            self._by_id.pop(session.id, None)

    def set_cookie(self, session: Session, response: Response) -> Response:
        if session.new:
            response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", secure=self.settings.https,
                                path="/")
            session.new = False
        return response

    async def close(self) -> None:
        for session in list(self._by_id.values()):
            await self.sign_out(session)
        await self.channel.close()
