"""Celery's state names (`celery.states`) and how Conveyor's task and workflow states map onto them.

| Conveyor                              | Celery   |
|---------------------------------------|----------|
| no such task (never was, or expired)  | PENDING  |
| QUEUED, or SCHEDULED before any run   | PENDING  |
| SCHEDULED after a failed attempt      | RETRY    |
| ACTIVE                                | STARTED  |
| SUCCEEDED                             | SUCCESS  |
| FAILED, DEAD                          | FAILURE  |
| CANCELLED, EXPIRED                    | REVOKED  |

RECEIVED is never reported: a task is ACTIVE from its lease on, and Conveyor does not tell a
prefetched lease from a running one. Celery reports STARTED only with task_track_started;
Conveyor always does. Celery revokes a task that expires before it starts, so EXPIRED is REVOKED.
A workflow (a chain, group or chord) is PENDING while it runs, then SUCCESS, FAILURE or REVOKED.
"""

from __future__ import annotations

from conveyor.common import TaskState
from conveyor.workflow_snapshots import WorkflowState

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
RETRY = "RETRY"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = READY_STATES | UNREADY_STATES

TASK_STATES: dict[TaskState, str] = {
    TaskState.UNSPECIFIED: PENDING,
    TaskState.SCHEDULED: PENDING,
    TaskState.QUEUED: PENDING,
    TaskState.ACTIVE: STARTED,
    TaskState.SUCCEEDED: SUCCESS,
    TaskState.FAILED: FAILURE,
    TaskState.DEAD: FAILURE,
    TaskState.CANCELLED: REVOKED,
    TaskState.EXPIRED: REVOKED,
}
"""Each Conveyor state's Celery name; a SCHEDULED task that already ran once is RETRY (task_state)."""

WORKFLOW_STATES: dict[WorkflowState, str] = {
    WorkflowState.UNSPECIFIED: PENDING,
    WorkflowState.RUNNING: PENDING,
    WorkflowState.SUCCEEDED: SUCCESS,
    WorkflowState.FAILED: FAILURE,
    WorkflowState.CANCELLED: REVOKED,
}


def task_state(state: TaskState, attempt: int) -> str:
    """The Celery name of a task in `state` whose attempt counter is `attempt` (0 before its first run)."""
    if state is TaskState.SCHEDULED and attempt > 0:
        return RETRY
    return TASK_STATES[state]


def workflow_state(state: WorkflowState) -> str:
    return WORKFLOW_STATES[state]
