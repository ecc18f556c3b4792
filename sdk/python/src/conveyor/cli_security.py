"""The four connection-security options `conveyor` and `conveyor-worker` share: --token, --tls-ca,
--tls-cert and --tls-key, each also read from its environment variable (see conveyor.channels)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from conveyor.channels import TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV, TOKEN_ENV, TLSConfig
from conveyor.errors import TLSConfigError

F = TypeVar("F", bound=Callable[..., Any])
_PEM = click.Path(exists=False, dir_okay=False, path_type=Path)  # read (and checked) when a channel opens


def security_options(fn: F) -> F:
    """Adds token, tls_ca, tls_cert and tls_key parameters to a click command."""
    options = [
        click.option("--token", default=None, envvar=TOKEN_ENV, metavar="SECRET",
                     help=f"Token sent as 'authorization: Bearer' on every call (prefer ${TOKEN_ENV}: "
                          "a flag shows in the process list). Needs TLS unless the scheduler is on loopback."),
        click.option("--tls-ca", type=_PEM, default=None, envvar=TLS_CA_ENV,
                     help="Connect with TLS, trusting this CA (PEM); any --tls-* option turns TLS on "
                          "(without --tls-ca: the system roots)."),
        click.option("--tls-cert", type=_PEM, default=None, envvar=TLS_CERT_ENV,
                     help="Client certificate (PEM) for mutual TLS; needs --tls-key."),
        click.option("--tls-key", type=_PEM, default=None, envvar=TLS_KEY_ENV,
                     help="Private key (PEM) of --tls-cert."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def tls_config(ca: Path | None, cert: Path | None, key: Path | None) -> TLSConfig | None:
    """The TLSConfig the options ask for (None: plaintext); an incomplete pair is a usage error."""
    try:
        return TLSConfig.given(ca, cert, key)
    except TLSConfigError as exc:
        raise click.UsageError(str(exc)) from None
