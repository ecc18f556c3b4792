"""The scheduler's per-task metrics, counted in plain Python (tallies) and exposed for Prometheus:
overflow, and one in-process scheduler telemetry read back through the text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.v1 import task_pb2
from conveyor_scheduler import telemetry
from conveyor_scheduler.config import Limits
from conveyor_scheduler.exposition import FleetCollector, MetricsEndpoint
from conveyor_scheduler.records import set_ms
from conveyor_scheduler.store import Submitted
from conveyor_scheduler.tallies import OVERFLOW, Tally
from conveyor_scheduler.task_events import TaskEventHooks
from conveyor_scheduler.validation import NewTask

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(registry: CollectorRegistry) -> tuple[dict[str, str], Samples]:
    """(family name -> type, samples) of the registry's text exposition, read by prometheus_client's parser."""
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    return ({f.name: f.type for f in families},
            {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples})


def test_a_tally_counts_per_key_and_folds_keys_past_its_limit_into_overflow() -> None:
    tally = Tally(max_series=2)
    tally.add(("a",))
    tally.add(("a",), 4)
    tally.add(("b",))
    totals = tally.totals()
    tally.add(("c",))
    tally.add(("d",), 2)
    tally.add(("a",))
    assert totals == {("a",): 5, ("b",): 1}  # a copy: later adds do not change it
    assert tally.totals() == {("a",): 6, ("b",): 1, OVERFLOW: 3}


def leased(queue: str, created_ms: int, started_ms: int, eta_ms: int = 0) -> task_pb2.LeasedTask:
    lt = task_pb2.LeasedTask(task=task_pb2.Task(id="01JD8X0000000000000000000", name="t.add", queue=queue))
    set_ms(lt.task.created_at, created_ms)
    set_ms(lt.task.started_at, started_ms)
    if eta_ms:
        set_ms(lt.task.eta, eta_ms)
    return lt


def test_scheduler_telemetry_counts_into_the_prometheus_endpoint() -> None:
    """Telemetry set up as a task-events hook, called as submission, dispatch and completion
    call it, against an endpoint that is not serving: its registry is read directly. The
    queue-depth gauge cannot reach Redis and reports nothing."""

    async def no_queue(task_id: str) -> str:
        raise AssertionError("not read without a cancel")

    view = telemetry.SchedulerView(limits=Limits(), redis_url="redis://127.0.0.1:1", redis=None,  # type: ignore[arg-type]
                                   queue_of=no_queue, open_sessions=set)
    endpoint = MetricsEndpoint("127.0.0.1", 0, FleetCollector("r", lambda: False, "redis://127.0.0.1:1"))
    hooks = TaskEventHooks()
    assert telemetry.setup(hooks, view, endpoint) is not None
    try:
        names = ("t.add", "t.add", "t.mul", "t.add")
        specs = [task_pb2.TaskSpec(name=n) for n in names]
        with hooks.storing(specs) as storing:
            storing.stored([Submitted("1", "q", 2, False), Submitted("2", "q", 2, False),
                            Submitted("3", "q", 2, False), Submitted("4", "q", 2, True)],  # a duplicate: not new
                           [NewTask("q", 0, 0, "", 0, [], name=n) for n in names])
        t0 = 1_700_000_000_000
        hooks.leased([leased("q", t0, t0 + 3),  # waited 3 ms
                      leased("q", t0, t0 + 5_000, eta_ms=t0 + 4_900),  # ready at its eta: 100 ms
                      leased("q", t0, t0 + 10, eta_ms=t0 + 20)], "w")  # leased before its eta: 0
        ok, retry, stale = (task_pb2.AckOutcome(status=task_pb2.ACK_STATUS_ACCEPTED, state=s)
                            for s in (task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_SCHEDULED,
                                      task_pb2.TASK_STATE_FAILED))
        stale.status = task_pb2.ACK_STATUS_STALE_LEASE
        hooks.finished([("q", None)] * 4, [ok, ok, retry, stale])  # type: ignore[list-item]
        types, samples = parse(endpoint.registry)
    finally:
        endpoint.stop()

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"messaging_system": "conveyor", **labels}.items())))

    assert types["conveyor_tasks_submitted"] == types["conveyor_tasks_completed"] == "counter"
    assert "conveyor_task_wait_duration_seconds" not in types  # OTLP only: /metrics has the fleet percentiles
    q = {"messaging_destination_name": "q"}
    assert value("conveyor_tasks_submitted_total", conveyor_task_name="t.add", **q) == 2
    assert value("conveyor_tasks_submitted_total", conveyor_task_name="t.mul", **q) == 1
    assert value("conveyor_tasks_completed_total", conveyor_task_outcome="succeeded", **q) == 2
    assert value("conveyor_tasks_retried_total", **q) == 1
    assert value("conveyor_tasks_completed_total", conveyor_task_outcome="failed", **q) is None
