"""validation.check_spec and friends: field paths in errors, and the task-hash fields produced."""

from __future__ import annotations

import json

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.ids import new_task_id
from conveyor_scheduler.routing import Router
from conveyor_scheduler.validation import (
    MAX_DELAY_MS,
    NewTask,
    check_name,
    check_queue,
    check_spec,
    check_task_id,
    duration_ms,
    timestamp_ms,
)

NOW = 1_700_000_000_000  # ms
DEFAULT_TIMEOUT = 300_000
DEFAULT_WINDOW = 86_400_000
Spec = task_pb2.TaskSpec


def check(spec: task_pb2.TaskSpec, *, limits: Limits | None = None, router: Router | None = None,
          at: str = "tasks[0]") -> NewTask:
    return check_spec(spec, at, limits=limits or Limits(), router=router or Router(), now_ms=NOW,
                      default_timeout_ms=DEFAULT_TIMEOUT, default_window_ms=DEFAULT_WINDOW)


def as_dict(task: NewTask) -> dict[str, object]:
    assert len(task.fields) % 2 == 0
    return dict(zip(task.fields[::2], task.fields[1::2], strict=True))


def fails(spec: task_pb2.TaskSpec, field: str, **kwargs: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        check(spec, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    return info.value


def ts(ms: int) -> Timestamp:
    t = Timestamp()
    t.FromMilliseconds(ms)
    return t


def dur(ms: int) -> Duration:
    d = Duration()
    d.FromMilliseconds(ms)
    return d


# -- what a valid spec becomes ------------------------------------------------------------


def test_minimal_spec() -> None:
    task = check(Spec(name="t.add"))
    assert (task.queue, task.priority, task.due_ms, task.idempotency_key, task.idempotency_window_ms) == (
        "default", 0, 0, "", 0)
    assert task.fields == ["n", "t.add", "d", b"", "to", DEFAULT_TIMEOUT]


def test_routing_applies_only_without_an_explicit_queue() -> None:
    router = Router([("emails.*", "emails")])
    assert check(Spec(name="emails.send"), router=router).queue == "emails"
    assert check(Spec(name="emails.send", queue="urgent"), router=router).queue == "urgent"
    assert check(Spec(name="other"), router=router).queue == "default"


def test_full_spec_fields() -> None:
    spec = Spec(
        name="billing.charge", queue="billing", payload=b'{"args":[1]}', content_type="application/x-msgpack",
        headers={"traceparent": "00-abc-def-01"}, priority=7, eta=ts(NOW + 5_000), expires_at=ts(NOW + 60_000),
        timeout=Duration(seconds=30, nanos=500_000_000),
        retry=task_pb2.RetryPolicy(max_retries=3, initial_backoff=dur(100), max_backoff=dur(2_000),
                                   multiplier=1.5, no_jitter=True),
        idempotency_key="order-42", idempotency_window=Duration(seconds=60),
    )
    task = check(spec)
    assert task.queue == "billing"
    assert task.priority == 7
    assert task.due_ms == NOW + 5_000
    assert task.idempotency_key == "order-42"
    assert task.idempotency_window_ms == 60_000
    f = as_dict(task)
    assert f == {
        "n": "billing.charge", "d": b'{"args":[1]}', "ct": "application/x-msgpack",
        "h": json.dumps({"traceparent": "00-abc-def-01"}, separators=(",", ":")), "p": 7, "to": 30_500,
        "eta": NOW + 5_000, "x": NOW + 60_000, "mr": 3, "ib": 100, "mb": 2_000, "mu": "1.5", "nj": 1,
        "k": "order-42",
    }


def test_json_content_type_is_not_stored() -> None:
    assert "ct" not in as_dict(check(Spec(name="t", content_type="application/json")))


def test_countdown_sets_due() -> None:
    task = check(Spec(name="t", countdown=Duration(seconds=10)))
    assert task.due_ms == NOW + 10_000
    assert as_dict(task)["eta"] == NOW + 10_000


def test_zero_countdown_runs_now() -> None:
    task = check(Spec(name="t", countdown=Duration()))
    assert task.due_ms == NOW
    assert "eta" not in as_dict(task)


def test_eta_and_countdown_share_one_maximum() -> None:
    check(Spec(name="t", eta=ts(NOW + MAX_DELAY_MS)))
    check(Spec(name="t", countdown=dur(MAX_DELAY_MS)))
    assert MAX_DELAY_MS == 360 * 86_400_000
    err = fails(Spec(name="t", eta=ts(NOW + MAX_DELAY_MS + 1)), "tasks[0].eta")
    assert "at most 360 days in the future" in str(err)
    fails(Spec(name="t", countdown=dur(MAX_DELAY_MS + 1)), "tasks[0].countdown")
    fails(Spec(name="t", eta=Timestamp(seconds=253402300799)), "tasks[0].eta")  # year 9999


def test_past_eta_runs_now() -> None:
    task = check(Spec(name="t", eta=ts(NOW - 1_000)))
    assert task.due_ms == NOW - 1_000
    assert "eta" not in as_dict(task)


def test_idempotency_key_gets_the_default_window() -> None:
    task = check(Spec(name="t", idempotency_key="k-1"))
    assert task.idempotency_window_ms == DEFAULT_WINDOW
    assert as_dict(task)["k"] == "k-1"


def test_retry_without_backoffs() -> None:
    f = as_dict(check(Spec(name="t", retry=task_pb2.RetryPolicy())))
    assert f["mr"] == 0
    assert not {"ib", "mb", "mu", "nj"} & f.keys()


def test_limits_at_the_edges_are_accepted() -> None:
    limits = Limits(max_payload_bytes=10)
    check(Spec(name="n" * 200, queue="q" * 64, payload=b"x" * 10, priority=9), limits=limits)
    check(Spec(name="a_b.c:d-e", queue="A_b.c-9", timeout=dur(1)))
    check(Spec(name="t", timeout=dur(Limits().max_timeout_ms)))


# -- what is refused, and how it is named ---------------------------------------------------


@pytest.mark.parametrize(("spec", "field"), [
    (Spec(name=""), "tasks[0].name"),
    (Spec(name="n" * 201), "tasks[0].name"),
    (Spec(name="a b"), "tasks[0].name"),
    (Spec(name="a/b"), "tasks[0].name"),
    (Spec(name="t", queue="a:b"), "tasks[0].queue"),
    (Spec(name="t", queue="{q}"), "tasks[0].queue"),
    (Spec(name="t", queue="q" * 65), "tasks[0].queue"),
    (Spec(name="t", priority=-1), "tasks[0].priority"),
    (Spec(name="t", priority=10), "tasks[0].priority"),
    (Spec(name="t", content_type="x" * 101), "tasks[0].content_type"),
    (Spec(name="t", timeout=Duration()), "tasks[0].timeout"),
    (Spec(name="t", timeout=Duration(seconds=-1)), "tasks[0].timeout"),
    (Spec(name="t", timeout=dur(Limits().max_timeout_ms + 1)), "tasks[0].timeout"),
    (Spec(name="t", eta=ts(NOW + 1), countdown=Duration(seconds=1)), "tasks[0].countdown"),
    (Spec(name="t", countdown=Duration(seconds=-5)), "tasks[0].countdown"),
    (Spec(name="t", eta=Timestamp(seconds=-1)), "tasks[0].eta"),
    (Spec(name="t", eta=ts(NOW + 10_000), expires_at=ts(NOW + 5_000)), "tasks[0].expires_at"),
    (Spec(name="t", eta=ts(NOW + 10_000), expires_at=ts(NOW + 10_000)), "tasks[0].expires_at"),
    (Spec(name="t", countdown=Duration(seconds=10), expires_at=ts(NOW + 1)), "tasks[0].expires_at"),
    (Spec(name="t", expires_at=Timestamp(seconds=253402300800)), "tasks[0].expires_at"),
    (Spec(name="t", idempotency_window=Duration(seconds=1)), "tasks[0].idempotency_window"),
    (Spec(name="t", idempotency_key="has space"), "tasks[0].idempotency_key"),
    (Spec(name="t", idempotency_key="k" * 201), "tasks[0].idempotency_key"),
    (Spec(name="t", idempotency_key="k", idempotency_window=Duration()), "tasks[0].idempotency_window"),
    (Spec(name="t", retry=task_pb2.RetryPolicy(max_retries=1001)), "tasks[0].retry.max_retries"),
    (Spec(name="t", retry=task_pb2.RetryPolicy(multiplier=0.5)), "tasks[0].retry.multiplier"),
    (Spec(name="t", retry=task_pb2.RetryPolicy(initial_backoff=dur(5_000), max_backoff=dur(1_000))),
     "tasks[0].retry.max_backoff"),
    (Spec(name="t", retry=task_pb2.RetryPolicy(initial_backoff=Duration(seconds=-1))),
     "tasks[0].retry.initial_backoff"),
    (Spec(name="t", timeout=Duration(seconds=1, nanos=1_999_999_999)), "tasks[0].timeout"),
    (Spec(name="t", timeout=Duration(seconds=1, nanos=-1)), "tasks[0].timeout"),
    (Spec(name="t", soft_timeout=Duration(nanos=1_000_000_000)), "tasks[0].soft_timeout"),
    (Spec(name="t", countdown=Duration(nanos=1_000_000_000)), "tasks[0].countdown"),
    (Spec(name="t", idempotency_key="k", idempotency_window=Duration(seconds=5, nanos=2**31 - 1)),
     "tasks[0].idempotency_window"),
    (Spec(name="t", retry=task_pb2.RetryPolicy(initial_backoff=Duration(nanos=1_000_000_000))),
     "tasks[0].retry.initial_backoff"),
    (Spec(name="t", retry=task_pb2.RetryPolicy(max_backoff=Duration(seconds=-1, nanos=5))),
     "tasks[0].retry.max_backoff"),
    (Spec(name="t", headers={"": "v"}), "tasks[0].headers"),
    (Spec(name="t", headers={"k" * 129: "v"}), "tasks[0].headers"),
    (Spec(name="t", headers={f"h{i}": "v" for i in range(65)}), "tasks[0].headers"),
    (Spec(name="t", headers={"k": "v" * (16 * 1024)}), "tasks[0].headers"),
])
def test_refused(spec: task_pb2.TaskSpec, field: str) -> None:
    fails(spec, field)


def test_payload_limit_comes_from_limits() -> None:
    err = fails(Spec(name="t", payload=b"x" * 11), "tasks[0].payload", limits=Limits(max_payload_bytes=10))
    assert "11 bytes" in str(err)
    assert "10" in str(err)


def test_field_path_uses_the_given_prefix() -> None:
    with pytest.raises(InvalidArgument) as info:
        check(Spec(name="t", priority=12), at="tasks[4]")
    assert info.value.field == "tasks[4].priority"
    assert "got 12" in str(info.value)


def test_messages_explain_the_problem() -> None:
    assert "must not be empty" in str(fails(Spec(name=""), "tasks[0].name"))
    assert "at most 200" in str(fails(Spec(name="n" * 201), "tasks[0].name"))
    assert "may only contain" in str(fails(Spec(name="a b"), "tasks[0].name"))
    assert "negative" in str(fails(Spec(name="t", timeout=Duration(seconds=-1)), "tasks[0].timeout"))


# -- the small checkers ---------------------------------------------------------------------


def test_check_name_and_queue() -> None:
    assert check_name("a.b", "f") == "a.b"
    assert check_queue("q-1", "f") == "q-1"
    with pytest.raises(InvalidArgument, match=r"^hello\.worker_id: "):
        check_name("", "hello.worker_id")
    with pytest.raises(InvalidArgument, match=r"^queues\[2\]: "):
        check_queue("a b", "queues[2]")
    with pytest.raises(InvalidArgument):
        check_queue("q\n", "q")  # fullmatch: a trailing newline is not allowed


def test_check_task_id() -> None:
    assert check_task_id(new_task_id(9, NOW)) == 9
    with pytest.raises(InvalidArgument, match=r"^task_id: 'nope' is not a Conveyor task id"):
        check_task_id("nope")
    with pytest.raises(InvalidArgument, match=r"^acks\[1\]\.task_id: "):
        check_task_id("x" * 26, "acks[1].task_id")


def test_duration_ms() -> None:
    assert duration_ms(Duration(seconds=1, nanos=999_999_999), "d", minimum=0, maximum=10_000) == 1_999
    assert duration_ms(Duration(), "d", minimum=0, maximum=1) == 0
    with pytest.raises(InvalidArgument, match="at least 1 ms"):
        duration_ms(Duration(nanos=999_999), "d", minimum=1, maximum=10)
    with pytest.raises(InvalidArgument, match="at most 10 ms"):
        duration_ms(Duration(nanos=11_000_000), "d", minimum=0, maximum=10)
    with pytest.raises(InvalidArgument, match="negative"):
        duration_ms(Duration(nanos=-1), "d", minimum=0, maximum=10)
    with pytest.raises(InvalidArgument, match="negative"):
        duration_ms(Duration(seconds=2, nanos=-1), "d", minimum=0, maximum=10_000)


@pytest.mark.parametrize("nanos", [1_000_000_000, 1_999_999_999, 2**31 - 1])
def test_duration_nanos_out_of_range_are_refused(nanos: int) -> None:
    """Not normalized: 1 s + 1,999,999,999 ns would otherwise be read as 2.999 s."""
    with pytest.raises(InvalidArgument) as info:
        duration_ms(Duration(seconds=1, nanos=nanos), "tasks[0].timeout", minimum=0, maximum=10**9)
    assert info.value.field == "tasks[0].timeout"
    assert str(info.value) == f"tasks[0].timeout: nanos must be 0 to 999,999,999, got {nanos:,}"
    assert duration_ms(Duration(seconds=1, nanos=999_999_999), "d", minimum=0, maximum=10**9) == 1_999


def test_timestamp_ms() -> None:
    assert timestamp_ms(Timestamp(seconds=1, nanos=2_500_000), "t") == 1_002
    assert timestamp_ms(Timestamp(seconds=253402300799), "t") == 253402300799_000
    for bad in (Timestamp(seconds=-1), Timestamp(seconds=253402300800), Timestamp(nanos=1_000_000_000),
                Timestamp(nanos=-1)):
        with pytest.raises(InvalidArgument, match="not a valid timestamp"):
            timestamp_ms(bad, "t")
