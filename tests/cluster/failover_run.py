"""One failover round against a real Redis Cluster: the one implementation behind
tests/cluster/test_failover.py (which asserts on it) and `python -m bench.failover` (which
tabulates it).

A round, on a private 3+3 cluster the caller owns:
- a queue whose slot is on a primary that holds none of the registry's keys ({cv}, {workers},
  {beat}), so the fault hits that queue and nothing else;
- two scheduler replicas (`--redis-wait-replicas N`), three workers of 4 slots (each on its own
  first scheduler; fo.add takes ~30 ms), four producer threads submitting 2,000 tasks in
  batches of 10, each with an idempotency key (so the SDK retries through UNAVAILABLE), at most
  `window` tasks unfinished at a time so submits still flow when the fault comes;
- once `kill_submitted` submits are acknowledged and `kill_confirmed` results confirmed:
  - "kill": SIGKILL the queue's primary while submits and acks flow;
  - "lag": first cut the primary's replication link (the replica is given a user it cannot
    authenticate as, and its link is killed), wait until the primary holds writes its replica
    lacks (without WAIT: `lag_acknowledged` of them acknowledged to producers and workers; with
    WAIT: a caller blocked in WAIT), then SIGKILL it. A replica that lags when its primary dies
    is what asynchronous replication loses writes to; a bare SIGKILL on loopback rarely shows it,
    because what the dead process already wrote to its sockets still reaches the replica;
- the replica takes over (node timeout 1 s); the killed node is restarted at once and rejoins as
  its replica (with WAIT 1 and one replica per shard, nothing can be acknowledged on that shard
  until it has a replica again); the round finishes and everything is read through the API.

What is acknowledged, and so must survive with WAIT: a submit whose reply the producer got
(its task ids), and a result the scheduler confirmed to its worker (ReportDone:
tests/cluster/failover_worker.py writes those down). What is measured besides: results a
client read as SUCCEEDED (GetResults) just before the kill, which a failover may take back even
with WAIT, since a read sees a write before its WAIT returns.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import grpc

from conveyor import Call, Client, SubmitOptions
from conveyor.channels import open_channel
from conveyor.common import outcome
from conveyor.errors import ConveyorError
from conveyor.resilience import call_with_retry
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster, Proc, connected, serving, spawn, wait_for
from tests.redis_cluster import Node, RedisClusterServers

APP = "tests.apps.failover:app"
TASK = "fo.add"
SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED
TERMINAL = {task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_DEAD,
            task_pb2.TASK_STATE_CANCELLED, task_pb2.TASK_STATE_EXPIRED}
REGISTRY_TAGS = ("cv:{cv}:queues", "cv:{workers}:seen", "cv:{beat}:due")
PROBE = -1
"""The key of the probe task submitted after the kill (it times the outage)."""


def expected(i: int) -> int:
    return i + 100_000 + i  # fo.add(i, 100_000 + i)


@dataclass(frozen=True)
class Round:
    """One round's settings (the defaults are the test's)."""

    wait_replicas: int
    fault: str = "kill"
    """"kill": SIGKILL the primary while writes flow; "lag": cut its replication link first."""
    tasks: int = 2000
    task_seconds: float = 0.03
    workers: int = 3
    concurrency: int = 4
    producers: int = 4
    batch: int = 10
    window: int = 1500
    """Producers keep at most this many tasks submitted and not yet confirmed finished."""
    kill_submitted: int = 1500
    kill_confirmed: int = 200
    lag_acknowledged: int = 100
    """"lag" without WAIT: acknowledged writes (submits + results) made while the link is cut."""
    lease_ttl: float = 8.0
    deadline: float = 100.0
    """Seconds the whole round may take before it is given up."""


@dataclass(frozen=True)
class Seen:
    """A task as GetResults showed it (state 0: no such task)."""

    state: int
    value: Any = None
    finished_ms: int = 0
    attempt: int = 0


@dataclass
class Outcome:
    round: Round
    queue: str = ""
    submitted: int = 0
    """Tasks whose submit was acknowledged (one id per key)."""
    submitted_at_kill: int = 0
    in_flight_at_kill: int = 0
    """Acknowledged submits not yet confirmed finished when the primary was killed."""
    confirmed_before_kill: int = 0
    observed_before_kill: int = 0
    """Tasks read SUCCEEDED through GetResults just before the kill."""
    acknowledged_while_cut: int = 0
    """"lag": submits acknowledged plus results confirmed while the replication link was cut."""
    unreplicated_bytes: int = 0
    """The primary's replication offset minus its replica's, just before the kill."""
    lost_submits: list[str] = field(default_factory=list)
    """Acknowledged submits whose task does not exist at the end."""
    lost_results: list[str] = field(default_factory=list)
    """Results confirmed to a worker before the kill that did not survive as they were (the task is
    not SUCCEEDED at the end, or its result was recorded anew: another finish time)."""
    reverted_after_failover: list[str] = field(default_factory=list)
    """Confirmed or observed SUCCEEDED before the kill, not SUCCEEDED just after the failover."""
    observed_lost: list[str] = field(default_factory=list)
    """Observed SUCCEEDED before the kill, and not that same record at the end."""
    ran_twice: list[int] = field(default_factory=list)
    """Keys whose task ran to completion more than once."""
    wrong: list[str] = field(default_factory=list)
    """Tasks that exist at the end but did not end SUCCEEDED with their own sum."""
    unacknowledged_keys: list[int] = field(default_factory=list)
    """Keys no submit attempt got acknowledged before the deadline."""
    extra_tasks: list[str] = field(default_factory=list)
    """Tasks in the queue that no acknowledged submit (nor the probe) returned."""
    submit_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    """Submit calls that failed after the SDK's retries, by error (they are tried again)."""
    failover_s: float = 0.0
    """SIGKILL to the replica owning the slots, every node agreeing."""
    first_submit_s: float = 0.0
    """SIGKILL to the first submit (the probe) acknowledged after it."""
    restart_s: float = 0.0
    """SIGKILL to the killed node back as a synced replica."""
    read_before_kill_s: float = 0.0
    """How long GetResults of every acknowledged task took just before the kill ("lag": while
    the replica is cut off)."""
    read_after_failover_s: float = 0.0
    """How long GetResults of the tasks read before the kill took right after the failover, while
    the shard has no replica: a read queued behind a WAIT on the scheduler's connection to that
    primary waits as long as the WAIT does (up to --redis-wait-timeout)."""
    round_s: float = 0.0
    schedulers_serving: bool = False
    log_excerpts: dict[str, list[str]] = field(default_factory=dict)
    """Per process, its WARNING/ERROR lines (at most 20)."""

    def figures(self) -> dict[str, Any]:
        return {"wait_replicas": self.round.wait_replicas, "fault": self.round.fault, "submitted": self.submitted,
                "submitted_at_kill": self.submitted_at_kill, "confirmed_before_kill": self.confirmed_before_kill,
                "in_flight_at_kill": self.in_flight_at_kill, "observed_before_kill": self.observed_before_kill,
                "acknowledged_while_cut": self.acknowledged_while_cut, "unreplicated_bytes": self.unreplicated_bytes,
                "lost_submits": len(self.lost_submits), "lost_results": len(self.lost_results),
                "observed_lost": len(self.observed_lost), "reverted_after_failover": len(self.reverted_after_failover),
                "ran_twice": len(self.ran_twice), "wrong": len(self.wrong), "extra_tasks": len(self.extra_tasks),
                "submit_errors": dict(self.submit_errors), "failover_s": round(self.failover_s, 2),
                "first_submit_s": round(self.first_submit_s, 2), "restart_s": round(self.restart_s, 2),
                "read_before_kill_s": round(self.read_before_kill_s, 2),
                "read_after_failover_s": round(self.read_after_failover_s, 2),
                "round_s": round(self.round_s, 1), "schedulers_serving": self.schedulers_serving}

    def summary(self) -> str:
        f = self.figures()
        return (f"failover wait={f['wait_replicas']} fault={f['fault']}: {f['submitted']} submitted; at the kill "
                f"{f['submitted_at_kill']} submitted, {f['confirmed_before_kill']} confirmed, "
                f"{f['in_flight_at_kill']} in flight; lost: {f['lost_submits']} submits, "
                f"{f['lost_results']} confirmed results, {f['observed_lost']} observed results "
                f"({f['reverted_after_failover']} not SUCCEEDED after the failover); {f['ran_twice']} ran twice; "
                f"{f['unreplicated_bytes']} bytes unreplicated at the kill, {f['acknowledged_while_cut']} "
                f"acknowledged while cut; failover {f['failover_s']} s, first submit {f['first_submit_s']} s, "
                f"replica back {f['restart_s']} s; round {f['round_s']} s")


# -- the queue and the processes ---------------------------------------------------------------


def pick_queue(redis: RedisClusterServers, prefix: str = "fo") -> tuple[str, Node]:
    """A queue name whose slot is on a primary holding none of the registry's tags (the last
    primary if every one holds one), and that primary."""
    busy = {redis.primary_for_slot(redis.slot_of(k)).node_id for k in REGISTRY_TAGS}
    primaries = redis.primaries()
    target = next((p for p in primaries if p.node_id not in busy), primaries[-1])
    for i in range(100_000):
        name = f"{prefix}-{i}"
        if redis.primary_for_slot(redis.slot_of(f"cv:{{q:{name}}}:r:0")).node_id == target.node_id:
            return name, target
    raise AssertionError(f"no {prefix}-N queue hashes to {target.addr}")


def start_worker(procs: Cluster, targets: Sequence[str], queue: str, concurrency: int, work: Path,
                 name: str) -> Proc:
    """A worker of the failover app that writes down its confirmed acks (failover_worker.py)."""
    worker_id = f"{name}-{len(procs.procs)}"
    cmd = [sys.executable, "-m", "tests.cluster.failover_worker", APP, "--scheduler", ",".join(targets),
           "--queues", queue, "--concurrency", str(concurrency), "--worker-id", worker_id]
    proc = spawn(name, cmd, procs.log_dir, env={"CONVEYOR_TEST_CONFIRMED_LOG": str(work / f"confirmed-{name}.log")})
    procs.procs.append(proc)
    return proc


class Confirmed:
    """The task ids workers were told are recorded, read from their files as they grow; a
    Condition for the producers' window."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.ids: dict[str, float] = {}
        """task id -> when this reader first saw it confirmed (monotonic)."""
        self.cond = threading.Condition()
        self._offsets: dict[Path, int] = {}
        self._reading = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="confirmed-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.read()

    def read(self) -> None:
        fresh = []
        with self._reading:
            for path in sorted(self.work.glob("confirmed-*.log")):
                start = self._offsets.get(path, 0)
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
                end = data.rfind(b"\n") + 1  # whole lines only
                self._offsets[path] = start + end
                fresh += data[:end].decode().split()
        if fresh:
            now = time.monotonic()
            with self.cond:
                for task_id in fresh:
                    self.ids.setdefault(task_id, now)
                self.cond.notify_all()

    def count(self) -> int:
        with self.cond:
            return len(self.ids)

    def count_since(self, since: float) -> int:
        with self.cond:
            return sum(1 for t in self.ids.values() if t >= since)

    def snapshot(self) -> set[str]:
        self.read()
        with self.cond:
            return set(self.ids)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self.cond:
            self.cond.notify_all()


class Producers:
    """`producers` threads, each submitting its share of the keys in batches (each task with
    idempotency key "k<key>"), trying a batch again until it is acknowledged."""

    def __init__(self, targets: Sequence[str], queue: str, cfg: Round, work: Path, confirmed: Confirmed,
                 deadline: float) -> None:
        self.targets, self.queue, self.cfg, self.work = targets, queue, cfg, work
        self.confirmed = confirmed
        self.deadline = deadline
        self.ids: dict[int, str] = {}
        self.acked_at: dict[int, float] = {}
        self.errors: collections.Counter[str] = collections.Counter()
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), name=f"producer-{n}", daemon=True)
                         for n in range(cfg.producers)]

    def call(self, i: int) -> Call:
        return Call(TASK, [i, 100_000 + i, self.cfg.task_seconds, str(self.work)], {},
                    SubmitOptions(queue=self.queue, idempotency_key=f"k{i}"))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.ids)

    def snapshot(self) -> dict[int, str]:
        """key -> task id of every acknowledged submit so far."""
        with self._lock:
            return dict(self.ids)

    def acknowledged_since(self, since: float) -> int:
        with self._lock:
            return sum(1 for t in self.acked_at.values() if t >= since)

    def _run(self, n: int) -> None:
        cfg = self.cfg
        # Alternate the scheduler each thread starts on (the channel balances over both).
        targets = ",".join([*self.targets[n % 2:], *self.targets[:n % 2]])
        mine = list(range(n, cfg.tasks, cfg.producers))
        try:
            with Client(targets, timeout=10) as client:
                for first in range(0, len(mine), cfg.batch):
                    keys = mine[first:first + cfg.batch]
                    self._wait_window(len(keys))
                    while True:
                        if time.monotonic() > self.deadline:
                            return
                        try:
                            handles = client.submit_many([self.call(i) for i in keys])
                            break
                        except ConveyorError as exc:
                            with self._lock:
                                self.errors[type(exc).__name__] += 1
                    now = time.monotonic()
                    with self._lock:
                        for i, handle in zip(keys, handles, strict=True):
                            self.ids[i] = handle.id
                            self.acked_at[i] = now
        except BaseException as exc:  # reported by join()
            self.failure = exc

    def _wait_window(self, size: int) -> None:
        with self.confirmed.cond:
            self.confirmed.cond.wait_for(
                lambda: self.count() + size - len(self.confirmed.ids) <= self.cfg.window
                or time.monotonic() > self.deadline, timeout=max(0.0, self.deadline - time.monotonic()))

    def join(self) -> None:
        for thread in self._threads:
            thread.join(max(0.1, self.deadline - time.monotonic() + 5))
        if self.failure is not None:
            raise self.failure


class Reader:
    """GetResults through the schedulers (retried through UNAVAILABLE), 1,000 ids a call."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.channel = open_channel(",".join(targets))
        self.stub = task_service_pb2_grpc.TaskServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def read(self, ids: Iterable[str]) -> dict[str, Seen]:
        ids = list(ids)
        out: dict[str, Seen] = {}
        for first in range(0, len(ids), 1000):
            req = task_service_pb2.GetResultsRequest(task_ids=ids[first:first + 1000])
            resp = call_with_retry(lambda left, req=req: self.stub.GetResults(req, timeout=left), 30)
            for r in resp.results:
                out[r.task_id] = seen(r)
        return out


def seen(r: task_service_pb2.GetResultResponse) -> Seen:
    value = outcome(r) if r.state == SUCCEEDED else None
    return Seen(r.state, value, r.finished_at.ToMilliseconds(), r.attempt)


def runs(work: Path) -> collections.Counter[int]:
    """How many times each key's task ran to completion, over every worker."""
    count: collections.Counter[int] = collections.Counter()
    for log in work.glob("runs-*.log"):
        for line in log.read_text().splitlines():
            if line.strip():
                count[int(line.split()[0])] += 1
    return count


# -- the fault ----------------------------------------------------------------------------------


def cut_replication(redis: RedisClusterServers, primary: Node) -> Node:
    """Cuts `primary`'s replication link and keeps it cut: its replica is given a user the
    primary does not know (it re-authenticates on every reconnect, and fails), then the link is
    killed. Returns the replica (mend_replication undoes it)."""
    [replica] = redis.replicas(primary)
    replica.conn.config_set("masteruser", "failover-test-nobody")
    replica.conn.config_set("masterauth", "no-such-password")
    primary.conn.client_kill_filter(_type="replica")
    wait_for(lambda: replica.conn.info("replication")["master_link_status"] == "down"
             and primary.conn.info("replication")["connected_slaves"] == 0, 10, what="the replication link to be cut")
    return replica


def mend_replication(replica: Node) -> None:
    replica.conn.config_set("masteruser", "")
    replica.conn.config_set("masterauth", "")


def unreplicated(primary: Node, replica: Node) -> int:
    ahead = primary.conn.info("replication")["master_repl_offset"]
    return max(0, int(ahead) - int(replica.conn.info("replication")["master_repl_offset"]))


def waiting_in_wait(primary: Node) -> bool:
    """Some client of `primary` is blocked in WAIT (its write is on the primary only)."""
    return any(c.get("cmd") == "wait" and "b" in c.get("flags", "") for c in primary.conn.client_list())


# -- the round ----------------------------------------------------------------------------------


def start_processes(redis: RedisClusterServers, procs: Cluster, work: Path, cfg: Round, queue: str
                    ) -> list[tuple[Proc, str]]:
    """Two scheduler replicas (`--redis-wait-replicas`) and the workers, each worker connected
    to its first scheduler (they alternate); returns the schedulers (process, address)."""
    args = ["--redis-wait-replicas", str(cfg.wait_replicas), "--lease-ttl", str(cfg.lease_ttl),
            "--heartbeat-interval", "1"]
    schedulers = [procs.scheduler(redis.url, *args, "--scheduler-id", f"s{n}", name=f"scheduler-{n}")
                  for n in (1, 2)]
    targets = [address for _, address in schedulers]
    workers = [start_worker(procs, [targets[n % 2], targets[(n + 1) % 2]], queue, cfg.concurrency, work,
                            f"worker{n}") for n in range(cfg.workers)]
    for n, worker in enumerate(workers):
        connected(schedulers[n % 2][0], worker)
    return schedulers


def run_round(redis: RedisClusterServers, procs: Cluster, work: Path, cfg: Round,
              log: Callable[[str], None] = lambda line: None) -> Outcome:
    """Runs one round (see the module's doc) and returns what it saw; asserts nothing about
    loss, only that the round could run (processes start, the failover happens)."""
    started = time.monotonic()
    deadline = started + cfg.deadline
    out = Outcome(cfg)
    work.mkdir(parents=True, exist_ok=True)
    queue, primary = pick_queue(redis)
    out.queue = queue
    [replica] = redis.replicas(primary)
    schedulers = start_processes(redis, procs, work, cfg, queue)
    targets = [address for _, address in schedulers]
    log(f"queue {queue} on {primary.addr} (replica {replica.addr}); schedulers {targets}")

    confirmed = Confirmed(work)
    producers = Producers(targets, queue, cfg, work, confirmed, deadline)
    reader = Reader(targets)
    try:
        producers.start()
        wait_for(lambda: producers.failure or (producers.count() >= cfg.kill_submitted
                                               and confirmed.count() >= cfg.kill_confirmed),
                 60, what=f"{cfg.kill_submitted} submits and {cfg.kill_confirmed} results acknowledged")
        if producers.failure:
            raise producers.failure
        cut = None
        if cfg.fault == "lag":
            cut = cut_replication(redis, primary)
            cut_at = time.monotonic()  # from here on every write is on the primary only

            def lagging() -> bool:
                if unreplicated(primary, cut) == 0:
                    return False
                acked = producers.acknowledged_since(cut_at) + confirmed.count_since(cut_at)
                return acked >= cfg.lag_acknowledged or waiting_in_wait(primary)

            wait_for(lagging, 30, what="writes on the primary that its replica lacks")
            out.acknowledged_while_cut = producers.acknowledged_since(cut_at) + confirmed.count_since(cut_at)
        elif cfg.fault != "kill":
            raise ValueError(f"unknown fault {cfg.fault!r}")

        # Just before the kill: what was confirmed, then what a client reads.
        confirmed_before = confirmed.snapshot()
        submitted_before = producers.snapshot()
        reading = time.monotonic()
        observed = reader.read(set(submitted_before.values()) | confirmed_before)
        out.read_before_kill_s = time.monotonic() - reading
        out.unreplicated_bytes = unreplicated(primary, replica)
        killed_at = time.monotonic()
        redis.kill_primary_for(redis.slot_of(f"cv:{{q:{queue}}}:r:0"))
        out.confirmed_before_kill = len(confirmed_before)
        out.submitted_at_kill = len(submitted_before)
        out.in_flight_at_kill = len(submitted_before) - len(confirmed_before & set(submitted_before.values()))
        succeeded_before = {t: s for t, s in observed.items() if s.state == SUCCEEDED}
        out.observed_before_kill = len(succeeded_before)
        log(f"killed {primary.addr}: {len(submitted_before)} submitted, {len(confirmed_before)} confirmed, "
            f"{out.unreplicated_bytes} bytes unreplicated")

        probe: dict[str, Any] = {}
        probe_thread = threading.Thread(target=_probe, args=(targets, queue, work, deadline, probe), daemon=True)
        probe_thread.start()
        if cut is not None:
            mend_replication(cut)
        redis.wait_failover(primary, 30)
        out.failover_s = time.monotonic() - killed_at
        # The killed node is started again at once (as an orchestrator would), while the tasks
        # read SUCCEEDED before the kill are read again.
        restarted: dict[str, Any] = {}
        restarter = threading.Thread(target=_restart, args=(redis, primary, killed_at, restarted), daemon=True)
        restarter.start()
        reading = time.monotonic()
        after = reader.read(confirmed_before | set(succeeded_before))
        out.read_after_failover_s = time.monotonic() - reading
        out.reverted_after_failover = sorted(t for t, s in after.items() if s.state != SUCCEEDED)
        restarter.join(40)
        if "error" in restarted or "at" not in restarted:
            raise AssertionError(f"the killed node did not come back as a replica: {restarted.get('error')}")
        out.restart_s = restarted["at"]
        log(f"failover after {out.failover_s:.2f} s, replica back after {out.restart_s:.2f} s")

        producers.join()
        probe_thread.join(max(0.1, deadline - time.monotonic()))
        out.first_submit_s = probe.get("at", float("nan")) - killed_at
        ids = producers.snapshot()
        out.submitted = len(ids)
        out.submit_errors = producers.errors
        out.unacknowledged_keys = sorted(set(range(cfg.tasks)) - set(ids))

        everything = [*ids.values(), *([probe["id"]] if "id" in probe else [])]
        read = sorted(set(everything) | confirmed_before)

        def settled() -> dict[str, Seen] | None:
            final = reader.read(read)
            return final if all(s.state in TERMINAL or s.state == 0 for s in final.values()) else None

        final = cast(dict[str, Seen], wait_for(settled, max(1.0, deadline - time.monotonic()), interval=0.2,
                                               what="every acknowledged task to finish (or be gone)"))
        out.lost_submits = sorted(t for t in ids.values() if final[t].state == 0)
        out.wrong = sorted(t for i, t in ids.items() if final[t].state != 0
                           and (final[t].state != SUCCEEDED or final[t].value != expected(i)))
        out.lost_results = sorted(t for t in confirmed_before if final[t] != observed[t] or final[t].state != SUCCEEDED)
        out.observed_lost = sorted(t for t, s in succeeded_before.items() if final.get(t) != s)
        out.ran_twice = sorted(i for i, n in runs(work).items() if n > 1 and i != PROBE)
        with Client(targets[0]) as client:
            listed = {t.id for t in client.admin.iter_tasks(queue, page_size=1000)}
        out.extra_tasks = sorted(listed - set(everything))
        out.schedulers_serving = all(proc.alive() and serving(address) for proc, address in schedulers)
        if out.schedulers_serving:  # each replica still takes a task and returns its result
            for n, (_, address) in enumerate(schedulers):
                i = 10_000 + n
                with Client(address) as client:
                    value = client.run(TASK, [i, 100_000 + i, 0, str(work)], queue=queue, timeout=30)
                    out.schedulers_serving &= value == expected(i)
    finally:
        confirmed.stop()
        reader.close()
    out.round_s = time.monotonic() - started
    out.log_excerpts = {p.name: [line for line in p.output().splitlines()
                                 if " WARNING " in line or " ERROR " in line or "Traceback" in line][:20]
                        for p in procs.procs}
    return out


def _restart(redis: RedisClusterServers, node: Node, killed_at: float, out: dict[str, Any]) -> None:
    try:
        redis.restart(node, 30)
        out["at"] = time.monotonic() - killed_at
    except BaseException as exc:  # reported by run_round
        out["error"] = exc


def _probe(targets: Sequence[str], queue: str, work: Path, deadline: float, out: dict[str, Any]) -> None:
    """Submits one task (idempotency key "probe") from the kill on, until it is acknowledged."""
    call = Call(TASK, [PROBE, 100_000 + PROBE, 0, str(work)], {}, SubmitOptions(queue=queue, idempotency_key="probe"))
    with Client(",".join(targets), timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                out["id"] = client.submit_many([call])[0].id
                out["at"] = time.monotonic()
                return
            except (ConveyorError, grpc.RpcError):
                continue



# -- WAIT's cost --------------------------------------------------------------------------------


def measure_throughput(redis: RedisClusterServers, procs: Cluster, work: Path, cfg: Round, samples: int = 300
                       ) -> dict[str, float]:
    """What `--redis-wait-replicas cfg.wait_replicas` costs on a healthy cluster: the latency of
    `samples` single-task submits made one after another (each one round trip, WAIT included),
    then the throughput of cfg.tasks tasks (cfg.task_seconds each) from the producers' first
    submit until every result is confirmed to its worker. The processes are started here, in
    `procs`, and left to the caller to stop."""
    work.mkdir(parents=True, exist_ok=True)
    queue, _ = pick_queue(redis, prefix=f"tp{cfg.wait_replicas}")
    schedulers = start_processes(redis, procs, work, cfg, queue)
    targets = [address for _, address in schedulers]
    confirmed = Confirmed(work)
    try:
        latencies = []
        with Client(targets[0]) as client:
            for n in range(samples):
                call = Call(TASK, [-2, 0, 0, str(work)], {}, SubmitOptions(queue=queue, idempotency_key=f"lat{n}"))
                began = time.perf_counter()
                client.submit_many([call])
                latencies.append(time.perf_counter() - began)
        wait_for(lambda: confirmed.count() >= samples, 60, what="the latency samples to finish")
        began = time.monotonic()
        producers = Producers(targets, queue, replace(cfg, window=cfg.tasks), work, confirmed, began + cfg.deadline)
        producers.start()
        wait_for(lambda: producers.failure or confirmed.count() >= samples + cfg.tasks, cfg.deadline, interval=0.01,
                 what=f"{cfg.tasks} tasks to finish")
        elapsed = time.monotonic() - began
        producers.join()
    finally:
        confirmed.stop()
    latencies.sort()
    return {"wait_replicas": cfg.wait_replicas, "tasks_per_s": round(cfg.tasks / elapsed, 1),
            "submit_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "submit_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2)}
