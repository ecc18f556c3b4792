"""Conversion of task hashes (keys.TASK_FIELDS lists the fields) to protobuf messages."""

from __future__ import annotations

import json

from google.protobuf import duration_pb2, timestamp_pb2

from conveyor.v1 import task_pb2, task_service_pb2
from conveyor_scheduler.ids import created_ms
from conveyor_scheduler.store import Record
from conveyor_scheduler.validation import JSON_TYPE

TERMINAL = frozenset({4, 5, 6, 7, 8})
FAILED_STATES = frozenset({5, 8})


def _int(rec: Record, field: bytes, default: int = 0) -> int:
    raw = rec.get(field)
    return int(raw) if raw is not None else default


def _text(rec: Record, field: bytes) -> str:
    raw = rec.get(field)
    return raw.decode() if raw else ""


def set_ms(ts: timestamp_pb2.Timestamp, ms: int) -> None:
    seconds, millis = divmod(ms, 1000)
    ts.seconds, ts.nanos = seconds, millis * 1_000_000


def set_duration_ms(d: duration_pb2.Duration, ms: int) -> None:
    """Duration.FromMilliseconds without its Python-level checks (ms is never negative here)."""
    seconds, millis = divmod(ms, 1000)
    d.seconds, d.nanos = seconds, millis * 1_000_000


def to_task(task_id: str, queue: str, rec: Record) -> task_pb2.Task:
    """The full Task message of one task hash, with its attempt history."""
    task = task_pb2.Task()
    fill_task(task, task_id, queue, rec)
    if (raw := rec.get(b"ah")) is not None:
        add_attempts(task, raw)
    return task


def add_attempts(task: task_pb2.Task, raw: bytes) -> None:
    """Task.attempts from field 'ah' (lib.lua's attempts_with). Leased tasks go without it."""
    for entry in json.loads(raw):
        record = task.attempts.add(attempt=int(entry.get("a", 0)), worker_id=str(entry.get("w", "")))
        set_ms(record.started_at, int(entry.get("s", 0)))
        set_ms(record.ended_at, int(entry.get("e", 0)))
        if "t" in entry:
            record.error.type, record.error.message, record.error.traceback = (
                str(entry["t"]), str(entry.get("m", "")), str(entry.get("b", "")))


def fill_task(task: task_pb2.Task, task_id: str, queue: str, rec: Record) -> None:
    """Sets `task` from one task hash. Dispatch runs this for every claimed task, so it sets
    fields one by one: upb copies a sub-message passed to a constructor, which costs twice as much."""
    get = rec.get
    state = int(get(b"st", 0))
    task.id, task.queue, task.state = task_id, queue, state
    if (raw := get(b"n")) is not None:
        task.name = raw.decode()
    if (raw := get(b"d")) is not None:
        task.payload = raw
    task.content_type = get(b"ct", b"").decode() or JSON_TYPE
    if (raw := get(b"p")) is not None:
        task.priority = int(raw)
    if (raw := get(b"at")) is not None:
        task.attempt = int(raw)
    if (raw := get(b"w")) is not None:
        task.worker_id = raw.decode()
    if (raw := get(b"k")) is not None:
        task.idempotency_key = raw.decode()
    if (raw := get(b"h")) is not None:
        task.headers.update(json.loads(raw))
    set_ms(task.created_at, created_ms(task_id))
    if (raw := get(b"eta")) is not None:
        set_ms(task.eta, int(raw))
    if (raw := get(b"x")) is not None:
        set_ms(task.expires_at, int(raw))
    if (raw := get(b"sa")) is not None:
        set_ms(task.started_at, int(raw))
    if (raw := get(b"fa")) is not None:
        set_ms(task.finished_at, int(raw))
    set_duration_ms(task.timeout, int(get(b"to", 0)))
    if (raw := get(b"st2")) is not None:
        set_duration_ms(task.soft_timeout, int(raw))
    if (raw := get(b"rl")) is not None:
        task.rate_limit = format_rate(raw.decode())
    if (raw := get(b"wf")) is not None:
        task.workflow_id, task.workflow_node = raw.decode(), get(b"wn", b"").decode()
    if get(b"cx") == b"1":
        task.cancel_requested = True
    if get(b"pk") == b"1" and state == 2:
        task.waiting_reason = (f"parked: the workers that took from queue {queue!r} do not declare task name "
                               f"{task.name!r}; it waits for a worker that does")
    if (raw := get(b"mr")) is not None:
        retry = task.retry
        retry.max_retries = int(raw)
        if (raw := get(b"ib")) is not None:
            set_duration_ms(retry.initial_backoff, int(raw))
        if (raw := get(b"mb")) is not None:
            set_duration_ms(retry.max_backoff, int(raw))
        if (raw := get(b"mu")) is not None:
            retry.multiplier = float(raw)
        retry.no_jitter = get(b"nj") == b"1"
    if state == 4:
        task.result.data = get(b"r", b"")
        task.result.content_type = get(b"rc", b"").decode() or JSON_TYPE
    if b"et" in rec:
        task.error.type, task.error.message, task.error.traceback = (
            _text(rec, b"et"), _text(rec, b"em"), _text(rec, b"eb"))


def format_rate(stored: str) -> str:
    """ "100/1000" (count/period-ms, as stored) back to "100/s"."""
    count, _, period = stored.partition("/")
    return f"{count}/" + {"1000": "s", "60000": "m", "3600000": "h"}.get(period, f"{period}ms")


def to_leased(queue: str, rec: Record) -> task_pb2.LeasedTask:
    """A LeasedTask for a record returned by claim.lua (it carries its id)."""
    leased = task_pb2.LeasedTask(lease_token=_text(rec, b"lt"))
    fill_task(leased.task, rec[b"id"].decode(), queue, rec)
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
