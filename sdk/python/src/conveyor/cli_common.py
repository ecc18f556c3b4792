"""Helpers every `conveyor` subcommand shares (kept apart from cli.py, which imports the groups):
the client, argument parsing, and the two outputs: rich tables for people, `--json` for scripts."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from conveyor.client import Client
from conveyor.serialization import JSON, decode_call, decode_result
from conveyor.v1 import task_pb2

F = TypeVar("F", bound=Callable[..., Any])
HEX_HEAD = 32
"""Bytes of a non-JSON payload or result shown (as hex) instead of the whole."""


def client_of(ctx: click.Context) -> Client:
    """A client for the scheduler named by the root command's --scheduler."""
    return Client(ctx.find_root().obj["scheduler"])


def call_args(args_json: str, kwargs_json: str) -> tuple[list[Any], dict[str, Any]]:
    """Parses --args (a JSON list) and --kwargs (a JSON object)."""
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise click.BadParameter("--args takes a JSON list and --kwargs a JSON object")
    return args, kwargs


def json_option(fn: F) -> F:
    """The `--json` flag of every listing: one JSON document on stdout instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")(fn)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


PIPED_WIDTH = 200
"""Width of a table written to a pipe or file (not the terminal's $COLUMNS): wide enough not
to fold ids and error lines that scripts may grep."""


def console() -> Console:
    """Tables go to stdout, without colour codes when it is not a terminal (piped, captured)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPED_WIDTH)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> None:
    """Prints a table. Cells are plain text, so a value like "[bold]" is shown, not styled."""
    out = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left")
    for i, column in enumerate(columns):
        out.add_column(column, overflow="fold", no_wrap=i == 0)  # the first column is the id: never folded
    for row in rows:
        out.add_row(*(Text(cell) for cell in row))
    console().print(out)


def when(ts: Timestamp, present: bool) -> str:
    """A time in UTC, ISO 8601 to the millisecond, or "-"."""
    if not present:
        return "-"
    return str(ts.ToDatetime(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def raw(data: bytes, content_type: str) -> dict[str, Any]:
    """What is shown of bytes that are not JSON: their type, size and first bytes in hex."""
    return {"content_type": content_type or JSON, "size": len(data), "hex": data[:HEX_HEAD].hex()}


def decoded_payload(task: task_pb2.Task) -> dict[str, Any]:
    """{"args", "kwargs"} of a JSON payload, else {"payload": raw(...)}."""
    try:
        args, kwargs = decode_call(task.payload, task.content_type)
    except ValueError:  # another content type, or not the payload rule's JSON
        return {"payload": raw(task.payload, task.content_type)}
    return {"args": args, "kwargs": kwargs}


def decoded_result(task: task_pb2.Task) -> dict[str, Any] | None:
    """{"content_type", "value"} of a JSON result, raw(...) otherwise, None without one."""
    if not task.HasField("result"):
        return None
    ct = task.result.content_type or JSON
    if ct != JSON:
        return raw(task.result.data, ct)
    try:
        return {"content_type": ct, "value": decode_result(task.result.data, ct)}
    except ValueError:
        return raw(task.result.data, ct)


def task_json(task: task_pb2.Task) -> dict[str, Any]:
    """A task record for scripts: the proto's JSON, with payload and result decoded."""
    out = MessageToDict(task, preserving_proto_field_name=True)
    out.pop("payload", None)
    out.pop("content_type", None)
    out.update(decoded_payload(task))
    result = decoded_result(task)
    out.pop("result", None)
    if result is not None:
        out["result"] = result
    return out
