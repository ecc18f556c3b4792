"""Celery's `celery.utils` import paths, so `from conveyor.celery.utils.log import get_task_logger` works."""
