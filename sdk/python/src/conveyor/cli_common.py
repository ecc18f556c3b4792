"""Helpers every `conveyor` subcommand shares (kept apart from cli.py, which imports the groups):
the client, argument parsing, and the two outputs: rich tables for people, `--json` for scripts."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from conveyor.client import Client
from conveyor.errors import NotFound
from conveyor.serialization import JSON, decode_call, decode_result
from conveyor.v1 import task_pb2

F = TypeVar("F", bound=Callable[..., Any])
HEX_HEAD = 32
"""Bytes of a non-JSON payload or result shown (as hex) instead of the whole."""


def client_of(ctx: click.Context) -> Client:
    """A client for the scheduler named by the root command's --scheduler, with its --token and --tls-*."""
    obj = ctx.find_root().obj
    return Client(obj["scheduler"], tls=obj["tls"], token=obj["token"])


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


def make_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> Table:
    """A table of plain-text cells, so a value like "[bold]" is shown, not styled."""
    out = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left")
    for i, column in enumerate(columns):
        out.add_column(column, overflow="fold", no_wrap=i == 0)  # the first column is the id: never folded
    for row in rows:
        out.add_row(*(Text(cell) for cell in row))
    return out


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> None:
    """Prints a make_table table."""
    console().print(make_table(title, columns, rows, caption))


@contextmanager
def known_queue() -> Iterator[None]:
    """A queue the scheduler never knew (NOT_FOUND from a queue call) is a bad argument: exit 2
    as for a usage error, with a hint, where another failed call exits 1."""
    try:
        yield
    except NotFound as exc:
        click.echo(f"error: NOT_FOUND: {exc} (`conveyor queues` lists the queues)", err=True)
        sys.exit(2)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> float:
    """Seconds in "30s", "15m", "1h", "2d", "1w" or a sum like "1h30m"; ValueError otherwise."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h, 2d or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", compact))


def parse_when(text: str, now: dt.datetime) -> dt.datetime:
    """A time option: a duration before `now` ("1h": an hour ago) or an ISO 8601 time (UTC unless
    it says otherwise, as every time the CLI prints is UTC)."""
    try:
        return now - dt.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30s, 15m, 1h, 2d) nor an ISO 8601 time "
                         "(2024-05-01T12:00:00Z)") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


class When(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2; we allow 8.1
    """--since/--until: parse_when against the time the command started; a bad value exits 2."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_when(str(value), dt.datetime.now(dt.UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def seconds_text(seconds: float | None) -> str:
    """A duration for people: "850ms", "4.2s", "3m05s", "2h10m", "3d04h"; "-" for None."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def rate_text(per_second: float) -> str:
    """A rate per second with about two significant digits: "0", "<0.01", "0.35", "12.5", "840"."""
    if per_second <= 0:
        return "0"
    if per_second < 0.01:
        return "<0.01"
    if per_second < 10:
        return f"{per_second:.2f}"
    return f"{per_second:.1f}" if per_second < 100 else f"{per_second:.0f}"


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
