"""The worker: slots, prefetch, cancels and graceful shutdown, over one `Stream`.

Credit equals free slots plus free prefetch room: the hello grants them, and each finished
attempt returns one credit with its ack, so the scheduler never pushes more than the worker
can start at once, plus at most `prefetch` tasks that wait here for a slot (none by default).
Each attempt runs on the runner of its handler's kind (`runner.py`), wrapped in telemetry's
Trace while telemetry is on; every runner reports through `_finished` exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import App
from conveyor.v1 import task_pb2, worker_service_pb2
from conveyor_worker import __version__, outcomes, telemetry
from conveyor_worker.config import WorkerConfig
from conveyor_worker.outcomes import Attempt
from conveyor_worker.process_runner import ProcessRunner
from conveyor_worker.runner import LoopRunner, Runner
from conveyor_worker.stream import Stream
from conveyor_worker.thread_runner import ThreadRunner

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, app: App, config: WorkerConfig) -> None:
        self.app = app
        self.config = config
        self.concurrency = config.concurrency
        """Slots: attempts run at once (config.concurrency until a SetConcurrency)."""
        self.started_at = Timestamp()
        self.started_at.GetCurrentTime()
        self.succeeded = 0
        self.failed = 0
        """Attempts finished with a result / a failure since the process started (heartbeats)."""
        self.drained = False
        """Drained but connected (DrainWorker.stay_connected): no new work, for good."""
        self._withheld = 0
        """Credits still to withhold after a shrink: running attempts beyond the new slots."""
        self.loop_runner = LoopRunner(self._finished, self._flush)
        self.pools: dict[str, Runner] = {}
        """Runners of plain functions by pool name, the default (the first of config.pools) first."""
        for pool in config.pools:
            if pool == "threads":
                self.pools[pool] = ThreadRunner(config.concurrency, self._finished, self._flush)
            else:
                assert config.process_pool is not None, "--pool processes needs its PoolOptions"
                depth = 1 if not config.prefetch else min(64, 1 + config.prefetch // config.concurrency)
                self.pools[pool] = ProcessRunner(config.process_pool, config.concurrency, depth, self._finished,
                                                 self._flush, self.set_concurrency)
        self._default_pool = self.pools[config.pools[0]]
        self.running: dict[str, Attempt] = {}
        """task id -> attempts in progress (queued in a runner for a slot included)."""
        self.waiting: collections.OrderedDict[str, task_pb2.LeasedTask] = collections.OrderedDict()
        """task id -> prefetched lease of an async handler waiting for a free slot."""
        self.stopping = False
        self.stopped = asyncio.Event()
        self.stream = Stream(config, self, self._finished_all)
        self._drained: asyncio.Future[None] | None = None
        """Set by shutdown(): resolved when the last attempt in progress finishes."""
        self._shutdown: asyncio.Task[None] | None = None
        self._done_all = False
        """shutdown() has half-closed (or given up on) the stream: do not reconnect."""

    @property
    def free_slots(self) -> int:
        """Credit the worker can grant: free slots plus free prefetch room (negative after a
        shrink, while more attempts run than the new slots)."""
        return self.concurrency + self.config.prefetch - len(self.running) - len(self.waiting)

    @property
    def taking_work(self) -> bool:
        return not self.stopping and not self.drained

    def runner_for(self, attempt: Attempt) -> Runner:
        definition = attempt.definition
        if definition.is_async:
            return self.loop_runner
        return self._default_pool if definition.pool is None else self.pools[definition.pool]

    def _runners(self) -> tuple[Runner, ...]:
        return (self.loop_runner, *self.pools.values())

    async def run(self) -> None:
        """Holds a stream until stop(), then stops the runners."""
        for runner in self._runners():
            runner.open()
        await self.stream.run()
        for runner in self._runners():
            runner.close()
        self.stopped.set()

    def _finished_all(self) -> bool:
        """Nothing left for a stream to do: stopped, nothing running, every ack confirmed."""
        return self._done_all or (self.stopping and not self.running and self.stream.all_confirmed())

    # What the stream asks of the worker.

    def hello(self) -> worker_service_pb2.WorkerHello:
        hello = worker_service_pb2.WorkerHello(
            worker_id=self.config.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
            queues=self.config.queues, concurrency=self.concurrency, task_names=self.task_names(),
            credit=max(self.free_slots, 0) if self.taking_work else 0, sdk=f"conveyor-python/{__version__}",
            prefetch=self.config.prefetch, started_at=self.started_at, draining=self.drained,
            held=[*(worker_service_pb2.LeaseRef(task_id=task_id, lease_token=attempt.lease_token)
                    for task_id, attempt in self.running.items()),
                  *(worker_service_pb2.LeaseRef(task_id=task_id, lease_token=leased.lease_token)
                    for task_id, leased in self.waiting.items())])
        self._withheld = max(-self.free_slots, 0)  # more running than slots: the next finishes return none
        return hello

    def task_names(self) -> list[str]:
        """The names this worker declares: the scheduler leases it only these, so a task that
        asks for a pool this worker does not run goes to a worker that does."""
        return sorted(name for name, definition in self.app.tasks.items()
                      if definition.is_async or definition.pool is None or definition.pool in self.pools)

    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat:
        return worker_service_pb2.WorkerHeartbeat(
            active_task_ids=list(self.running), succeeded=self.succeeded, failed=self.failed,
            concurrency=self.concurrency)

    def leased(self, tasks: Sequence[task_pb2.LeasedTask]) -> None:
        traced = telemetry.enabled()  # once a batch: off, telemetry costs this call and nothing more
        for leased in tasks:
            self._start(leased, traced, may_wait=True)

    def request_shutdown(self) -> None:
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self.shutdown())

    def _start(self, leased: task_pb2.LeasedTask, traced: bool, may_wait: bool = False) -> None:
        """Starts one attempt on its runner. A runner that queues (threads, processes) holds
        it while its slots are busy; an async handler with `may_wait` and no free slot waits
        in `waiting` (prefetched) until one frees. One that cannot run is reported at once."""
        task = leased.task
        task_id = task.id
        if not self.taking_work:  # arrived after we said we were draining: hand it straight back
            self.stream.send(worker_service_pb2.WorkerReport(releases=[
                worker_service_pb2.LeaseRef(task_id=task_id, lease_token=leased.lease_token)]))
            return
        attempt = outcomes.prepare(self.app, leased, outcomes.context_for(leased))
        if not isinstance(attempt, Attempt):  # unknown name, bad payload: fails without running
            self._report(attempt)
            return
        runner = self.runner_for(attempt)
        if may_wait and not runner.queues and len(self.running) >= self.concurrency:
            self.waiting[task_id] = leased
            return
        self.running[task_id] = attempt
        if not traced:
            runner.start(attempt)
            return
        trace = attempt.trace = telemetry.begin(leased)
        with trace.current():  # the runner copies the context: the span is current in the handler
            runner.start(attempt)

    def lost(self, task_id: str) -> None:
        """A held lease the new stream could not adopt: its ack would be refused, so it stops."""
        log.warning("lease of task %s was lost while reconnecting (handed back, finished or leased anew); "
                    "stopping its attempt", task_id)
        self._stop(task_id, report=False)

    def cancel(self, task_id: str) -> None:
        """A cancel request: an attempt that has not started is reported cancelled unrun."""
        self._stop(task_id, report=True)

    def _stop(self, task_id: str, *, report: bool) -> None:
        """Stops one attempt: a prefetched one, or one still queued in its runner, never runs
        (with `report`, it is reported cancelled); a running one is cancelled by its runner
        (a lost lease's ack is refused, but it returns the slot's credit)."""
        leased = self.waiting.pop(task_id, None)
        if leased is not None:
            if report:
                self._report(outcomes.cancelled(task_id, leased.lease_token))
            return
        attempt = self.running.get(task_id)
        if attempt is None:
            return
        attempt.ctx._cancel.set()
        runner = self.runner_for(attempt)
        if runner.withdraw(attempt):  # queued for a slot: never runs
            self._forget(attempt, None)
            if report:
                self._report(outcomes.cancelled(task_id, attempt.lease_token))
        else:  # reported through _finished: cancelled (its ack returns its credit)
            runner.cancel(attempt)

    def _finished(self, attempt: Attempt, ack: task_pb2.TaskAck) -> None:
        """A runner's report of an attempt that ran: its ack goes out with one credit."""
        self._forget(attempt, ack)
        self._report(ack)

    def _forget(self, attempt: Attempt, ack: task_pb2.TaskAck | None) -> None:
        if attempt.trace is not None:
            attempt.trace.end(ack)
        self.running.pop(attempt.task_id, None)
        if self.waiting:
            self._start_waiting()
        if self._drained is not None and not self.running and not self._drained.done():
            self._drained.set_result(None)

    def _start_waiting(self) -> None:
        """Starts prefetched attempts in the slots that are free (after one finished, or grew)."""
        while self.waiting and len(self.running) < self.concurrency and self.taking_work:
            self._start(self.waiting.popitem(last=False)[1], telemetry.enabled())

    def _report(self, ack: task_pb2.TaskAck) -> None:
        """Queues an ack and its credit (none while draining, or for a slot a shrink took away)."""
        outcome = ack.WhichOneof("outcome")
        if outcome == "result":
            self.succeeded += 1
        elif outcome == "failure":
            self.failed += 1
        credit = 0
        if self.taking_work and self._withheld:  # after a shrink: this slot is gone
            self._withheld -= 1
        elif self.taking_work:
            credit = 1
        self.stream.ack(ack, credit)

    def _flush(self) -> None:
        self.stream.flush()

    def stop(self) -> None:
        """Take no new work; in-flight attempts get the grace period (see shutdown) and
        prefetched ones are handed back at once."""
        if not self.stopping:
            was_taking = self.taking_work
            self.stopping = True
            if was_taking:
                self._take_no_more()

    def drain(self) -> None:
        """Take no new work but stay connected (DrainWorker.stay_connected): in-flight
        attempts finish and are acked, prefetched ones are handed back at once."""
        if self.taking_work:
            self.drained = True
            self._take_no_more()

    def _take_no_more(self) -> None:
        """Voids the credit and hands back what has not started, in one draining report."""
        self.stream.void_credit()
        self._withheld = 0
        releases = [worker_service_pb2.LeaseRef(task_id=task_id, lease_token=leased.lease_token)
                    for task_id, leased in self.waiting.items()]
        self.waiting.clear()
        # Prefetched attempts queued in a runner, newest first, down to the slots (those
        # within the slots were due to start now: they finish).
        for attempt in reversed(list(self.running.values())):
            if len(self.running) <= self.concurrency:
                break
            if self.runner_for(attempt).withdraw(attempt):
                releases.append(worker_service_pb2.LeaseRef(task_id=attempt.task_id, lease_token=attempt.lease_token))
                self._forget(attempt, None)
        self.stream.send(worker_service_pb2.WorkerReport(draining=True, releases=releases))

    def set_concurrency(self, concurrency: int) -> None:
        """Grows or shrinks the slots (SetConcurrency). Growing starts prefetched tasks in the
        new slots and grants the new credit; shrinking lets running attempts finish and
        withholds the credit of as many as the slots shrank by."""
        if not 1 <= concurrency <= 10_000 or concurrency == self.concurrency:
            return
        old, self.concurrency = self.concurrency, concurrency
        log.info("concurrency %d -> %d", old, concurrency)
        for runner in self._runners():
            runner.resize(concurrency)
        if concurrency < old:
            self._withheld += old - concurrency
        else:
            grown = concurrency - old
            repaid = min(self._withheld, grown)
            self._withheld -= repaid
            self._start_waiting()
            self.stream.grant(grown - repaid if self.taking_work else 0)
        self.stream.beat()  # the registry shows the new slots now

    async def shutdown(self) -> None:
        """Graceful stop: finish within the grace period, hand back the rest, close."""
        self.stop()
        log.info("draining: %d tasks in flight, grace period %.0fs", len(self.running), self.config.grace_period)
        if self.running:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained}, timeout=self.config.grace_period)
        leftovers = list(self.running.values())
        if leftovers:
            log.warning("handing back %d unfinished tasks", len(leftovers))
            self.stream.send(worker_service_pb2.WorkerReport(releases=[
                worker_service_pb2.LeaseRef(task_id=a.task_id, lease_token=a.lease_token) for a in leftovers]))
            for attempt in leftovers:
                self.runner_for(attempt).hand_back(attempt)
                self._forget(attempt, None)
        await self.stream.settle(10)  # a drain ends only once the scheduler has recorded every outcome
        self._done_all = True
        self.stream.half_close()
        try:
            await asyncio.wait_for(self.stopped.wait(), 10)
        except TimeoutError:
            self.stream.cancel()
