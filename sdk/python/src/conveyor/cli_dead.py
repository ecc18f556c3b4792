"""`conveyor dead ...`: list, inspect, requeue and purge a queue's dead letters."""

from __future__ import annotations

import click

from conveyor.cli_common import client_of, emit_json, json_option, table, task_json, when


@click.group()
def dead() -> None:
    """Dead letters: tasks that ran out of retries."""


@dead.command("list")
@click.argument("queue", default="default")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0))
@json_option
@click.pass_context
def list_(ctx: click.Context, queue: str, limit: int, offset: int, as_json: bool) -> None:
    """List QUEUE's dead letters, oldest first.

    --json prints {"queue", "total", "tasks": [records as `conveyor task --json` prints them]}."""
    with client_of(ctx) as client:
        page = client.admin.list_dead_letters(queue, limit, offset)
    if as_json:
        emit_json({"queue": queue, "total": page.total, "tasks": [task_json(t) for t in page.tasks]})
        return
    rows = [(t.id, t.name, str(t.attempt), when(t.finished_at, t.HasField("finished_at")),
             f"{t.error.type}: {t.error.message[:80]}") for t in page.tasks]
    shown = f"{offset + 1}-{offset + len(rows)} of {page.total}" if rows else f"none of {page.total} shown"
    table(f"Dead letters in {queue}", ["ID", "TASK", "ATTEMPTS", "DIED (UTC)", "LAST ERROR"], rows, shown)


@dead.command()
@click.argument("task_id")
@click.pass_context
def show(ctx: click.Context, task_id: str) -> None:
    """Print a dead letter's full record as JSON, with its last error and traceback."""
    with client_of(ctx) as client:
        emit_json(task_json(client.get_task(task_id)))


@dead.command()
@click.argument("queue")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter of QUEUE.")
@json_option
@click.pass_context
def requeue(ctx: click.Context, queue: str, task_ids: tuple[str, ...], everything: bool, as_json: bool) -> None:
    """Send dead letters of QUEUE back for a fresh set of attempts."""
    if everything == bool(task_ids):
        raise click.UsageError("name the dead letters, or pass --all")
    with client_of(ctx) as client:
        count = client.admin.requeue_dead_letters(queue, task_ids)
    if as_json:
        emit_json({"queue": queue, "requeued": count})
    else:
        click.echo(f"requeued {count}")


@dead.command()
@click.argument("queue")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter of QUEUE.")
@json_option
@click.pass_context
def purge(ctx: click.Context, queue: str, task_ids: tuple[str, ...], everything: bool, as_json: bool) -> None:
    """Delete dead letters of QUEUE for good."""
    if everything == bool(task_ids):
        raise click.UsageError("name the dead letters, or pass --all")
    with client_of(ctx) as client:
        count = client.admin.purge_dead_letters(queue, task_ids)
    if as_json:
        emit_json({"queue": queue, "purged": count})
    else:
        click.echo(f"purged {count}")
