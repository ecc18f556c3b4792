"""What the sync and async clients share: states, calls, channel options, outcomes."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.duration_pb2 import Duration

from conveyor.errors import NotFound, TaskCancelled, TaskError, TaskExpired, TaskFailed
from conveyor.options import SubmitOptions, build_spec
from conveyor.serialization import decode_result
from conveyor.v1 import task_pb2, task_service_pb2

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_IDS = 10_000
"""Most ids in one GetResults call (the scheduler's batch limit)."""
MAX_WAIT_CHUNK = 60.0
"""Longest single GetResult wait; longer waits are re-issued (each one is a push, not a poll)."""

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
]


class TaskState(enum.IntEnum):
    """Where a task is in its life (mirrors conveyor.v1.TaskState)."""

    UNSPECIFIED = 0
    SCHEDULED = 1
    QUEUED = 2
    ACTIVE = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLED = 6
    EXPIRED = 7
    DEAD = 8

    @property
    def terminal(self) -> bool:
        return self >= TaskState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One state change of a watched task."""

    state: TaskState
    attempt: int
    at: float
    """When the scheduler saw it (time.time() seconds)."""
    task: task_pb2.Task | None = None
    """The full record, on the first and the terminal event."""

    @classmethod
    def of(cls, resp: task_service_pb2.WatchTaskResponse) -> TaskEvent:
        return cls(TaskState(resp.state), resp.attempt, resp.at.ToMilliseconds() / 1000,
                   resp.task if resp.HasField("task") else None)


@dataclass(frozen=True, slots=True)
class Call:
    """A task invocation not yet submitted (Celery's signature): name, arguments, options."""

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: SubmitOptions = field(default_factory=SubmitOptions)

    def spec(self, *, pushed: bool = True) -> task_pb2.TaskSpec:
        return build_spec(self.name, self.args, self.kwargs, self.options, pushed=pushed)


def submit_request(calls: Sequence[Call | task_pb2.TaskSpec]) -> task_service_pb2.SubmitRequest:
    """The request for `calls`. Results are pushed (TaskSpec.push_result) only for a task submitted
    alone, the ordinary path: a batch reads its results in batched calls, and pushing results
    nobody may read cost `make bench`'s batch scenario a quarter of its throughput. A given
    TaskSpec is sent as it is."""
    alone = len(calls) == 1
    return task_service_pb2.SubmitRequest(tasks=[c if isinstance(c, task_pb2.TaskSpec) else c.spec(pushed=alone)
                                                 for c in calls])


def duration(seconds: float) -> Duration:
    return Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))


def ids_of(tasks: Sequence[Any]) -> list[str]:
    """Task ids from ids or handles."""
    return [t if isinstance(t, str) else t.id for t in tasks]


def outcome(resp: task_service_pb2.GetResultResponse) -> Any:
    """The task's return value, or the TaskError its terminal state stands for."""
    state = TaskState(resp.state)
    if state is TaskState.SUCCEEDED:
        return decode_result(resp.result.data, resp.result.content_type)
    if state in (TaskState.FAILED, TaskState.DEAD):
        raise TaskFailed(resp.task_id, state.name, resp.error.type, resp.error.message, resp.error.traceback)
    if state is TaskState.CANCELLED:
        raise TaskCancelled(resp.task_id, state.name, "")
    if state is TaskState.EXPIRED:
        raise TaskExpired(resp.task_id, state.name, "it was not started before its expiry")
    if state is TaskState.UNSPECIFIED:  # GetResults' answer for an unknown task
        raise NotFound(f"no task {resp.task_id} (it never existed, or its record expired)")
    raise TaskError(resp.task_id, state.name, "not finished")
