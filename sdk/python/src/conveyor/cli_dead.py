"""`conveyor dead ...`: list, inspect, requeue and purge a queue's dead letters."""

from __future__ import annotations

import json

import click
from google.protobuf.json_format import MessageToDict

from conveyor.cli_common import client_of


@click.group()
def dead() -> None:
    """Dead letters: tasks that ran out of retries."""


@dead.command("list")
@click.argument("queue", default="default")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0))
@click.pass_context
def list_(ctx: click.Context, queue: str, limit: int, offset: int) -> None:
    """List QUEUE's dead letters, oldest first."""
    with client_of(ctx) as client:
        tasks, total = client.admin.list_dead_letters(queue, limit, offset)
    click.echo(f"{total} dead letters in {queue}")
    for t in tasks:
        click.echo(f"{t.id}  {t.name}  attempts={t.attempt}  {t.error.type}: {t.error.message[:80]}")


@dead.command()
@click.argument("task_id")
@click.pass_context
def show(ctx: click.Context, task_id: str) -> None:
    """Print a dead letter's full record, with its last error and traceback."""
    with client_of(ctx) as client:
        click.echo(json.dumps(MessageToDict(client.get_task(task_id), preserving_proto_field_name=True), indent=2))


@dead.command()
@click.argument("queue")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter of QUEUE.")
@click.pass_context
def requeue(ctx: click.Context, queue: str, task_ids: tuple[str, ...], everything: bool) -> None:
    """Send dead letters of QUEUE back for a fresh set of attempts."""
    if everything == bool(task_ids):
        raise click.UsageError("name the dead letters, or pass --all")
    with client_of(ctx) as client:
        click.echo(f"requeued {client.admin.requeue_dead_letters(queue, task_ids)}")


@dead.command()
@click.argument("queue")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter of QUEUE.")
@click.pass_context
def purge(ctx: click.Context, queue: str, task_ids: tuple[str, ...], everything: bool) -> None:
    """Delete dead letters of QUEUE for good."""
    if everything == bool(task_ids):
        raise click.UsageError("name the dead letters, or pass --all")
    with client_of(ctx) as client:
        click.echo(f"purged {client.admin.purge_dead_letters(queue, task_ids)}")
