"""A raw WorkerService.Connect stream for tests: what a worker in another language would do,
message by message, over real gRPC, with no SDK in between."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import grpc

from conveyor.v1 import task_pb2, worker_service_pb2, worker_service_pb2_grpc

_END = object()


class RawWorkerStream:
    """One Connect stream: `send` queues a request, `recv` waits for the next response."""

    def __init__(self, target: str, worker_id: str, queues: Sequence[str], *, credit: int = 0,
                 task_names: Sequence[str] = (), held: Sequence[tuple[str, str]] = ()) -> None:
        self.channel = grpc.insecure_channel(target)
        self._requests: queue.Queue[object] = queue.Queue()
        self._responses: queue.Queue[worker_service_pb2.ConnectResponse | BaseException | None] = queue.Queue()
        self._call = worker_service_pb2_grpc.WorkerServiceStub(self.channel).Connect(self._iterate())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(worker_service_pb2.ConnectRequest(hello=worker_service_pb2.WorkerHello(
            worker_id=worker_id, queues=list(queues), credit=credit, task_names=list(task_names),
            held=[worker_service_pb2.LeaseRef(task_id=i, lease_token=t) for i, t in held])))
        self.accepted = self.recv("accepted").accepted
        self.leases: dict[str, task_pb2.LeasedTask] = {}

    def _iterate(self) -> Iterator[worker_service_pb2.ConnectRequest]:
        while (msg := self._requests.get()) is not _END:
            yield msg  # type: ignore[misc]

    def _read(self) -> None:
        try:
            for msg in self._call:
                self._responses.put(msg)
            self._responses.put(None)
        except grpc.RpcError as exc:
            self._responses.put(exc)

    def send(self, msg: worker_service_pb2.ConnectRequest) -> None:
        self._requests.put(msg)

    def recv(self, kind: str | None = None, timeout: float = 10.0) -> worker_service_pb2.ConnectResponse:
        """The next response (of `kind`, skipping none: another kind fails the test)."""
        msg = self._responses.get(timeout=timeout)
        if msg is None or isinstance(msg, BaseException):
            raise AssertionError(f"the stream ended: {msg!r}")
        if kind is not None and msg.WhichOneof("kind") != kind:
            raise AssertionError(f"expected a {kind}, got {msg}")
        return msg

    def take(self, count: int, timeout: float = 10.0) -> list[task_pb2.LeasedTask]:
        """Receives batches until `count` leases have arrived."""
        got: list[task_pb2.LeasedTask] = []
        while len(got) < count:
            got += self.recv("batch", timeout).batch.tasks
        for lt in got:
            self.leases[lt.task.id] = lt
        return got

    def report(self, *, acks: Sequence[task_pb2.TaskAck] = (), credit: int = 0, seq: int = 0,
               releases: Sequence[tuple[str, str]] = (), draining: bool = False) -> None:
        self.send(worker_service_pb2.ConnectRequest(report=worker_service_pb2.WorkerReport(
            acks=list(acks), credit=credit, seq=seq, draining=draining,
            releases=[worker_service_pb2.LeaseRef(task_id=i, lease_token=t) for i, t in releases])))

    def heartbeat(self) -> None:
        self.send(worker_service_pb2.ConnectRequest(heartbeat=worker_service_pb2.WorkerHeartbeat()))

    def close(self, timeout: float = 10.0) -> None:
        """Half-closes and waits until the scheduler ended the stream (it has handed back
        what it still owned by then)."""
        self._requests.put(_END)
        while (msg := self._responses.get(timeout=timeout)) is not None:
            if isinstance(msg, BaseException):
                raise AssertionError(f"the stream failed: {msg!r}")
        self.channel.close()

    def cancel(self) -> None:
        """Breaks the stream as a dead network would."""
        self._call.cancel()
        self._requests.put(_END)
        self._reader.join(10)
        self.channel.close()


def success(lt: task_pb2.LeasedTask, data: bytes = b"1") -> task_pb2.TaskAck:
    return task_pb2.TaskAck(task_id=lt.task.id, lease_token=lt.lease_token, result=task_pb2.TaskResult(data=data))
