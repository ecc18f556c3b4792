"""`conveyor tasks` (search), `conveyor retry` and `conveyor cancel` (one task, or every match of a
filter): AdminService's ListTasks, RetryTasks and CancelTasks, for operators."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any

import click
from google.protobuf.json_format import MessageToDict

from conveyor.admin_tasks import BulkResult
from conveyor.cli_common import (
    When,
    client_of,
    emit_json,
    json_option,
    known_queue,
    table,
    when,
)
from conveyor.common import TaskState
from conveyor.v1 import task_pb2

MAX_PAGE = 1000
"""ListTasks' largest page."""
ANY_STATE = [s for s in TaskState if s is not TaskState.UNSPECIFIED]
CANCELLABLE = [TaskState.SCHEDULED, TaskState.QUEUED, TaskState.ACTIVE]
RETRYABLE = [TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED, TaskState.EXPIRED]


def _names(states: Sequence[TaskState]) -> list[str]:
    return [s.name.lower() for s in states]


def filter_options(states: Sequence[TaskState]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The task filter's options, handed to the command as one `flt` dict of `client.admin` keywords.

    --name and --name-prefix together are a usage error; so is --until before --since."""
    options = [
        click.option("--queue", "-q", default=None, help="Only this queue (default: every queue)."),
        click.option("--state", "states", multiple=True, type=click.Choice(_names(states), case_sensitive=False),
                     help="Only tasks in this state; repeat for several."),
        click.option("--name", default=None, help="Only tasks of this exact name."),
        click.option("--name-prefix", default=None, help="Only tasks whose name starts with this."),
        click.option("--worker", "worker_id", default=None, help="Only tasks last leased by this worker id."),
        click.option("--since", type=When(), default=None,
                     help="Submitted at or after: a duration ago (30s, 15m, 1h, 2d) or an ISO 8601 time (UTC)."),
        click.option("--until", type=When(), default=None, help="Submitted before; as --since."),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            flt = {k: kwargs.pop(k) for k in ("queue", "states", "name", "name_prefix", "worker_id", "since", "until")}
            if flt["name"] and flt["name_prefix"]:
                raise click.UsageError("give --name or --name-prefix, not both")
            if flt["since"] and flt["until"] and flt["until"] <= flt["since"]:
                raise click.UsageError("--until must be after --since")
            return command(*args, flt=flt, **kwargs)

        for option in reversed(options):
            run = option(run)
        return run

    return decorate


def filter_json(flt: dict[str, Any]) -> dict[str, Any]:
    """The filter as given, for scripts: times resolved to ISO 8601 UTC, unset fields left out."""
    out = {k: v for k, v in flt.items() if v}
    for k in ("since", "until"):
        if k in out:
            out[k] = out[k].astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if "states" in out:
        out["states"] = [s.lower() for s in out["states"]]
    return out


def listed_json(t: task_pb2.Task) -> dict[str, Any]:
    """A listed task for scripts: the record's proto JSON (listings carry no payload or result bytes)."""
    return MessageToDict(t, preserving_proto_field_name=True)


@click.command()
@filter_options(ANY_STATE)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1),
              help="Show at most this many (pages are followed until then).")
@json_option
@click.pass_context
def tasks(ctx: click.Context, flt: dict[str, Any], limit: int, as_json: bool) -> None:
    """Search tasks, newest first, by queue, state, name, worker and submit time.

    Every task is found from its submit until its record expires. --json prints {"filter",
    "tasks": [records as proto JSON, without payloads], "more": whether the limit cut the list}."""
    found: list[task_pb2.Task] = []
    cursor = ""
    with known_queue(), client_of(ctx) as client:
        while len(found) < limit:
            page = client.admin.list_tasks(**flt, page_size=min(limit - len(found), MAX_PAGE), cursor=cursor)
            found += page.tasks
            cursor = page.next_cursor
            if not cursor:
                break
    if as_json:
        emit_json({"filter": filter_json(flt), "tasks": [listed_json(t) for t in found], "more": bool(cursor)})
        return
    rows = [(t.id, t.name, t.queue, TaskState(t.state).name, str(t.attempt),
             when(t.created_at, t.HasField("created_at")), t.worker_id or "-", t.error.type or "") for t in found]
    more = f"; more match (--limit {limit} reached)" if cursor else ""
    table("Tasks", ["ID", "TASK", "QUEUE", "STATE", "ATTEMPT", "CREATED (UTC)", "WORKER", "ERROR"], rows,
          f"{len(rows)} tasks, newest first{more}")


def _bulk(as_json: bool, flt: dict[str, Any], result: BulkResult, done: str, text: str) -> None:
    if as_json:
        counts = {"cancelled": result.cancelled, "stopping": result.stopping} if done == "cancel" else {
            "retried": result.retried}
        emit_json({"filter": filter_json(flt), "dry_run": result.dry_run, "matched": result.matched, **counts})
    elif result.dry_run:
        click.echo(f"matched {result.matched}, would {done} {result.matched} (dry run: nothing changed)")
    else:
        click.echo(f"matched {result.matched}, {text}")


@click.command()
@filter_options(RETRYABLE)
@click.option("--dry-run", is_flag=True, help="Count the matches, change nothing.")
@json_option
@click.pass_context
def retry(ctx: click.Context, flt: dict[str, Any], dry_run: bool, as_json: bool) -> None:
    """Run every matching failed, dead, cancelled or expired task again (same id, fresh attempts).

    --state is required. E.g. `conveyor retry --state failed --name charge --since 1h --dry-run`.
    --json prints {"filter", "dry_run", "matched", "retried"}."""
    if not flt["states"]:
        raise click.UsageError(f"--state is required ({', '.join(_names(RETRYABLE))})")
    with known_queue(), client_of(ctx) as client:
        result = client.admin.retry_tasks(**flt, dry_run=dry_run)
    _bulk(as_json, flt, result, "retry", f"retried {result.retried}")


@click.command()
@click.argument("task_id", required=False)
@filter_options(CANCELLABLE)
@click.option("--dry-run", is_flag=True, help="With filters: count the matches, change nothing.")
@json_option
@click.pass_context
def cancel(ctx: click.Context, task_id: str | None, flt: dict[str, Any], dry_run: bool, as_json: bool) -> None:
    """Cancel TASK_ID, or every task matching the filters (then --state is required).

    Waiting tasks end CANCELLED; a running one is stopped through its worker. E.g. `conveyor
    cancel --queue emails --state queued --dry-run`. --json prints {"id", "state"} for one task,
    {"filter", "dry_run", "matched", "cancelled", "stopping"} for a filter."""
    filtered = any(flt.values())
    if bool(task_id) == (filtered or dry_run):
        raise click.UsageError("give a TASK_ID, or filters (with --state) to cancel every match; not both")
    if not task_id and not flt["states"]:
        raise click.UsageError(f"cancelling by filter needs --state ({', '.join(_names(CANCELLABLE))})")
    with known_queue(), client_of(ctx) as client:
        if task_id:
            state = client.cancel(task_id).name
            if as_json:
                emit_json({"id": task_id, "state": state})
            else:
                click.echo(state)
            return
        result = client.admin.cancel_tasks(**flt, dry_run=dry_run)
    _bulk(as_json, flt, result, "cancel", f"cancelled {result.cancelled}, stopping {result.stopping}")
