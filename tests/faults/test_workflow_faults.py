"""Workflow fault tests: chords and nested canvases run by real schedulers and workers while
processes die, and the canvas cases Celery gets wrong.

1. A 1,000-header chord in flight on two scheduler replicas sharing one Redis (AOF,
   appendfsync always): a worker is SIGKILLed mid-task, then the replica the workers are on,
   then Redis (restarted on the same port from its AOF). The callback must run exactly once,
   with all 1,000 header results in header order; every node must have exactly one task
   (its idempotency key wf:ID:RUN:NODE), that task SUCCEEDED, and no header may have run
   under any other task id.
2. A chord whose headers fail once and are retried (Celery #1401, #2324): the callback waits
   for the retries and runs once with every result; a header out of retries fails the chord
   naming it, and the callback never runs.
3. A chord inside a chain inside a group (Celery #3538, #6220): the results come out right and
   each node runs once; a failure at the inner levels, fail fast, names the failed node.

Each handler (tests/apps/workflow_faults.py) appends a line to a file per execution, so the
tests count runs. Waits are on conditions (tests/harness.py's wait_for), never fixed sleeps.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from conveyor import Client, TaskState, Unavailable, WorkflowFailed, WorkflowState, chain, chord, group
from conveyor.canvas import Signature
from conveyor.workflow_snapshots import WorkflowSnapshot
from conveyor_scheduler.keys import OUTBOX_GROUP, QueueKeys
from tests.apps.workflow_faults import (
    always_fails,
    boom,
    digits,
    echo,
    flaky,
    gated,
    gather,
    header,
    header_value,
    plus,
    start,
    value,
)
from tests.harness import Cluster, Proc, RedisServer, process_group, wait_for, worker_id

APP = "tests.apps.workflow_faults:app"
WAIT = 60.0
QUEUE_PREFIX = "cv:{q:default}:"
OUTBOX = QueueKeys.of("default").outbox
FAST_SCHEDULER = ("--lease-ttl", "2", "--heartbeat-interval", "0.5")


# -- helpers ---------------------------------------------------------------------------------


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def callback_runs(log: Path) -> list[dict[str, object]]:
    """The callback's executions, one JSON object per run (gather's log)."""
    return [json.loads(line) for line in lines(log)]


def labels(log: Path) -> list[str]:
    """The labels of the nested canvas's steps, one per execution, in order."""
    return lines(log)


@dataclass(frozen=True)
class Execution:
    node: int
    task_id: str
    attempt: int


def header_executions(exec_dir: Path) -> list[Execution]:
    """Every header execution that started, over every worker (wff.header's files)."""
    out = []
    for log in exec_dir.glob("exec-*.log"):
        for line in lines(log):
            i, task_id, attempt = line.split()[:3]
            out.append(Execution(int(i), task_id, int(attempt)))
    return out


def attempt_lines(log: Path) -> list[Execution]:
    """wff.flaky/wff.value/wff.always_fails executions: "i task attempt time" lines."""
    return [Execution(int(i), task_id, int(attempt)) for i, task_id, attempt, _ in
            (line.split() for line in lines(log))]


def started_since(exec_dir: Path, worker: Proc, since: float) -> int:
    """How many header executions `worker` began after the wall time `since`."""
    log = exec_dir / f"exec-{worker.popen.pid}.log"
    tail = lines(log)[-64:]
    return sum(1 for line in tail if float(line.split()[4]) > since)


def scheduler_id(proc: Proc) -> str:
    """The replica's name in the outboxes' consumer group (its default --scheduler-id)."""
    return f"{socket.gethostname()}-{proc.popen.pid}"


class Headers:
    """Reads the header tasks' states straight from Redis, all in one pipelined round trip."""

    def __init__(self, r: redis.Redis, ids: Sequence[str]) -> None:
        self.redis = r
        self.ids = list(ids)

    def states(self) -> list[tuple[int, str]]:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in self.ids:
            pipe.hmget(f"{QUEUE_PREFIX}t:{task_id}", "st", "w")
        return [(int(st or 0), (w or b"").decode()) for st, w in pipe.execute()]

    def census(self) -> collections.Counter[int]:
        return collections.Counter(st for st, _ in self.states())

    def active_on(self, worker: str) -> int:
        return sum(1 for st, w in self.states() if st == TaskState.ACTIVE and w == worker)

    def succeeded(self) -> int:
        return self.census()[TaskState.SUCCEEDED]


def pending_of(r: redis.Redis, consumer: str) -> int:
    """Outbox entries handed to `consumer` and not acknowledged."""
    for row in r.xpending(OUTBOX, OUTBOX_GROUP)["consumers"]:
        if row["name"].decode() == consumer:
            return int(row["pending"])
    return 0


def frozen_holding(replica: Proc, r: redis.Redis, consumer: str) -> bool:
    """Stops `replica` (SIGSTOP) if it holds outbox entries unacknowledged; else lets it go on."""
    os.kill(replica.popen.pid, signal.SIGSTOP)
    if pending_of(r, consumer) > 0:
        return True
    os.kill(replica.popen.pid, signal.SIGCONT)
    return False


def node_tasks(r: redis.Redis, workflow_id: str) -> dict[str, list[tuple[str, int]]]:
    """Every task record of the queue that belongs to `workflow_id`, by node key: (id, state)."""
    out: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    keys = list(r.scan_iter(match=f"{QUEUE_PREFIX}t:*", count=1000))
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "wf", "wn", "st")
    for key, (wf, wn, st) in zip(keys, pipe.execute(), strict=True):
        if wf is not None and wf.decode() == workflow_id:
            out[wn.decode()].append((key.decode().rsplit(":", 1)[1], int(st or 0)))
    return out


def worker_connected(scheduler: Proc, worker: Proc) -> bool:
    return f"worker {worker_id(worker)} connected" in scheduler.output()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, with AOF and appendfsync always, that the test may kill."""
    server = RedisServer(tmp_path / "redis", appendonly=True, fsync="always").start()
    yield server
    server.stop(hard=True)


# -- 1. faults with a 1,000-header chord in flight ------------------------------------------

N = 1000
CONCURRENCY = 8  # per worker: a few hundred ms per hundred headers, so each fault hits mid-chord


def header_seconds(i: int) -> float:
    return 0.010 + (i % 11) * 0.002  # 10-30 ms


def test_chord_of_1000_survives_worker_replica_and_redis_sigkill(cluster: Cluster, aof_redis: RedisServer,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = aof_redis.url()
    replica_a, a = cluster.scheduler(url, *FAST_SCHEDULER, name="replica-a")
    replica_b, b = cluster.scheduler(url, *FAST_SCHEDULER, name="replica-b")
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    callback_log = tmp_path / "callback.log"
    both = f"{a},{b}"  # every worker and client starts on replica a, the one that will die
    victim = cluster.worker(both, APP, "--pool", "threads", concurrency=CONCURRENCY, name="victim")
    steady = cluster.worker(both, APP, "--pool", "threads", concurrency=CONCURRENCY, name="steady")
    wait_for(lambda: worker_connected(replica_a, victim) and worker_connected(replica_a, steady), 30,
             what="both workers connected to replica a")
    r = redis.Redis.from_url(url)
    notes: list[str] = []
    started = time.monotonic()
    try:
        with Client(both, timeout=30) as client:
            canvas = chord([header.s(str(exec_dir), i, header_seconds(i)) for i in range(N)],
                           gather.s(str(callback_log)))
            handle = client.submit_workflow(canvas)
            submitted = handle.last
            assert submitted is not None
            ids = [n.task_id for n in submitted.nodes[:N]]
            assert all(ids) and len(set(ids)) == N, "SubmitWorkflow did not answer with the 1,000 header tasks"
            headers = Headers(r, ids)

            # Fault 1: SIGKILL a worker while it is inside handlers; a replacement joins.
            wait_for(lambda: headers.succeeded() >= 150 and headers.active_on(worker_id(victim)) >= 2, 30,
                     interval=0.005, what="150 headers done and the victim busy")
            wait_for(lambda: started_since(exec_dir, victim, time.time() - 0.008) >= 2, 30, interval=0.001,
                     what="the victim to be mid-task")
            victim.kill()
            at_worker = headers.succeeded()
            notes.append(f"worker killed at {at_worker} headers done")
            replacement = cluster.worker(both, APP, "--pool", "threads", concurrency=CONCURRENCY,
                                         name="replacement")

            # Fault 2: SIGKILL the replica the workers are on while it holds outbox entries it has
            # read and not acknowledged: replica b's sweep must claim them (after CLAIM_IDLE_MS).
            # The replica is frozen (SIGSTOP) to look at what it holds, and thawed if nothing: it
            # acknowledges each batch at once, so a look at a running one may be stale by the kill.
            a_consumer = scheduler_id(replica_a)
            wait_for(lambda: worker_connected(replica_a, replacement) and headers.succeeded() >= at_worker + 150,
                     30, interval=0.005, what="the replacement working")
            wait_for(lambda: frozen_holding(replica_a, r, a_consumer), 30, interval=0.002,
                     what="replica a holding outbox entries")
            replica_a.kill()
            left_on_a = pending_of(r, a_consumer)
            at_replica = headers.succeeded()
            notes.append(f"replica a killed at {at_replica} headers done, holding {left_on_a} outbox entries")

            # Fault 3: SIGKILL Redis once the workers carry on through replica b; restart it from its AOF.
            wait_for(lambda: worker_connected(replica_b, steady) and worker_connected(replica_b, replacement)
                     and headers.succeeded() >= at_replica + 150, 30, interval=0.005,
                     what="both workers on replica b and headers finishing again")
            at_redis = headers.census()
            assert at_redis[TaskState.SUCCEEDED] < N, "the chord's headers were all done before Redis was killed"
            aof_redis.stop(hard=True)
            killed = time.monotonic()
            with Client(b, timeout=0.5) as probe:
                def unavailable() -> bool:
                    try:
                        probe.workflow(handle.id).get()
                    except Unavailable:
                        return True
                    return False

                wait_for(unavailable, 10, interval=0.05, what="replica b to report UNAVAILABLE")
            aof_redis.start()
            notes.append(f"Redis killed at {at_redis[TaskState.SUCCEEDED]} headers done, "
                         f"down {time.monotonic() - killed:.1f}s")

            result = handle.result(timeout=WAIT)
            final = handle.get()
            header_records = [client.get_task(task_id) for task_id in ids]
            callback_record = client.get_task(final.node(str(N)).task_id)
        wait_for(lambda: not process_group(victim.popen.pid), 10, what="no orphaned child of the victim")
        # Every outbox entry is applied and deleted in the end, those the dead replica held too.
        wait_for(lambda: r.xlen(OUTBOX) == 0 and r.xpending(OUTBOX, OUTBOX_GROUP)["pending"] == 0, 30,
                 what="the outbox to be emptied")
        records = node_tasks(r, handle.id)
        idempotency_keys = sum(1 for _ in r.scan_iter(match=f"{QUEUE_PREFIX}k:*", count=1000))
    finally:
        r.close()
    executions = header_executions(exec_dir)
    runs = callback_runs(callback_log)
    expected = [header_value(i) for i in range(N)]
    reexecuted = len(executions) - N
    with capsys.disabled():
        print(f"\nworkflow fault chord-1000: {'; '.join(notes)}; {reexecuted} header executions repeated "
              f"(leases cut by the kills), finished {time.monotonic() - started:.1f}s after submit")

    # The callback ran exactly once, with every header's result in header order.
    assert len(runs) == 1, f"the callback ran {len(runs)} times: {[(x['task'], x['attempt']) for x in runs]}"
    assert runs[0]["results"] == expected
    assert runs[0]["task"] == callback_record.id and callback_record.state == TaskState.SUCCEEDED
    assert result == {"n": N, "sum": sum(expected)}
    assert final.state is WorkflowState.SUCCEEDED and final.finished_nodes == N + 1
    # Each node has exactly one task: the one GetWorkflow names, SUCCEEDED; no second task of any
    # node exists in the queue, and one idempotency key per node.
    assert [n.key for n in final.nodes] == [str(i) for i in range(N + 1)]
    assert [n.task_id for n in final.nodes[:N]] == ids
    assert all(n.state is TaskState.SUCCEEDED for n in final.nodes)
    assert {k: v for k, v in records.items() if len(v) != 1} == {}, "a node has more than one task"
    assert {k: v[0] for k, v in records.items()} == {n.key: (n.task_id, TaskState.SUCCEEDED) for n in final.nodes}
    assert idempotency_keys == N + 1
    for i, task in enumerate(header_records):
        assert task.state == TaskState.SUCCEEDED and (task.workflow_id, task.workflow_node) == (handle.id, str(i))
        assert json.loads(task.result.data) == expected[i]
    # Headers ran under their own task only; re-executions are leases the kills cut short.
    assert {(e.node, e.task_id) for e in executions} == {(i, ids[i]) for i in range(N)}
    assert any(e.attempt > 1 for e in executions), "the worker's SIGKILL interrupted no header"
    assert left_on_a > 0, "replica a held no outbox entry when it died: the takeover was not exercised"


# -- 2. a retried header (Celery #1401, #2324) ------------------------------------------------

HEADERS = 16
FLAKY = (3, 11)


@pytest.fixture
def workers(cluster: Cluster, scheduler: str) -> str:
    cluster.worker(scheduler, APP, concurrency=HEADERS)
    return scheduler


def test_chord_waits_for_a_retried_header_and_runs_its_callback_once(workers: str, client: Client,
                                                                      tmp_path: Path) -> None:
    runs_log, callback_log, gate = tmp_path / "headers.log", tmp_path / "callback.log", tmp_path / "gate"
    header_sigs = [flaky.s(str(runs_log), i, str(gate)).set(max_retries=2, retry_backoff=0.05) if i in FLAKY
                   else value.s(str(runs_log), i) for i in range(HEADERS)]
    handle = client.submit_workflow(chord(header_sigs, gather.s(str(callback_log))))

    # Every other header is done and applied; the flaky ones failed attempt 1 and their retry runs
    # (held at the gate): the callback must not have been released by a failed attempt.
    def retrying() -> WorkflowSnapshot | None:
        snapshot = handle.get()
        seconds = {e.node for e in attempt_lines(runs_log) if e.attempt == 2}
        return snapshot if snapshot.finished_nodes == HEADERS - len(FLAKY) and seconds == set(FLAKY) else None

    snapshot = wait_for(retrying, WAIT, what="the other headers done and the flaky ones on their retry")
    callback = snapshot.node(str(HEADERS))
    assert (callback.task_id, callback.state) == ("", TaskState.UNSPECIFIED), "the callback was released early"
    assert [snapshot.node(str(i)).state for i in FLAKY] == [TaskState.ACTIVE] * len(FLAKY)
    assert callback_runs(callback_log) == []
    gate.touch()

    expected = [header_value(i) for i in range(HEADERS)]
    assert handle.result(timeout=WAIT) == {"n": HEADERS, "sum": sum(expected)}
    runs = callback_runs(callback_log)
    assert len(runs) == 1 and runs[0]["results"] == expected
    final = handle.get()
    assert final.state is WorkflowState.SUCCEEDED and final.finished_nodes == HEADERS + 1
    executions = attempt_lines(runs_log)
    for i in range(HEADERS):
        node = final.node(str(i))
        mine = [(e.task_id, e.attempt) for e in executions if e.node == i]
        if i in FLAKY:  # one task, two attempts: the first failed, the retry succeeded
            assert mine == [(node.task_id, 1), (node.task_id, 2)]
            task = client.get_task(node.task_id)
            assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
            assert [(x.attempt, x.error.type) for x in task.attempts] == [(1, "RuntimeError")]
        else:
            assert mine == [(node.task_id, 1)]
    # The callback started after the retries ended: its input has their results, and it ran later.
    assert runs[0]["at"] >= max(float(line.split()[3]) for line in lines(runs_log))


def test_chord_header_out_of_retries_fails_the_chord_naming_it(workers: str, client: Client,
                                                                tmp_path: Path) -> None:
    runs_log, callback_log = tmp_path / "headers.log", tmp_path / "callback.log"
    header_sigs = [always_fails.s(str(runs_log), i).set(max_retries=1, retry_backoff=0.05) if i == 5
                   else value.s(str(runs_log), i) for i in range(8)]
    handle = client.submit_workflow(chord(header_sigs, gather.s(str(callback_log))))
    with pytest.raises(WorkflowFailed) as failed:
        handle.result(timeout=WAIT)
    assert (failed.value.node, failed.value.error_type) == ("5", "RuntimeError")
    assert failed.value.error_message == "header 5 fails attempt 2"
    snapshot = handle.get()
    assert snapshot.error is not None and snapshot.error.state is TaskState.DEAD
    assert [(e.task_id, e.attempt) for e in attempt_lines(runs_log) if e.node == 5] == [
        (snapshot.node("5").task_id, 1), (snapshot.node("5").task_id, 2)]
    callback = snapshot.node("8")
    assert (callback.task_id, callback.state) == ("", TaskState.CANCELLED)
    assert callback_runs(callback_log) == []


# -- 3. a chord inside a chain inside a group (Celery #3538, #6220) ---------------------------

KEYS = {label: str(k) for k, label in enumerate("abcdefg")}


@dataclass(frozen=True)
class Gates:
    """Files that hold steps: a waits for `first` before it returns, g for `last`."""

    first: Path
    last: Path

    @classmethod
    def under(cls, directory: Path) -> Gates:
        return cls(directory / "gate-a", directory / "gate-g")


def nested(log: Path, gates: Gates, *, fail: str = "") -> group:
    """group(chain(a, chord([b, c], d), e), chain(f, g)), node keys 0-6 in that order; `fail`
    makes that step fail (ValueError "<step> broke")."""
    step = {
        "a": start.s(str(log), "a", 1, str(gates.first)),
        "b": plus.s(str(log), "b", 10),
        "c": plus.s(str(log), "c", 20),
        "d": digits.s(str(log), "d"),
        "e": plus.s(str(log), "e", 5),
        "f": start.s(str(log), "f", 2),
        "g": gated.s(str(log), "g", str(gates.last), 3),
    }
    if fail:
        step[fail] = boom.s(log=str(log), label=fail, message=f"{fail} broke")
    return group(chain(step["a"], chord([step["b"], step["c"]], step["d"]), step["e"]), chain(step["f"], step["g"]))


def test_chord_in_a_chain_in_a_group(workers: str, client: Client, tmp_path: Path) -> None:
    log, gates = tmp_path / "runs.log", Gates.under(tmp_path)
    gates.first.touch()
    gates.last.touch()
    handle = client.submit_workflow(nested(log, gates))
    # a=1; b=1+10, c=1+20; d=[11, 21] as digits 1121; e=1126. f=2; g=5.
    assert handle.result(timeout=WAIT) == [1126, 5]
    snapshot = handle.get()
    shape = {n.key: (n.parents, n.receives) for n in snapshot.nodes}
    assert shape == {"0": ((), "nothing"), "1": (("0",), "value"), "2": (("0",), "value"),
                     "3": (("1", "2"), "list"), "4": (("3",), "value"), "5": ((), "nothing"),
                     "6": (("5",), "value")}
    assert all(n.state is TaskState.SUCCEEDED for n in snapshot.nodes) and snapshot.finished_nodes == 7
    assert sorted(labels(log)) == list("abcdefg"), "a node ran other than once"
    results = {n.key: json.loads(client.get_task(n.task_id).result.data) for n in snapshot.nodes}
    assert results == {"0": 1, "1": 11, "2": 21, "3": 1121, "4": 1126, "5": 2, "6": 5}


@pytest.mark.parametrize("fail", ["c", "d"])
def test_failure_inside_a_chord_in_a_chain_in_a_group_names_the_node(workers: str, client: Client, tmp_path: Path,
                                                                       fail: str) -> None:
    """c is a chord header two levels down, d that chord's body: fail fast names the node, what
    follows it never runs, and the other branch's running task (g) is cancelled."""
    log, gates = tmp_path / "runs.log", Gates.under(tmp_path)
    handle = client.submit_workflow(nested(log, gates, fail=fail))
    wait_for(lambda: handle.get().node(KEYS["g"]).state is TaskState.ACTIVE, WAIT, what="g to run")
    gates.first.touch()  # now a returns, and the failure comes while g runs
    with pytest.raises(WorkflowFailed) as failed:
        handle.result(timeout=WAIT)
    key = KEYS[fail]
    assert (failed.value.node, failed.value.error_type, failed.value.error_message) == (
        key, "ValueError", f"{fail} broke")
    snapshot = handle.get()
    assert snapshot.state is WorkflowState.FAILED and snapshot.error is not None
    assert (snapshot.error.node, snapshot.error.task_id, snapshot.error.state) == (
        key, snapshot.node(key).task_id, TaskState.FAILED)
    after = ["d", "e"] if fail == "c" else ["e"]  # downstream of the failure: never submitted
    for label in after:
        assert (snapshot.node(KEYS[label]).task_id, snapshot.node(KEYS[label]).state) == ("", TaskState.CANCELLED)
    g = client.get_task(snapshot.node(KEYS["g"]).task_id)
    assert g.cancel_requested or g.state == TaskState.CANCELLED
    gates.last.touch()  # g's handler returns; its task ends CANCELLED
    wait_for(lambda: handle.get().finished_nodes == 7, WAIT, what="every node to end")
    final = handle.get()
    assert final.node(KEYS["g"]).state is TaskState.CANCELLED
    assert final.state is WorkflowState.FAILED and final.error is not None and final.error.node == key
    ran = labels(log)
    assert len(ran) == len(set(ran)), f"a node ran twice: {ran}"
    assert set(ran) == set("abcdefg") - set(after)


def test_failure_inside_the_nested_chord_reaches_its_body_on_continue(workers: str, client: Client,
                                                                       tmp_path: Path) -> None:
    """With on_failure="continue" the error of c, a chord header two levels down, is handed to
    the chord's body naming c, and the rest runs on: every step echoes what it received."""
    log = tmp_path / "runs.log"

    def step(label: str) -> Signature:
        return echo.s(log=str(log), label=label)

    canvas = group(chain(start.s(str(log), "a", 1),
                         chord([step("b"), boom.s(log=str(log), label="c", message="c broke")], step("d")),
                         step("e")),
                   chain(start.s(str(log), "f", 2), step("g")))
    handle = client.submit_workflow(canvas, on_failure="continue")
    b = {"args": [{"result": 1}]}
    d = {"args": [[{"result": b},
                   {"error": {"node": "2", "type": "ValueError", "message": "c broke", "state": "FAILED"}}]]}
    assert handle.result(timeout=WAIT) == [{"args": [{"result": d}]}, {"args": [{"result": 2}]}]
    snapshot = handle.get()
    assert snapshot.state is WorkflowState.SUCCEEDED  # its leaves, e and g, succeeded
    assert [n.state for n in snapshot.nodes] == [TaskState.SUCCEEDED] * 2 + [TaskState.FAILED] + [
        TaskState.SUCCEEDED] * 4
    assert sorted(labels(log)) == list("abcdefg")
