"""`get_task_logger` (Celery's `celery.utils.log`): a logger whose records say which task wrote
them, `name[id]: message` as Celery's worker shows them, with `task_name` and `task_id` set on
the record for formats that want them ('???' outside a task, as in Celery)."""

from __future__ import annotations

import logging

from conveyor.context import current_task


class TaskFields(logging.Filter):
    """Adds the running task's name and id to each record, and to its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            ctx = current_task()
        except LookupError:
            record.task_name = record.task_id = "???"
            return True
        record.task_name, record.task_id = ctx.name, ctx.id
        if not getattr(record, "_conveyor_task_prefixed", False):
            record.msg = f"{ctx.name}[{ctx.id}]: {record.msg}"
            record._conveyor_task_prefixed = True
        return True


def get_task_logger(name: str) -> logging.Logger:
    """The logger `name` (usually `__name__`), its records marked with the task that wrote them."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, TaskFields) for f in logger.filters):
        logger.addFilter(TaskFields())
    return logger


def get_logger(name: str) -> logging.Logger:
    """Celery's plain `get_logger`: the logger `name`."""
    return logging.getLogger(name)
