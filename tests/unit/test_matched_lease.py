"""A sync-matched task's LeasedTask is built straight from its spec (dispatch._leased); it must
equal what claim.lua's record gives through records.to_leased for the same task."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits
from conveyor_scheduler.dispatch import _leased
from conveyor_scheduler.ids import new_task_ids
from conveyor_scheduler.records import to_leased
from conveyor_scheduler.routing import Router
from conveyor_scheduler.store import Submitted
from conveyor_scheduler.validation import check_spec

NOW = 1_790_000_000_000
SPECS = {
    "plain": task_pb2.TaskSpec(name="m.add", payload=b"[[1,2],{}]"),
    "everything": task_pb2.TaskSpec(
        name="m.charge", queue="payments", payload=b"\x00\x01binary", content_type="application/x-msgpack",
        priority=7, headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tenant": "acme"},
        timeout=Duration(seconds=90), soft_timeout=Duration(seconds=60, nanos=500_000_000),
        expires_at=Timestamp(seconds=NOW // 1000 + 3600, nanos=250_000_000), idempotency_key="order-17",
        retry=task_pb2.RetryPolicy(max_retries=4, initial_backoff=Duration(seconds=2), max_backoff=Duration(seconds=60),
                                   multiplier=3.0, no_jitter=True)),
    "retry defaults": task_pb2.TaskSpec(name="m.flaky", retry=task_pb2.RetryPolicy(max_retries=2)),
    "past eta": task_pb2.TaskSpec(name="m.late", eta=Timestamp(seconds=NOW // 1000 - 10)),
    "json said aloud": task_pb2.TaskSpec(name="m.json", content_type="application/json", payload=b"{}"),
}


def _as_claimed(task: object, sub: Submitted, worker: str) -> task_pb2.LeasedTask:
    """What the old path built: the hash fields submit.lua writes, plus the lease, through to_leased."""
    fields = task.fields  # type: ignore[attr-defined]
    rec = {str(k).encode(): v if isinstance(v, bytes) else str(v).encode()
           for k, v in zip(fields[::2], fields[1::2], strict=True)}
    rec.update({b"id": sub.id.encode(), b"st": b"3", b"at": b"1", b"lt": sub.lease_token.encode(),
                b"sa": str(sub.started_ms).encode(), b"dl": str(sub.deadline_ms).encode(),
                b"le": str(sub.lease_expires_ms).encode(), b"w": worker.encode()})
    return to_leased(sub.queue, rec)


@pytest.mark.parametrize("name", SPECS)
def test_a_matched_lease_equals_the_claimed_one(name: str) -> None:
    spec = SPECS[name]
    task = check_spec(spec, "tasks[0]", limits=Limits(), router=Router(), now_ms=NOW, default_timeout_ms=300_000,
                      default_window_ms=86_400_000)
    assert task.matchable
    (task_id,) = new_task_ids(3, 1, NOW)
    sub = Submitted(task_id, task.queue, task_pb2.TASK_STATE_ACTIVE, False, "c0ffee.1.1", NOW + 30_000,
                    NOW + task.timeout_ms, NOW)
    built = _leased(spec, task, sub, "worker-9")
    assert built == _as_claimed(task, sub, "worker-9")
    assert built.task.state == task_pb2.TASK_STATE_ACTIVE and built.task.attempt == 1
