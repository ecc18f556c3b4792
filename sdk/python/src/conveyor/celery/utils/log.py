"""`celery.utils.log`'s import path: see conveyor.celery.log."""

from conveyor.celery.log import get_logger, get_task_logger

__all__ = ["get_logger", "get_task_logger"]
