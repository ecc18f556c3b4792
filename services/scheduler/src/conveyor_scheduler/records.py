"""Conversion of task hashes (see lua/lib.lua for the field names) to protobuf messages."""

from __future__ import annotations

import json

from conveyor.v1 import task_pb2, task_service_pb2
from conveyor_scheduler.ids import parse_task_id
from conveyor_scheduler.store import Record

TERMINAL = frozenset({4, 5, 6, 7, 8})
FAILED_STATES = frozenset({5, 8})


def _int(rec: Record, field: bytes, default: int = 0) -> int:
    raw = rec.get(field)
    return int(raw) if raw is not None else default


def _text(rec: Record, field: bytes) -> str:
    raw = rec.get(field)
    return raw.decode() if raw else ""


def set_ms(ts: object, ms: int) -> None:
    ts.seconds, ts.nanos = divmod(ms, 1000)  # type: ignore[attr-defined]
    ts.nanos *= 1_000_000  # type: ignore[attr-defined]


def to_task(task_id: str, queue: str, rec: Record) -> task_pb2.Task:
    """The full Task message of one task hash."""
    state = _int(rec, b"st")
    task = task_pb2.Task(
        id=task_id, name=_text(rec, b"n"), queue=queue, payload=rec.get(b"d", b""),
        content_type=_text(rec, b"ct") or "application/json", priority=_int(rec, b"p"),
        state=state, attempt=_int(rec, b"at"), worker_id=_text(rec, b"w"),
        idempotency_key=_text(rec, b"k"),
    )
    if b"h" in rec:
        task.headers.update(json.loads(rec[b"h"]))
    set_ms(task.created_at, parse_task_id(task_id)[0])
    for field, ts in ((b"eta", task.eta), (b"x", task.expires_at), (b"sa", task.started_at), (b"fa", task.finished_at)):
        if field in rec:
            set_ms(ts, int(rec[field]))
    task.timeout.FromMilliseconds(_int(rec, b"to"))
    if b"st2" in rec:
        task.soft_timeout.FromMilliseconds(_int(rec, b"st2"))
    if b"rl" in rec:
        task.rate_limit = format_rate(_text(rec, b"rl"))
    task.cancel_requested = rec.get(b"cx") == b"1"
    if b"mr" in rec:
        task.retry.max_retries = _int(rec, b"mr")
        if b"ib" in rec:
            task.retry.initial_backoff.FromMilliseconds(_int(rec, b"ib"))
        if b"mb" in rec:
            task.retry.max_backoff.FromMilliseconds(_int(rec, b"mb"))
        if b"mu" in rec:
            task.retry.multiplier = float(rec[b"mu"])
        task.retry.no_jitter = rec.get(b"nj") == b"1"
    if state == 4:
        task.result.data = rec.get(b"r", b"")
        task.result.content_type = _text(rec, b"rc") or "application/json"
    if b"et" in rec:
        task.error.type, task.error.message, task.error.traceback = (
            _text(rec, b"et"), _text(rec, b"em"), _text(rec, b"eb"))
    return task


def format_rate(stored: str) -> str:
    """ "100/1000" (count/period-ms, as stored) back to "100/s"."""
    count, _, period = stored.partition("/")
    return f"{count}/" + {"1000": "s", "60000": "m", "3600000": "h"}.get(period, f"{period}ms")


def to_leased(queue: str, rec: Record) -> task_pb2.LeasedTask:
    """A LeasedTask for a record returned by claim.lua (it carries its id)."""
    task_id = rec[b"id"].decode()
    leased = task_pb2.LeasedTask(task=to_task(task_id, queue, rec), lease_token=_text(rec, b"lt"))
    set_ms(leased.lease_expires_at, _int(rec, b"le"))
    set_ms(leased.deadline, _int(rec, b"dl"))
    return leased


def to_result(task_id: str, rec: Record) -> task_service_pb2.GetResultResponse:
    state = _int(rec, b"st")
    resp = task_service_pb2.GetResultResponse(task_id=task_id, state=state, attempt=_int(rec, b"at"))
    if state == 4:
        resp.result.data = rec.get(b"r", b"")
        resp.result.content_type = _text(rec, b"rc") or "application/json"
    elif state in FAILED_STATES or (state in TERMINAL and b"et" in rec):
        resp.error.type, resp.error.message, resp.error.traceback = (
            _text(rec, b"et"), _text(rec, b"em"), _text(rec, b"eb"))
    if b"fa" in rec:
        set_ms(resp.finished_at, int(rec[b"fa"]))
    return resp
