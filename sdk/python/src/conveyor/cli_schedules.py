"""`conveyor schedules list|add|rm|pause|resume|show`: periodic tasks from the command line."""

from __future__ import annotations

import datetime as dt

import click
from google.protobuf.json_format import MessageToDict

from conveyor.cli_common import call_args, client_of, emit_json, json_option, table, when
from conveyor.options import SubmitOptions
from conveyor.schedules import build_schedule
from conveyor.v1 import schedule_service_pb2 as pb

STATES = {v.number: v.name.removeprefix("SCHEDULE_STATE_").lower() for v in pb.ScheduleState.DESCRIPTOR.values}


def _when(s: pb.Schedule) -> str:
    if s.HasField("cron"):
        return f"cron {s.cron.expression!r} {s.cron.time_zone or 'UTC'}"
    return f"every {s.interval.ToTimedelta().total_seconds():g}s"


def _row(s: pb.Schedule) -> tuple[str, ...]:
    return (s.id, STATES.get(s.state, "?"), _when(s), when(s.next_fire_time, s.HasField("next_fire_time")),
            when(s.last_fire_time, s.HasField("last_fire_time")), s.template.name)


def _line(s: pb.Schedule) -> str:
    sid, state, trigger, nxt, last, task = _row(s)
    return f"{sid}  {state}  {trigger}  next {nxt}  last {last}  -> {task}"


def _datetime(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@click.group()
def schedules() -> None:
    """Periodic tasks (beat): list, add, rm, pause, resume, show."""


@schedules.command("list")
@json_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List every schedule with its next and last fire times (UTC).

    --json prints {"beat_leader", "schedules": [Schedule messages as proto JSON]}."""
    with client_of(ctx) as client:
        found = client.schedules.list()
        leader = client.schedules.beat_leader()
    if as_json:
        emit_json({"beat_leader": leader, "schedules": [MessageToDict(s, preserving_proto_field_name=True)
                                                        for s in found]})
        return
    table("Schedules", ["ID", "STATE", "WHEN", "NEXT (UTC)", "LAST (UTC)", "TASK"], [_row(s) for s in found],
          f"{len(found)} schedule(s); beat leader: {leader or 'none'}")


@schedules.command()
@click.argument("schedule_id")
@click.argument("task")
@click.option("--every", type=float, default=None, help="Fire every this many seconds.")
@click.option("--cron", default=None, help='Cron expression, e.g. "*/5 * * * *" (6 fields: seconds first).')
@click.option("--tz", default=None, help="IANA time zone of --cron, e.g. Europe/Berlin (default UTC).")
@click.option("--args", "args_json", default="[]", help='Positional arguments as a JSON list, e.g. "[2, 3]".')
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--queue", "-q", default=None, help="Explicit queue (else routing decides).")
@click.option("--priority", "-p", type=int, default=None, help="0 (default) to 9, higher first.")
@click.option("--timeout", type=float, default=None, help="Hard time limit of one attempt, in seconds.")
@click.option("--max-retries", type=int, default=None)
@click.option("--catchup", type=click.Choice(["skip", "fire-once"]), default=None,
              help="Fire times missed during downtime: drop them, or fire once for all (default).")
@click.option("--start", default=None, help="No firing before this ISO 8601 time (UTC unless it has an offset).")
@click.option("--end", default=None, help="No firing after this ISO 8601 time.")
@click.option("--replace", is_flag=True, help="Update the schedule if it exists (else: error).")
@click.pass_context
def add(ctx: click.Context, schedule_id: str, task: str, every: float | None, cron: str | None, tz: str | None,
        args_json: str, kwargs_json: str, queue: str | None, priority: int | None, timeout: float | None,
        max_retries: int | None, catchup: str | None, start: str | None, end: str | None, replace: bool) -> None:
    """Add schedule SCHEDULE_ID that submits TASK (--every or --cron)."""
    if (every is None) == (cron is None):
        raise click.UsageError("give exactly one of --every and --cron")
    args, kwargs = call_args(args_json, kwargs_json)
    try:
        msg = build_schedule(schedule_id, task, args, kwargs, every=every, cron=cron, tz=tz,
                             start=_datetime(start, "--start"), end=_datetime(end, "--end"),
                             catchup="fire_once" if catchup == "fire-once" else catchup,  # type: ignore[arg-type]
                             options=SubmitOptions(queue=queue, priority=priority, timeout=timeout,
                                                   max_retries=max_retries))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with client_of(ctx) as client:
        made = client.schedules.update(msg, allow_missing=True) if replace else client.schedules.create(msg)
    click.echo(_line(made))


@schedules.command()
@click.argument("schedule_id")
@click.pass_context
def rm(ctx: click.Context, schedule_id: str) -> None:
    """Delete SCHEDULE_ID; it never fires again."""
    with client_of(ctx) as client:
        client.schedules.delete(schedule_id)
    click.echo(f"deleted {schedule_id}")


@schedules.command()
@click.argument("schedule_id")
@click.pass_context
def pause(ctx: click.Context, schedule_id: str) -> None:
    """Stop firing SCHEDULE_ID until it is resumed."""
    with client_of(ctx) as client:
        click.echo(_line(client.schedules.pause(schedule_id)))


@schedules.command()
@click.argument("schedule_id")
@click.pass_context
def resume(ctx: click.Context, schedule_id: str) -> None:
    """Fire SCHEDULE_ID again from its next fire time (the paused time is not caught up)."""
    with client_of(ctx) as client:
        click.echo(_line(client.schedules.resume(schedule_id)))


@schedules.command()
@click.argument("schedule_id")
@click.pass_context
def show(ctx: click.Context, schedule_id: str) -> None:
    """Print SCHEDULE_ID as JSON."""
    with client_of(ctx) as client:
        emit_json(MessageToDict(client.schedules.get(schedule_id), preserving_proto_field_name=True))


@schedules.command()
@click.argument("schedule_id")
@click.pass_context
def fire(ctx: click.Context, schedule_id: str) -> None:
    """Submit SCHEDULE_ID's task once, now, outside its plan (its next fire time stays); prints the task id."""
    with client_of(ctx) as client:
        click.echo(client.schedules.fire(schedule_id))
