"""What one dashboard process is configured with (the command line, or a test)."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.channels import TLSConfig


@dataclass(frozen=True)
class Settings:
    scheduler: str
    """One address or several, comma-separated (the SDK's channel factory balances over them)."""
    tls: TLSConfig | None = None
    """How the dashboard reaches the schedulers, on every channel: its own and each signed-in
    session's (None: the CONVEYOR_TLS_* variables, else plaintext). `cert`/`key` are the client
    certificate a mutual-TLS scheduler asks for, not the dashboard's HTTPS pair."""
    service_token: str | None = None
    """The dashboard's own token (CONVEYOR_TOKEN): used only for visitors who have not signed in,
    and only with token_free_read_only."""
    read_only: bool = False
    """Hide and refuse every action, whoever signs in."""
    token_free_read_only: bool = False
    """Visitors may browse without signing in (with service_token), never act."""
    trace_url: str | None = None
    """A trace UI URL with {trace_id}, e.g. http://jaeger:16686/trace/{trace_id}."""
    https: bool = False
    """Served over TLS: the session cookie is marked Secure."""
    overview_interval_s: float = 3.0
    session_idle_s: float = 8 * 3600.0
