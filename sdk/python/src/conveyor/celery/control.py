"""`app.control` (Celery's remote control) on Conveyor's operations calls: revoke is a cancel,
inspect reads the worker registry (ListWorkers, GetTask), shutdown and pool_grow/pool_shrink
are worker control (ShutdownWorker, SetConcurrency). Replies are keyed by worker id, as
Celery's are by node name; a call with no worker to answer returns None, as Celery's does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.admin import WorkerInfo
from conveyor.celery.exceptions import Unsupported
from conveyor.celery.result import check_signal
from conveyor.errors import NotFound
from conveyor.serialization import decode_call

REFUSED: dict[str, str] = {
    "rate_limit": "rate limits go with the task (@app.task(rate_limit=...)) or the scheduler's --rate-limit",
    "time_limit": "time limits go with the task (@app.task(time_limit=...)) or each call",
    "add_consumer": "a worker's queues are its -Q; start a worker for the queue",
    "cancel_consumer": "a worker's queues are its -Q; drain it (conveyor worker drain ID) and start another",
    "enable_events": "there are no worker events: `conveyor watch ID`, the dashboard and OpenTelemetry",
    "disable_events": "there are no worker events",
    "heartbeat": "workers heartbeat the scheduler on their stream by themselves",
    "election": "the scheduler elects its beat leader itself",
    "broadcast": "control messages are the operations calls (client.admin), not broadcasts",
    "autoscale": "autoscaling is a worker flag: conveyor-worker -P processes --autoscale MAX,MIN",
    "purge": "purge a queue by name: conveyor queue purge QUEUE (client.admin.purge_queue)",
    "discard_all": "purge a queue by name: conveyor queue purge QUEUE (client.admin.purge_queue)",
    "revoke_by_stamped_headers": "stamped headers do not exist in Conveyor",
}
INSPECT_REFUSED: dict[str, str] = {
    "scheduled": "delayed tasks wait in the scheduler, not in workers: conveyor tasks --state scheduled",
    "reserved": "a worker's prefetched leases are ACTIVE like running ones: inspect().active()",
    "revoked": "a revoked task is CANCELLED in its record: conveyor tasks --state cancelled",
    "conf": "a worker's settings are its flags",
    "query_task": "read a task by id: AsyncResult(id) or conveyor task ID",
    "memdump": "there is no memory dump call", "memsample": "there is no memory sample call",
    "objgraph": "there is no object graph call", "report": "use conveyor worker show ID",
    "clock": "there is no logical clock",
}


def _refused(table: dict[str, str], owner: str, name: str) -> Any:
    if name in table:
        raise Unsupported(f"{owner}.{name}()", table[name])
    raise AttributeError(name)


class Inspect:
    """`app.control.inspect()`: what the connected workers run, know and are."""

    def __init__(self, app: Any, destination: Sequence[str] | None = None) -> None:
        self.app = app
        self.destination = None if destination is None else set(destination)

    def _workers(self) -> list[WorkerInfo]:
        workers = self.app.client.admin.list_workers()
        return [w for w in workers if self.destination is None or w.id in self.destination]

    def _reply(self, answer: Any) -> dict[str, Any] | None:
        replies = {w.id: answer(w) for w in self._workers()}
        return replies or None

    def active(self, safe: Any = None) -> dict[str, list[dict[str, Any]]] | None:
        """Each worker's running (and prefetched) tasks, as Celery describes them."""
        return self._reply(lambda w: [t for t in (self._task(w, i) for i in w.active_task_ids) if t is not None])

    def _task(self, worker: WorkerInfo, task_id: str) -> dict[str, Any] | None:
        try:
            record = self.app.client.get_task(task_id)
        except NotFound:
            return None
        args, kwargs = decode_call(record.payload, record.content_type)
        return {"id": record.id, "name": record.name, "type": record.name, "args": args, "kwargs": kwargs,
                "hostname": worker.id, "worker_pid": worker.pid, "acknowledged": False,
                "time_start": record.started_at.ToMilliseconds() / 1000 if record.HasField("started_at") else None,
                "delivery_info": {"exchange": "", "routing_key": record.queue, "priority": record.priority,
                                  "redelivered": record.attempt > 1}}

    def registered(self, *taskinfoitems: Any) -> dict[str, list[str]] | None:
        """The task names each worker declared (a worker that declares none takes any)."""
        return self._reply(lambda w: sorted(w.task_names))

    registered_tasks = registered

    def active_queues(self) -> dict[str, list[dict[str, Any]]] | None:
        return self._reply(lambda w: [{"name": q, "routing_key": q} for q in w.queues])

    def stats(self) -> dict[str, dict[str, Any]] | None:
        return self._reply(lambda w: {"pid": w.pid, "pool": {"max-concurrency": w.concurrency},
                                      "prefetch_count": w.prefetch, "total": {"succeeded": w.succeeded,
                                                                              "failed": w.failed},
                                      "sdk": w.sdk, "scheduler": w.scheduler_id, "draining": w.draining})

    def ping(self) -> dict[str, dict[str, str]] | None:
        return self._reply(lambda w: {"ok": "pong"})

    def __getattr__(self, name: str) -> Any:
        return _refused(INSPECT_REFUSED, "inspect()", name)


class Control:
    """`app.control`: revoke, inspect, ping, shutdown, pool_grow and pool_shrink."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def inspect(self, destination: Sequence[str] | None = None, timeout: float = 1.0, **kwargs: Any) -> Inspect:
        return Inspect(self.app, destination)

    def revoke(self, task_id: str | Sequence[str], destination: Any = None, terminate: bool = False,
               signal: Any = None, **kwargs: Any) -> None:
        """Cancels the tasks (see AsyncResult.revoke): not started ones never run, running ones stop."""
        if destination is not None:
            raise Unsupported("revoke(destination=...)", "a cancel goes to whichever worker runs the task")
        check_signal(signal)
        for one in [task_id] if isinstance(task_id, str) else task_id:
            self.app.client.cancel(one)

    def terminate(self, task_id: str | Sequence[str], destination: Any = None, signal: Any = None,
                  **kwargs: Any) -> None:
        self.revoke(task_id, destination, terminate=True, signal=signal)

    def ping(self, destination: Sequence[str] | None = None, timeout: float = 1.0, **kwargs: Any
             ) -> list[dict[str, dict[str, str]]]:
        """[{worker id: {'ok': 'pong'}}, ...] for the connected workers."""
        return [{worker: reply} for worker, reply in (Inspect(self.app, destination).ping() or {}).items()]

    def _targets(self, destination: Sequence[str] | None) -> list[WorkerInfo]:
        return Inspect(self.app, destination)._workers()

    def shutdown(self, destination: Sequence[str] | None = None, **kwargs: Any) -> None:
        """Asks the workers (all, or those named) to drain and exit, as on SIGTERM."""
        for worker in self._targets(destination):
            self.app.client.admin.shutdown_worker(worker.id, "app.control.shutdown()")

    def pool_grow(self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any) -> None:
        for worker in self._targets(destination):
            self.app.client.admin.set_concurrency(worker.id, worker.concurrency + n)

    def pool_shrink(self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any) -> None:
        for worker in self._targets(destination):
            self.app.client.admin.set_concurrency(worker.id, max(1, worker.concurrency - n))

    def __getattr__(self, name: str) -> Any:
        return _refused(REFUSED, "app.control", name)
