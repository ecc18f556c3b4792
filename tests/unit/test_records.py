"""records.to_task / to_leased: every task-hash field lands in its Task field, and absent
fields stay unset (they are built field by field for speed, so each one is pinned here)."""

from __future__ import annotations

import json

from google.protobuf import duration_pb2, timestamp_pb2

from conveyor.v1 import task_pb2
from conveyor_scheduler.ids import new_task_id
from conveyor_scheduler.records import to_leased, to_task

CREATED = 1_700_000_000_123
TASK_ID = new_task_id(4, CREATED)


def _ts(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def _d(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def test_every_field() -> None:
    rec = {
        b"st": b"4", b"n": b"jobs.add", b"d": b"[1, 2]", b"ct": b"application/x-msgpack",
        b"h": json.dumps({"traceparent": "00-ab-cd-01"}).encode(), b"p": b"7", b"at": b"2", b"to": b"1500",
        b"eta": b"1700000001000", b"x": b"1700000009999", b"sa": b"1700000002001", b"fa": b"1700000003002",
        b"w": b"worker-1", b"k": b"once", b"st2": b"250", b"rl": b"5/60000", b"cx": b"1", b"mr": b"3",
        b"ib": b"1001", b"mb": b"60000", b"mu": b"1.5", b"nj": b"1", b"r": b"3", b"rc": b"text/plain",
        b"et": b"ValueError", b"em": b"bad", b"eb": b"Traceback",
    }
    assert to_task(TASK_ID, "q", rec) == task_pb2.Task(
        id=TASK_ID, name="jobs.add", queue="q", payload=b"[1, 2]", content_type="application/x-msgpack",
        headers={"traceparent": "00-ab-cd-01"}, priority=7, state=task_pb2.TASK_STATE_SUCCEEDED, attempt=2,
        retry=task_pb2.RetryPolicy(max_retries=3, initial_backoff=_d(1001), max_backoff=_d(60000), multiplier=1.5,
                                   no_jitter=True),
        timeout=_d(1500), created_at=_ts(CREATED), eta=_ts(1_700_000_001_000), expires_at=_ts(1_700_000_009_999),
        started_at=_ts(1_700_000_002_001), finished_at=_ts(1_700_000_003_002), worker_id="worker-1",
        result=task_pb2.TaskResult(data=b"3", content_type="text/plain"),
        error=task_pb2.TaskError(type="ValueError", message="bad", traceback="Traceback"),
        idempotency_key="once", soft_timeout=_d(250), rate_limit="5/m", cancel_requested=True,
    )


def test_a_bare_record_sets_only_the_defaults() -> None:
    task = to_task(TASK_ID, "q", {b"st": b"2"})
    assert task == task_pb2.Task(id=TASK_ID, queue="q", state=task_pb2.TASK_STATE_QUEUED,
                                 content_type="application/json", created_at=_ts(CREATED), timeout=_d(0))
    for field in ("retry", "eta", "expires_at", "started_at", "finished_at", "result", "error", "soft_timeout"):
        assert not task.HasField(field), field
    assert task.HasField("timeout")


def test_leased_record() -> None:
    rec = {b"id": TASK_ID.encode(), b"st": b"3", b"n": b"jobs.add", b"d": b"[]", b"at": b"1", b"to": b"300000",
           b"sa": b"1700000002001", b"w": b"w1", b"lt": b"tok.1", b"le": b"1700000032001", b"dl": b"1700000302001"}
    leased = to_leased("q", rec)
    assert leased.lease_token == "tok.1"
    assert leased.lease_expires_at == _ts(1_700_000_032_001)
    assert leased.deadline == _ts(1_700_000_302_001)
    assert leased.task == to_task(TASK_ID, "q", rec)
    assert leased.task.retry.max_retries == 0 and not leased.task.HasField("retry")
