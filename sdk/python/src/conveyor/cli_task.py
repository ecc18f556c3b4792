"""`conveyor task ID`: one task's record, its arguments and result decoded (not base64)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from conveyor.cli_common import (
    client_of,
    console,
    decoded_payload,
    decoded_result,
    emit_json,
    json_option,
    task_json,
    when,
)
from conveyor.common import TaskState
from conveyor.v1 import task_pb2


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _bytes(shown: dict[str, Any]) -> str:
    more = "..." if shown["size"] > len(shown["hex"]) // 2 else ""
    return f"{shown['content_type']}, {shown['size']} bytes: {shown['hex']}{more}"


def _rows(t: task_pb2.Task) -> list[tuple[str, str]]:
    """(label, text) pairs of the human view, in reading order."""
    rows = [("id", t.id), ("task", t.name), ("queue", t.queue), ("state", TaskState(t.state).name),
            ("priority", str(t.priority)), ("attempt", f"{t.attempt} (max retries {t.retry.max_retries})"),
            ("worker", t.worker_id or "-")]
    if t.workflow_id:
        rows.append(("workflow", f"{t.workflow_id}, node {t.workflow_node} (`conveyor workflow {t.workflow_id}`)"))
    rows += [(label, when(getattr(t, field), t.HasField(field))) for label, field in (
        ("created", "created_at"), ("eta", "eta"), ("started", "started_at"), ("finished", "finished_at"),
        ("expires", "expires_at"))]
    if t.waiting_reason:
        rows.append(("waiting", t.waiting_reason))
    payload = decoded_payload(t)
    if "payload" in payload:
        rows.append(("payload", _bytes(payload["payload"])))
    else:
        rows += [("args", _pretty(payload["args"])), ("kwargs", _pretty(payload["kwargs"]))]
    result = decoded_result(t)
    if result is not None:
        rows.append(("result", _pretty(result["value"]) if "value" in result else _bytes(result)))
    if t.error.type or t.error.message:
        rows.append(("error", f"{t.error.type}: {t.error.message}"))
    if t.error.traceback:
        rows.append(("traceback", t.error.traceback.rstrip()))
    return rows


@click.command()
@click.argument("task_id")
@json_option
@click.pass_context
def task(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show TASK_ID: state, attempt, worker, times, arguments, result, error, earlier attempts.

    JSON arguments and results are decoded and pretty-printed; other content types show
    their size and first bytes in hex. --json prints the record as proto JSON, with "args"
    and "kwargs" (or "payload": {content_type, size, hex}) in place of the payload and
    "result" as {content_type, value} (or {content_type, size, hex})."""
    with client_of(ctx) as client:
        record = client.get_task(task_id)
    if as_json:
        emit_json(task_json(record))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in _rows(record):
        grid.add_row(label, Text(value))
    console().print(grid)
    if record.attempts:
        console().print(_attempts(record))


def _attempts(t: task_pb2.Task) -> Table:
    """The attempts that failed or were handed back (Task.attempts), oldest first."""
    table = Table(title="earlier attempts (failed or handed back; the last 16)", title_justify="left")
    for column in ("attempt", "worker", "started", "ended", "outcome"):
        table.add_column(column, overflow="fold")
    for a in t.attempts:
        outcome = f"{a.error.type}: {a.error.message}" if a.HasField("error") else "handed back unfinished"
        table.add_row(str(a.attempt), a.worker_id or "-", when(a.started_at, a.HasField("started_at")),
                      when(a.ended_at, a.HasField("ended_at")), outcome)
    return table
