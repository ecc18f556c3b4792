"""`conveyor-dashboard`: serves the dashboard with uvicorn until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping

import uvicorn

from conveyor.channels import TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV, TLSConfig, is_loopback_host, resolve_token
from conveyor.errors import TLSConfigError
from conveyor_dashboard.app import create_app
from conveyor_dashboard.settings import Settings


def parser() -> argparse.ArgumentParser:
    """The command's options (also read by tests/unit/test_compose_file.py)."""
    p = argparse.ArgumentParser(prog="conveyor-dashboard", description=__doc__)
    p.add_argument("--scheduler", default="127.0.0.1:50051", help="ADDR[,ADDR]: the scheduler replicas.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--read-only", action="store_true", help="Hide and refuse every action.")
    p.add_argument("--token-free-read-only", action="store_true",
                   help="Visitors may look without signing in (with the dashboard's own CONVEYOR_TOKEN), never act.")
    p.add_argument("--trace-url", help="Trace UI URL with {trace_id}, e.g. http://jaeger:16686/trace/{trace_id}.")
    p.add_argument("--scheduler-tls-ca",
                   help=f"Reach the schedulers over TLS, trusting this CA (PEM; default ${TLS_CA_ENV}). Any "
                        f"--scheduler-tls-* option (or ${TLS_CA_ENV}/${TLS_CERT_ENV}/${TLS_KEY_ENV}) turns TLS on.")
    p.add_argument("--scheduler-tls-cert",
                   help=f"Client certificate (PEM) the dashboard presents to a mutual-TLS scheduler, on every "
                        f"channel (signed-in sessions' too); needs --scheduler-tls-key (default ${TLS_CERT_ENV}).")
    p.add_argument("--scheduler-tls-key",
                   help=f"Private key (PEM) of --scheduler-tls-cert (default ${TLS_KEY_ENV}).")
    p.add_argument("--tls-ca", help="The same as --scheduler-tls-ca (kept for existing command lines).")
    p.add_argument("--tls-cert", help="The dashboard's own HTTPS certificate (PEM), shown to browsers.")
    p.add_argument("--tls-key", help="The dashboard's own HTTPS key (PEM).")
    p.add_argument("--insecure", action="store_true", help="Allow plain HTTP on a non-loopback --host.")
    p.add_argument("--log-level", default="warning")
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


def settings_of(args: argparse.Namespace) -> Settings:
    https = bool(args.tls_cert and args.tls_key)
    if bool(args.tls_cert) != bool(args.tls_key):
        sys.exit("conveyor-dashboard: --tls-cert and --tls-key go together")
    if not https and not args.insecure and not is_loopback_host(args.host):
        sys.exit(f"conveyor-dashboard: refusing to serve plain HTTP on {args.host}: sign-in tokens would cross the "
                 f"network in the clear. Give --tls-cert/--tls-key, bind loopback, or pass --insecure.")
    if args.trace_url and "{trace_id}" not in args.trace_url:
        sys.exit("conveyor-dashboard: --trace-url must contain {trace_id}")
    return Settings(scheduler=args.scheduler, tls=scheduler_tls(args), service_token=resolve_token(None),
                    read_only=args.read_only, token_free_read_only=args.token_free_read_only,
                    trace_url=args.trace_url, https=https)


def scheduler_tls(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> TLSConfig | None:
    """The TLS every channel to the schedulers uses (None: plaintext): the --scheduler-tls-* options,
    each defaulting to its CONVEYOR_TLS_* variable (as `conveyor`'s --tls-* do); --tls-ca stands
    for --scheduler-tls-ca. The dashboard's HTTPS pair (--tls-cert/--tls-key) is not used here."""
    env = os.environ if env is None else env
    if args.tls_ca and args.scheduler_tls_ca and args.tls_ca != args.scheduler_tls_ca:
        sys.exit("conveyor-dashboard: --tls-ca and --scheduler-tls-ca name different CAs; give one")
    ca = args.scheduler_tls_ca or args.tls_ca or env.get(TLS_CA_ENV) or None
    cert = args.scheduler_tls_cert or env.get(TLS_CERT_ENV) or None
    key = args.scheduler_tls_key or env.get(TLS_KEY_ENV) or None
    try:
        return TLSConfig.given(ca, cert, key)
    except TLSConfigError as exc:
        sys.exit(f"conveyor-dashboard: {exc}")


async def serve(args: argparse.Namespace) -> None:
    settings = settings_of(args)
    config = uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                            ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key, access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            sys.exit("conveyor-dashboard: the server did not start")
        await asyncio.sleep(0.05)
    scheme = "https" if settings.https else "http"
    print(f"conveyor-dashboard listening on {scheme}://{args.host}:{server_port(server, args.port)}", flush=True)
    await task


def server_port(server: uvicorn.Server, default: int) -> int:
    """The bound port (port 0 asks the OS for one)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return default


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse(argv)))
