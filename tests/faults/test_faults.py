"""Fault suite (issue 3): real processes, 2,000 tasks in flight, one fault each.

1. a worker killed with SIGKILL mid-task;
2. a scheduler replica killed with SIGKILL while a producer is submitting batches (no task
   runs twice: workers adopt their leases on another replica and re-send unconfirmed acks);
3. Redis (AOF on, appendfsync always) killed with SIGKILL mid-run and restarted.

In each, every submitted task must end in exactly one terminal state (SUCCEEDED) with its own
result: none lost, none recorded twice, no task beyond the 2,000 created. Where the completion
channel survives the fault (1 and 2) every task must be announced on it exactly once; in all
three the recorded result must come from the attempt that held the lease of record (a stale
attempt's ack never counts). The SDK must ride through the scheduler and Redis outages by
retrying idempotent calls, and report UNAVAILABLE, not hang, when an outage outlasts its budget.

Each scenario prints one summary line straight to the terminal (pytest's capture is bypassed).
States are watched straight from Redis (one pipeline for all 2,000 tasks); the final verdict
is read through the SDK (GetTask). Waits are on conditions, never fixed sleeps.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis

from conveyor import Call, Client, SubmitOptions, TaskState, Unavailable
from conveyor.common import CHANNEL_OPTIONS
from conveyor.resilience import channel_options, channel_target
from conveyor.v1 import task_pb2
from tests.apps.faults import expected
from tests.harness import Cluster, CompletionCounter, Proc, RedisServer, process_group, wait_for

APP = "tests.apps.faults:app"
N = 2000
SECONDS = 0.01  # each task's run time
CONCURRENCY = 16  # per worker
TASK_KEYS = "cv:{q:default}:t:*"
IDEMPOTENCY_KEYS = "cv:{q:default}:k:*"
FAST_SCHEDULER = ("--lease-ttl", "2", "--heartbeat-interval", "0.5")


# -- helpers ---------------------------------------------------------------------------------


class Observer:
    """Reads task states straight from Redis: one pipelined HMGET per task, all in one round trip."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def close(self) -> None:
        self.redis.close()

    def states(self, ids: Sequence[str]) -> list[tuple[int, str]]:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(f"cv:{{q:default}}:t:{task_id}", "st", "w")
        return [(int(st or 0), (w or b"").decode()) for st, w in pipe.execute()]

    def census(self, ids: Sequence[str], worker_prefix: str = "") -> Census:
        """How many tasks are in each state (and how many are ACTIVE on workers named worker_prefix*)."""
        c = Census()
        for st, worker in self.states(ids):
            c.by_state[st] += 1
            if st == TaskState.ACTIVE and worker_prefix and worker.startswith(worker_prefix):
                c.active_on += 1
        return c

    def try_census(self, ids: Sequence[str], worker_prefix: str = "") -> Census | None:
        try:
            return self.census(ids, worker_prefix)
        except redis.exceptions.ConnectionError:
            return None

    def explain(self, ids: Sequence[str], exec_dir: Path, limit: int = 10) -> str:
        """The records and executions of (up to `limit`) unfinished tasks, for a failure message."""
        stuck = [i for i, (st, _) in zip(ids, self.states(ids), strict=True) if not TaskState(st).terminal]
        runs = _execution_lines(exec_dir)
        lines = []
        for task_id in stuck[:limit]:
            rec = {k.decode(): v.decode(errors="replace") for k, v in
                   self.redis.hgetall(f"cv:{{q:default}}:t:{task_id}").items() if k != b"d"}
            lines.append(f"  {task_id}: {rec}; executions (attempt, pid): {runs.get(task_id, [])}")
        return "unfinished tasks:\n" + "\n".join(lines)

    def count(self, pattern: str) -> int:
        return sum(1 for _ in self.redis.scan_iter(match=pattern, count=1000))


@dataclass
class Census:
    by_state: collections.Counter[int] = field(default_factory=collections.Counter)
    active_on: int = 0

    def __getitem__(self, state: TaskState) -> int:
        return self.by_state[state]

    @property
    def terminal(self) -> int:
        return sum(n for st, n in self.by_state.items() if TaskState(st).terminal)

    def __str__(self) -> str:
        return ", ".join(f"{n} {TaskState(st).name}" for st, n in sorted(self.by_state.items()))


class SubmitWatch(grpc.UnaryUnaryClientInterceptor):
    """Sees every Submit attempt of a client: when one starts, which got UNAVAILABLE (and were
    retried by the SDK), and how many tasks came back as duplicates of an earlier attempt."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.unavailable = 0
        self.duplicates = 0
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        is_submit = client_call_details.method.endswith("/Submit")
        if is_submit:
            self.started.set()
        outcome = continuation(client_call_details, request)
        if is_submit:
            code = outcome.code()
            with self._lock:
                if code == grpc.StatusCode.UNAVAILABLE:
                    self.unavailable += 1
                elif code == grpc.StatusCode.OK:
                    self.duplicates += sum(1 for t in outcome.result().tasks if t.duplicate)
        return outcome


def watched_client(target: str, watch: SubmitWatch, timeout: float) -> Client:
    """A Client on the SDK's own multi-address channel, with `watch` on it (unary calls, so the
    interceptor sees each Submit; the test's other clients use the pipeline stream)."""
    channel = grpc.insecure_channel(channel_target(target), options=channel_options(target, CHANNEL_OPTIONS))
    return Client(target, channel=grpc.intercept_channel(channel, watch), timeout=timeout, pipeline=False)


def start_worker(cluster: Cluster, target: str, name: str, names: dict[int, str], pool: str = "threads") -> Proc:
    """Starts a worker of the faults app and remembers its pid -> worker id (Cluster's naming)."""
    worker_id = f"{name}-{len(cluster.procs)}"
    proc = cluster.worker(target, APP, "--pool", pool, queues="default", concurrency=CONCURRENCY, name=name)
    names[proc.popen.pid] = worker_id
    return proc


def calls(exec_dir: Path, numbers: range, key_prefix: str | None = None, seconds: float = SECONDS) -> list[Call]:
    return [Call("f.work", [str(exec_dir), i, seconds], {},
                 SubmitOptions(idempotency_key=f"{key_prefix}-{i}" if key_prefix else None)) for i in numbers]


def _execution_lines(exec_dir: Path) -> dict[str, list[tuple[int, int]]]:
    """task id -> (attempt, pid) of every execution that started, over every worker process."""
    runs: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for log in exec_dir.glob("exec-*.log"):
        for line in log.read_text().splitlines():
            if line.strip():
                task_id, attempt, pid = line.split()[:3]
                runs[task_id].append((int(attempt), int(pid)))
    return runs


def started_since(exec_dir: Path, worker: Proc, since: float) -> int:
    """How many executions `worker` began after the wall time `since`."""
    log = exec_dir / f"exec-{worker.popen.pid}.log"
    lines = log.read_text().splitlines()[-64:] if log.exists() else []
    return sum(1 for line in lines if line.strip() and float(line.split()[3]) > since)


def executions(exec_dir: Path) -> collections.Counter[str]:
    """How many times each task id started executing."""
    return collections.Counter({task_id: len(r) for task_id, r in _execution_lines(exec_dir).items()})


def leases_run_twice(exec_dir: Path) -> list[tuple[str, int]]:
    """(task id, attempt) pairs that started more than once: one lease delivered twice."""
    return [(task_id, attempt) for task_id, runs in _execution_lines(exec_dir).items()
            for attempt, n in collections.Counter(a for a, _ in runs).items() if n > 1]


def wait_all_terminal(observer: Observer, ids: Sequence[str], timeout: float, exec_dir: Path,
                      dead_worker: str = "") -> Census:
    def done() -> Census | None:
        c = observer.try_census(ids)
        return c if c is not None and c.terminal == len(ids) else None

    try:
        return wait_for(done, timeout, interval=0.1, what=f"all {len(ids)} tasks to finish")
    except AssertionError:
        census = observer.try_census(ids, dead_worker or "\0")
        hint = ""
        if census is not None and census.active_on:
            hint = (f"\n{census.active_on} tasks are still ACTIVE on {dead_worker}, which was SIGKILLed: "
                    f"leases of its broken stream were not handed back at once")
        raise AssertionError(f"not every task finished within {timeout}s: {census}{hint}\n"
                             f"{observer.explain(ids, exec_dir)}") from None


@dataclass
class Verdict:
    tasks: list[task_pb2.Task]
    problems: list[str]

    @property
    def succeeded(self) -> int:
        return sum(1 for t in self.tasks if t.state == TaskState.SUCCEEDED)

    @property
    def max_attempt(self) -> int:
        return max((t.attempt for t in self.tasks), default=0)

    @property
    def releases(self) -> int:
        """Tasks leased more than once (attempt > 1 in GetTask)."""
        return sum(1 for t in self.tasks if t.attempt > 1)


def verify(client: Client, ids: Sequence[str], numbers: Sequence[int], names: dict[int, str]) -> Verdict:
    """Reads every task through the SDK and checks its one terminal state and result."""
    with ThreadPoolExecutor(4) as pool:
        tasks = list(pool.map(client.get_task, ids))
    problems = []
    for task_id, i, task in zip(ids, numbers, tasks, strict=True):
        if task.state != TaskState.SUCCEEDED:
            problems.append(f"task #{i} {task_id} is {TaskState(task.state).name} (attempt {task.attempt}, "
                            f"worker {task.worker_id!r}, error {task.error.type} {task.error.message!r})")
            continue
        result = json.loads(task.result.data)
        if result["value"] != expected(i):
            problems.append(f"task #{i} {task_id}: result {result['value']!r}, expected {expected(i)!r}")
        if result["attempt"] != task.attempt or names.get(result["pid"]) != task.worker_id:
            problems.append(f"task #{i} {task_id}: recorded result came from attempt {result['attempt']} on "
                            f"{names.get(result['pid'], result['pid'])}, but the lease of record is attempt "
                            f"{task.attempt} on {task.worker_id!r}: a stale ack was recorded")
    return Verdict(tasks, problems)


def drain_announcements(counter: CompletionCounter, url: str, ids: Sequence[str]) -> dict[str, int]:
    """Waits until every task was announced, then until a sentinel published after that arrives,
    so that any second announcement already made is counted too."""
    wait_for(lambda: all(counter.counts[i] for i in ids), 30, what="every completion to be announced")
    sentinel = f"sentinel-{time.monotonic_ns()}"
    with redis.Redis.from_url(url) as r:
        r.publish("cv:done", sentinel)
    wait_for(lambda: counter.counts[sentinel], 10, what="the sentinel announcement")
    return {i: counter.counts[i] for i in ids}


def summary(capsys: pytest.CaptureFixture[str], name: str, *, submitted: int, verdict: Verdict, lost: int,
            duplicated: int, reexecuted: int, started: float, extra: str = "") -> None:
    line = (f"fault {name}: {submitted} submitted, {verdict.succeeded} succeeded, {lost} lost, "
            f"{duplicated} duplicated, {reexecuted} re-executed ({verdict.releases} tasks leased again, "
            f"max attempt {verdict.max_attempt}), "
            f"{time.monotonic() - started:.1f}s{'; ' + extra if extra else ''}")
    with capsys.disabled():
        print(f"\n{line}")


@pytest.fixture
def observers() -> Iterator[Callable[[str], Observer]]:
    made: list[Observer] = []

    def make(url: str) -> Observer:
        made.append(Observer(url))
        return made[-1]

    yield make
    for observer in made:
        observer.close()


# -- 1. a worker killed with SIGKILL mid-task -------------------------------------------------


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_worker_sigkill_mid_task(cluster: Cluster, redis_url: str, tmp_path: Path,
                                 completions: Callable[[str], CompletionCounter],
                                 observers: Callable[[str], Observer], capsys: pytest.CaptureFixture[str],
                                 pool: str) -> None:
    # A lease TTL far beyond the test's run time: the victim's leases must come back because its
    # stream broke, not because they lapsed.
    _, target = cluster.scheduler(redis_url, "--lease-ttl", "120")
    counter = completions(redis_url)
    observer = observers(redis_url)
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    names: dict[int, str] = {}
    with Client(target) as client:
        started = time.monotonic()
        ids = [h.id for h in client.submit_many(calls(exec_dir, range(N), seconds=0.03))]
        victim = start_worker(cluster, target, "victim", names, pool)
        start_worker(cluster, target, "steady", names, pool)
        at_strike = wait_for(lambda: (c := observer.census(ids, "victim"))[TaskState.SUCCEEDED] >= 300
                             and c.active_on >= CONCURRENCY // 2 and c, 30, interval=0.005,
                             what="some hundreds done and the victim busy")
        # Strike while the victim is inside handlers: several of its executions began less than
        # 10 ms ago (each sleeps 30 ms), so the kill surely cuts them short.
        wait_for(lambda: started_since(exec_dir, victim, time.time() - 0.01) >= 4, 30, interval=0.001,
                 what="the victim to be mid-task")
        victim.kill()
        start_worker(cluster, target, "replacement", names, pool)
        wait_all_terminal(observer, ids, 30, exec_dir, dead_worker=names[victim.popen.pid])
        verdict = verify(client, ids, range(N), names)
    wait_for(lambda: not process_group(victim.popen.pid), 10, what="no orphaned child of the victim")
    announced = drain_announcements(counter, redis_url, ids)
    runs = executions(exec_dir)
    records = observer.count(TASK_KEYS)

    lost = N - verdict.succeeded
    duplicated = sum(n - 1 for n in announced.values() if n > 1) + max(0, records - N) + (N - len(set(ids)))
    reexecuted = sum(n - 1 for n in runs.values())
    summary(capsys, f"worker-sigkill ({pool})", submitted=N, verdict=verdict, lost=lost, duplicated=duplicated,
            reexecuted=reexecuted, started=started,
            extra=f"at the kill: {at_strike}, {at_strike.active_on} ACTIVE on the victim")

    assert verdict.problems == []
    assert len(set(ids)) == N
    assert records == N, f"{records} task records, expected {N}"
    assert {i: n for i, n in announced.items() if n != 1} == {}, "tasks announced other than exactly once"
    assert set(runs) == set(ids), "every task ran, and nothing else did"
    assert leases_run_twice(exec_dir) == [], "a lease was delivered twice"
    # The kill hit running work: those tasks were leased again and finished elsewhere.
    again = [t for t in verdict.tasks if t.attempt > 1]
    assert again, "the SIGKILL did not interrupt any task"
    assert all(not t.worker_id.startswith("victim") for t in again)


# -- 2. a scheduler replica killed with SIGKILL mid-batch ------------------------------------


def test_scheduler_replica_sigkill_mid_batch(cluster: Cluster, redis_url: str, tmp_path: Path,
                                             completions: Callable[[str], CompletionCounter],
                                             observers: Callable[[str], Observer],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    replica_a, a = cluster.scheduler(redis_url, *FAST_SCHEDULER, name="replica-a")
    _, b = cluster.scheduler(redis_url, *FAST_SCHEDULER, name="replica-b")
    counter = completions(redis_url)
    observer = observers(redis_url)
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    names: dict[int, str] = {}
    workers = [start_worker(cluster, f"{a},{b}", f"w{n}", names) for n in (1, 2)]
    # Both workers hold their stream on replica a, the one that will die.
    wait_for(lambda: all(f"worker {names[w.popen.pid]} connected" in replica_a.output() for w in workers), 30,
             what="both workers connected to replica a")

    # The producer: one Client on both replicas, two submitter threads sharing it, so that a
    # Submit is nearly always on the wire to each replica; 20 batches of 100 with idempotency keys.
    # Slower tasks than elsewhere, so the first half is still queued and running at the strike.
    plan = [calls(exec_dir, range(k * 100, (k + 1) * 100), key_prefix="fault2", seconds=0.05)
            for k in range(N // 100)]
    batches: dict[int, list[str]] = {}
    todo = iter(range(len(plan)))
    lock = threading.Lock()
    struck = threading.Event()
    go = threading.Event()
    failures: list[BaseException] = []
    watch = SubmitWatch()

    def submitter(producer: Client) -> None:
        try:
            while True:
                with lock:
                    k = next(todo, None)
                if k is None:
                    return
                if k >= len(plan) // 2:  # half of the batches wait for the strike, which hits the next one
                    go.wait(30)
                    if k > len(plan) // 2:
                        struck.wait(30)
                batches[k] = [h.id for h in producer.submit_many(plan[k])]
        except BaseException as exc:
            failures.append(exc)

    def submitted() -> list[str]:
        return [i for batch in list(batches.values()) for i in batch]

    started = time.monotonic()
    with watched_client(f"{a},{b}", watch, timeout=30) as producer:
        threads = [threading.Thread(target=submitter, args=(producer,), name=f"producer-{n}", daemon=True)
                   for n in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: len(batches) >= len(plan) // 2
                 and observer.census(submitted(), "w").active_on >= CONCURRENCY // 2,
                 30, interval=0.002, what="the first half in and leases out from replica a")
        watch.started.clear()
        go.set()  # exactly one Submit goes on the wire now; it is struck in flight
        assert watch.started.wait(10), "no Submit started after the first half"
        replica_a.kill()
        struck.set()
        batches_before = len(batches)
        at_strike = observer.census(submitted(), "w")
        in_flight = at_strike[TaskState.QUEUED] + at_strike[TaskState.ACTIVE]
        assert in_flight >= 100, f"only {in_flight} tasks were in flight at the strike: {at_strike}"

        # A caller bound to the dead replica alone gets UNAVAILABLE once its budget is spent, not a hang.
        with Client(a, timeout=1.0) as stranded:
            t0 = time.monotonic()
            with pytest.raises(Unavailable):
                stranded.get_task(submitted()[0])
            took = time.monotonic() - t0
        assert 0.8 <= took < 3, f"a 1 s budget ended in UNAVAILABLE after {took:.2f}s"

        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "the producer hung"
    assert failures == [], f"the producer did not ride through the replica's death: {failures!r}"
    ids = [i for k in range(len(plan)) for i in batches[k]]
    assert len(ids) == N and len(set(ids)) == N, f"{len(ids)} ids, {len(set(ids))} distinct, expected {N}"

    wait_all_terminal(observer, ids, 30, exec_dir)
    with Client(f"{a},{b}") as client:
        verdict = verify(client, ids, range(N), names)
    announced = drain_announcements(counter, redis_url, ids)
    runs = executions(exec_dir)
    records = observer.count(TASK_KEYS)
    keys = observer.count(IDEMPOTENCY_KEYS)

    lost = N - verdict.succeeded
    duplicated = sum(n - 1 for n in announced.values() if n > 1) + max(0, records - N) + (N - len(set(ids)))
    reexecuted = sum(n - 1 for n in runs.values())
    summary(capsys, "replica-sigkill", submitted=N, verdict=verdict, lost=lost, duplicated=duplicated,
            reexecuted=reexecuted, started=started,
            extra=f"killed after {batches_before} of {N // 100} batches; at the kill: {at_strike}; producer: "
                  f"{watch.unavailable} Submit attempts got UNAVAILABLE and were retried, "
                  f"{watch.duplicates} tasks answered as already submitted")

    assert verdict.problems == []
    assert records == N, f"{records} task records, expected {N}"
    assert keys == N, f"{keys} idempotency keys, expected {N}"
    assert {i: n for i, n in announced.items() if n != 1} == {}, "tasks announced other than exactly once"
    assert set(runs) == set(ids)
    assert leases_run_twice(exec_dir) == []
    # The workers re-announce the leases they hold and re-send the acks the dead replica never
    # confirmed: nothing that ran, or had finished, runs again.
    assert {i: n for i, n in runs.items() if n > 1} == {}, "tasks ran again after the replica died"


# -- 3. Redis killed with SIGKILL and restarted ----------------------------------------------


def test_redis_sigkill_and_restart(cluster: Cluster, tmp_path: Path, observers: Callable[[str], Observer],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True, fsync="always").start()
    try:
        _run_redis_outage(cluster, server, tmp_path, observers, capsys)
    finally:
        server.stop(hard=True)


def _run_redis_outage(cluster: Cluster, server: RedisServer, tmp_path: Path, observers: Callable[[str], Observer],
                      capsys: pytest.CaptureFixture[str]) -> None:
    url = server.url()
    _, a = cluster.scheduler(url, *FAST_SCHEDULER, name="replica-a")
    _, b = cluster.scheduler(url, *FAST_SCHEDULER, name="replica-b")
    observer = observers(url)
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    names: dict[int, str] = {}
    with Client(f"{a},{b}", timeout=30) as client:
        started = time.monotonic()
        ids = [h.id for h in client.submit_many(calls(exec_dir, range(N), key_prefix="fault3"))]
        start_worker(cluster, f"{a},{b}", "w1", names)
        start_worker(cluster, f"{b},{a}", "w2", names)
        at_strike = wait_for(lambda: (c := observer.census(ids, "w"))[TaskState.SUCCEEDED] >= 300
                             and c.active_on >= CONCURRENCY // 2 and c, 30, interval=0.005,
                             what="some hundreds done and leases out")
        server.stop(hard=True)
        killed = time.monotonic()

        # Callers see UNAVAILABLE once the scheduler cannot reach Redis, within their deadline.
        with Client(a, timeout=0.5) as probe:
            def unavailable() -> bool:
                try:
                    probe.get_task(ids[0])
                except Unavailable:
                    return True
                return False

            wait_for(unavailable, 3, interval=0.05, what="replica a to report UNAVAILABLE")
        assert time.monotonic() - killed < 3.5
        with Client(f"{a},{b}", timeout=1.0) as impatient:
            t0 = time.monotonic()
            with pytest.raises(Unavailable):
                impatient.get_task(ids[-1])
            took = time.monotonic() - t0
        assert 0.8 <= took < 3, f"a 1 s budget ended in UNAVAILABLE after {took:.2f}s (retries, then no hang)"

        # Riders: idempotent calls made during the outage retry with backoff and succeed after it.
        ridden: dict[str, object] = {}
        rider_watch = SubmitWatch()

        def ride() -> None:
            try:
                with watched_client(f"{a},{b}", rider_watch, timeout=30) as rider:
                    again = rider.submit_many(calls(exec_dir, range(100), key_prefix="fault3"))
                    ridden["resubmitted"] = [h.id for h in again]
                    ridden["task"] = rider.get_task(ids[N // 2])
            except BaseException as exc:
                ridden["error"] = exc

        rider = threading.Thread(target=ride, name="rider", daemon=True)
        rider.start()
        wait_for(lambda: rider_watch.unavailable >= 3, 10, what="the rider's Submit to be refused three times")
        assert not ridden, f"a call got through during the outage: {ridden}"
        server.start()
        back = time.monotonic()
        outage = back - killed

        rider.join(40)
        assert not rider.is_alive(), "the rider hung"
        assert "error" not in ridden, f"an idempotent call did not ride through the outage: {ridden['error']!r}"
        assert ridden["resubmitted"] == ids[:100], "resubmitting with the same idempotency keys created new tasks"
        assert rider_watch.duplicates == 100
        assert ridden["task"].id == ids[N // 2]  # type: ignore[attr-defined]

        wait_all_terminal(observer, ids, 30, exec_dir)
        recovered = time.monotonic() - back
        verdict = verify(client, ids, range(N), names)
    runs = executions(exec_dir)
    records = observer.count(TASK_KEYS)
    keys = observer.count(IDEMPOTENCY_KEYS)

    lost = N - verdict.succeeded
    duplicated = max(0, records - N) + (N - len(set(ids)))
    reexecuted = sum(n - 1 for n in runs.values())
    summary(capsys, "redis-sigkill", submitted=N, verdict=verdict, lost=lost, duplicated=duplicated,
            reexecuted=reexecuted, started=started,
            extra=f"at the kill: {at_strike}; outage {outage:.1f}s (rider retried {rider_watch.unavailable} times), "
                  f"all finished {recovered:.1f}s after restart")

    assert verdict.problems == []
    assert records == N, f"{records} task records, expected {N}"
    assert keys == N, f"{keys} idempotency keys, expected {N}"
    assert set(runs) == set(ids)
    assert leases_run_twice(exec_dir) == []
