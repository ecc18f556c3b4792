"""`conveyor queues` and `conveyor queue pause|resume|purge`: queue stats and control, for operators."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from conveyor.admin_queues import QueueInfo, QueueWindow
from conveyor.cli_common import (
    client_of,
    console,
    emit_json,
    json_option,
    known_queue,
    make_table,
    rate_text,
    seconds_text,
)

SHOWN_WINDOW = 1
"""The window (minutes) of the table's rates and percentiles: the most current one."""


def window_json(w: QueueWindow) -> dict[str, Any]:
    """A window for scripts: its counts, `covered` and percentiles in seconds (null: no attempt)."""
    return {"minutes": w.minutes, "covered": w.covered, "submitted": w.submitted, "succeeded": w.succeeded,
            "failed": w.failed, "expired": w.expired, "cancelled": w.cancelled, "dead": w.dead,
            "retried": w.retried, "started": w.started, "wait_p50": w.wait_p50, "wait_p95": w.wait_p95,
            "run_p50": w.run_p50, "run_p95": w.run_p95}


def queue_json(q: QueueInfo) -> dict[str, Any]:
    """One queue for scripts: every QueueInfo field, durations in seconds, windows keyed by minutes."""
    return {"queue": q.name, "paused": q.paused, "queued": q.queued, "queued_by_priority": list(q.queued_by_priority),
            "scheduled": q.scheduled, "active": q.active, "dead": q.dead, "oldest_queued_age": q.oldest_queued_age,
            "unserved_names": list(q.unserved_names),
            "windows": {str(m): window_json(w) for m, w in sorted(q.windows.items())}}


def queues_table(found: list[QueueInfo], queue: str | None) -> Table:
    """The `conveyor queues` table (also a panel of `conveyor top`)."""
    rows = []
    for q in found:
        w = q.windows.get(SHOWN_WINDOW)
        activity = [rate_text(w.rate("submitted")), rate_text(w.rate("succeeded")), rate_text(w.rate("failed")),
                    seconds_text(w.wait_p95), seconds_text(w.run_p95)] if w else ["-"] * 5
        rows.append([q.name, "yes" if q.paused else "", str(q.queued), str(q.scheduled), str(q.active), str(q.dead),
                     seconds_text(q.oldest_queued_age), *activity, ", ".join(q.unserved_names)])
    return make_table("Queues" + (f": {queue}" if queue else ""),
                      ["QUEUE", "PAUSED", "QUEUED", "SCHEDULED", "ACTIVE", "DEAD", "OLDEST", "SUBMITTED/s",
                       "SUCCEEDED/s", "FAILED/s", "WAIT p95", "RUN p95", "UNSERVED NAMES"],
                      rows, f"rates and p95 over the last {SHOWN_WINDOW} minute")


@click.command()
@click.option("--queue", "-q", default=None, help="Only this queue.")
@json_option
@click.pass_context
def queues(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """List the queues: depth by state, pause, oldest wait, last-minute rates and p95 times.

    UNSERVED NAMES are queued task names no connected worker of the queue runs. --json prints
    {"queues": [{queue, paused, queued, queued_by_priority, scheduled, active, dead,
    oldest_queued_age, unserved_names, windows: {"1"|"5"|"15": counts, covered, percentiles}}]},
    durations in seconds (null: none)."""
    with known_queue(), client_of(ctx) as client:
        found = client.admin.queues(queue)
    if as_json:
        emit_json({"queues": [queue_json(q) for q in found]})
    else:
        console().print(queues_table(found, queue))


@click.group()
def queue() -> None:
    """One queue: pause or resume its dispatch, purge its waiting tasks."""


def _said(as_json: bool, doc: dict[str, Any], text: str) -> None:
    if as_json:
        emit_json(doc)
    else:
        click.echo(text)


@queue.command()
@click.argument("name")
@json_option
@click.pass_context
def pause(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop every replica leasing NAME's tasks; submits still queue up, running tasks go on."""
    with known_queue(), client_of(ctx) as client:
        was = client.admin.pause_queue(name)
    _said(as_json, {"queue": name, "paused": True, "was_paused": was},
          f"{name} was already paused" if was else f"paused {name}")


@queue.command()
@click.argument("name")
@json_option
@click.pass_context
def resume(ctx: click.Context, name: str, as_json: bool) -> None:
    """Let NAME's tasks be leased again, in priority then FIFO order."""
    with known_queue(), client_of(ctx) as client:
        was = client.admin.resume_queue(name)
    _said(as_json, {"queue": name, "paused": False, "was_paused": was},
          f"resumed {name}" if was else f"{name} was not paused")


@queue.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def purge(ctx: click.Context, name: str, yes: bool, as_json: bool) -> None:
    """Cancel every queued and scheduled task of NAME (running ones go on: see `conveyor cancel`).

    Asks first, naming how many there are, unless --yes."""
    with known_queue(), client_of(ctx) as client:
        if not yes:
            [q] = client.admin.queues(name)
            click.confirm(f"Cancel the {q.queued + q.scheduled} waiting tasks of {name} ({q.queued} queued, "
                          f"{q.scheduled} scheduled)?", abort=True, err=True)
        purged = client.admin.purge_queue(name)
    _said(as_json, {"queue": name, "purged": purged}, f"purged {purged} tasks from {name}")
