"""`conveyor workers` and `conveyor worker show|drain|shutdown|scale`: the worker registry and
worker control (AdminService), for operators."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from conveyor.admin import WorkerInfo
from conveyor.cli_common import client_of, console, emit_json, json_option, make_table


def _iso(at: dt.datetime | None) -> str | None:
    """UTC, ISO 8601 to the millisecond, as `conveyor task --json` prints times."""
    return None if at is None else at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _age(at: dt.datetime, now: dt.datetime) -> str:
    """How long ago, e.g. "1.2s ago" (a heartbeat well past the interval means trouble)."""
    seconds = max((now - at).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    return f"{seconds / 60:.0f}m ago" if seconds < 3600 else f"{seconds / 3600:.1f}h ago"


def worker_json(w: WorkerInfo) -> dict[str, Any]:
    """One entry for scripts: every WorkerInfo field, in_flight, times as ISO 8601 UTC."""
    return {"id": w.id, "host": w.host, "pid": w.pid, "sdk": w.sdk, "queues": list(w.queues),
            "task_names": list(w.task_names), "concurrency": w.concurrency, "prefetch": w.prefetch,
            "in_flight": w.in_flight, "active_task_ids": list(w.active_task_ids), "succeeded": w.succeeded,
            "failed": w.failed, "started_at": _iso(w.started_at), "scheduler_id": w.scheduler_id,
            "connected_at": _iso(w.connected_at), "last_heartbeat": _iso(w.last_heartbeat),
            "expires_at": _iso(w.expires_at), "draining": w.draining}


@click.command()
@click.option("--queue", "-q", default=None, help="Only workers consuming this queue.")
@json_option
@click.pass_context
def workers(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """List the connected workers (any replica answers for all of them).

    --json prints {"queue", "workers": [entries as `worker show --json` prints them]}."""
    with client_of(ctx) as client:
        found = client.admin.list_workers(queue)
    if as_json:
        emit_json({"queue": queue, "workers": [worker_json(w) for w in found]})
        return
    console().print(workers_table(found, queue))


def workers_table(found: list[WorkerInfo], queue: str | None) -> Table:
    """The `conveyor workers` table (also a panel of `conveyor top`)."""
    now = dt.datetime.now(dt.UTC)
    rows = [(w.id, w.host, ",".join(w.queues), f"{w.in_flight}/{w.concurrency}" + (f" +{w.prefetch}" if w.prefetch
            else ""), f"{w.succeeded}/{w.failed}", w.scheduler_id, _age(w.last_heartbeat, now),
             "yes" if w.draining else "") for w in found]
    return make_table("Workers" + (f" on {queue}" if queue else ""),
                      ["ID", "HOST", "QUEUES", "IN FLIGHT/SLOTS", "DONE/FAILED", "REPLICA", "HEARTBEAT", "DRAINING"],
                      rows, f"{len(rows)} connected")


@click.group()
def worker() -> None:
    """One worker: show it, drain it, shut it down, change its slots."""


@worker.command()
@click.argument("worker_id")
@json_option
@click.pass_context
def show(ctx: click.Context, worker_id: str, as_json: bool) -> None:
    """Show WORKER_ID's registry entry: queues, slots, the tasks it runs, counts, times."""
    with client_of(ctx) as client:
        w = client.admin.get_worker(worker_id)
    if as_json:
        emit_json(worker_json(w))
        return
    now = dt.datetime.now(dt.UTC)
    rows = [("id", w.id), ("host", f"{w.host} (pid {w.pid})"), ("sdk", w.sdk), ("queues", ", ".join(w.queues)),
            ("task names", ", ".join(w.task_names) or "any"), ("slots", f"{w.concurrency} (prefetch {w.prefetch})"),
            ("in flight", " ".join([str(w.in_flight), *w.active_task_ids])),
            ("succeeded", str(w.succeeded)), ("failed", str(w.failed)), ("replica", w.scheduler_id),
            ("started", _iso(w.started_at) or "-"), ("connected", _iso(w.connected_at) or "-"),
            ("heartbeat", f"{_iso(w.last_heartbeat)} ({_age(w.last_heartbeat, now)})"),
            ("expires", _iso(w.expires_at) or "-"), ("draining", "yes" if w.draining else "no")]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, Text(value))
    console().print(grid)


def _relayed(what: str, w: WorkerInfo, as_json: bool, **extra: Any) -> None:
    if as_json:
        emit_json({"relayed": what, **extra, "worker": worker_json(w)})
    else:
        click.echo(f"{what} sent to {w.id} (replica {w.scheduler_id}); `conveyor worker show {w.id}` shows the effect")


@worker.command()
@click.argument("worker_id")
@click.option("--reason", default="", help="Logged by the worker.")
@json_option
@click.pass_context
def drain(ctx: click.Context, worker_id: str, reason: str, as_json: bool) -> None:
    """Stop WORKER_ID taking new work; it finishes what it runs and stays connected, draining.

    Its prefetched tasks go back to the queue at once. Restart the worker to take work again."""
    with client_of(ctx) as client:
        _relayed("drain", client.admin.drain_worker(worker_id, reason), as_json)


@worker.command()
@click.argument("worker_id")
@click.option("--reason", default="", help="Logged by the worker.")
@json_option
@click.pass_context
def shutdown(ctx: click.Context, worker_id: str, reason: str, as_json: bool) -> None:
    """Drain WORKER_ID, then make its process exit, as on SIGTERM (grace period applies)."""
    with client_of(ctx) as client:
        _relayed("shutdown", client.admin.shutdown_worker(worker_id, reason), as_json)


@worker.command()
@click.argument("worker_id")
@click.argument("concurrency", type=click.IntRange(1, 10_000))
@json_option
@click.pass_context
def scale(ctx: click.Context, worker_id: str, concurrency: int, as_json: bool) -> None:
    """Give WORKER_ID CONCURRENCY slots: more start at once, fewer let running tasks finish.

    The registry shows the new number after the worker's next heartbeat."""
    with client_of(ctx) as client:
        _relayed(f"concurrency {concurrency}", client.admin.set_concurrency(worker_id, concurrency), as_json,
                 concurrency=concurrency)
