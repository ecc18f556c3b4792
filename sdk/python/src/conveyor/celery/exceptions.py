"""Celery's exception names (`celery.exceptions`) on Conveyor's, and `Unsupported`: what
conveyor.celery refuses, so a Celery program that leans on it fails at once and says why."""

from __future__ import annotations

from conveyor.errors import ConveyorError, ResultTimeout, Retry, SoftTimeLimitExceeded, TaskError, TimeLimitExceeded


class Unsupported(ConveyorError, ValueError):
    """A Celery setting, option or call that has no Conveyor meaning. Never silently ignored: the
    message names it and says why (and what to do instead)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name} is not supported by conveyor.celery: {why}")
        self.name = name
        self.why = why


class MaxRetriesExceededError(ConveyorError):
    """`self.retry()` without `exc=` once the task's max_retries are used up (Celery's name)."""


class TaskRevokedError(TaskError):
    """`get()` of a task revoked (Conveyor: CANCELLED) or expired before it started (Celery
    reports both as REVOKED)."""


TimeoutError = ResultTimeout  # Celery's name: `get(timeout=...)` ran out (a builtin TimeoutError too)

__all__ = ["MaxRetriesExceededError", "Retry", "SoftTimeLimitExceeded", "TaskRevokedError", "TimeLimitExceeded",
           "TimeoutError", "Unsupported"]
