"""Run a Celery app on Conveyor by changing one import: `from conveyor.celery import Celery`.

Part of the SDK, with no Celery dependency. Celery's app, tasks, results, canvas, beat schedule,
routing, logging and remote control are mapped onto Conveyor's; what does not map raises
`Unsupported`, naming it and saying why. docs/migrating-from-celery.md has the whole table.
Celery's module paths work too: conveyor.celery.result, .schedules, .exceptions, .states,
.canvas, .utils.log.
"""

from conveyor.celery import states
from conveyor.celery.app import Celery, SharedTask, shared_task
from conveyor.celery.canvas import Signature, chain, chord, group, signature, subtask
from conveyor.celery.current import current_app
from conveyor.celery.exceptions import MaxRetriesExceededError, TaskRevokedError, Unsupported
from conveyor.celery.log import get_task_logger
from conveyor.celery.result import AsyncResult, EagerResult, GroupResult, WorkflowResult
from conveyor.celery.schedules import crontab, schedule, solar
from conveyor.celery.task import Task

__all__ = ["AsyncResult", "Celery", "EagerResult", "GroupResult", "MaxRetriesExceededError", "SharedTask",
           "Signature", "Task", "TaskRevokedError", "Unsupported", "WorkflowResult", "chain", "chord", "crontab",
           "current_app", "get_task_logger", "group", "schedule", "shared_task", "signature", "solar", "states",
           "subtask"]
