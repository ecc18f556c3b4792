"""`conveyor top`: the queues and workers tables, refreshed in place until Ctrl-C."""

from __future__ import annotations

import datetime as dt
import time

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from conveyor.cli_common import client_of, console, known_queue
from conveyor.cli_queues import queues_table
from conveyor.cli_workers import workers_table
from conveyor.client import Client
from conveyor.errors import RPCError


def frame(client: Client, queue: str | None, header: str) -> Group:
    """One screen: a header line, the queues table, the workers table."""
    found = client.admin.queues(queue)
    workers = client.admin.list_workers(queue)
    stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC")
    return Group(Text(f"{header} at {stamp}", style="bold"), queues_table(found, queue), workers_table(workers, queue))


@click.command()
@click.option("--interval", "-n", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
              help="Seconds between refreshes.")
@click.option("--queue", "-q", default=None, help="Only this queue and the workers consuming it.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and logs).")
@click.pass_context
def top(ctx: click.Context, interval: float, queue: str | None, once: bool) -> None:
    """Watch the queues and workers tables live, refreshed every --interval seconds, until Ctrl-C.

    A refresh that fails (scheduler unreachable) keeps the last frame and says so; the first one
    exits as any command does."""
    target = ctx.find_root().obj["scheduler"]
    with known_queue(), client_of(ctx) as client:
        client.timeout = max(5.0, 2 * interval)  # a refresh waits out a short outage, not 30 s
        last = frame(client, queue, f"conveyor top: {target}")
        if once:
            console().print(last)
            return
        header = f"conveyor top: {target}, every {interval:g}s (Ctrl-C to quit)"
        with Live(last, console=console(), auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    shown: RenderableType
                    try:
                        shown = last = frame(client, queue, header)
                    except RPCError as exc:
                        shown = Group(last, Text(f"refresh failed at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC: "
                                                 f"{exc.code.name}: {exc} (retrying)", style="red"))
                    live.update(shown, refresh=True)
            except KeyboardInterrupt:
                pass
