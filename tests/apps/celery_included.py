"""A module a conveyor.celery app names in `include`/`imports` (tests/unit/test_celery_settings.py):
its shared task registers on every app, so finalize() importing it is what the test sees."""

from conveyor.celery import shared_task


@shared_task
def ping() -> str:
    return "pong"
