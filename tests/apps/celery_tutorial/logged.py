# Task logging, from "Tasks": https://docs.celeryq.dev/en/stable/userguide/tasks.html#logging
from conveyor.celery import Celery
from conveyor.celery.utils.log import get_task_logger

app = Celery('logged', broker='conveyor://localhost:50051')
logger = get_task_logger(__name__)


@app.task
def add(x, y):
    logger.info('Adding %s + %s', x, y)
    return x + y
