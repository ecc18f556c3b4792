"""A Celery settings module, as `app.config_from_object("tests.apps.celery_settings")` reads it."""

from datetime import timedelta

task_default_priority = 3
task_time_limit = timedelta(minutes=5)
