# "Next steps" (add, mul, xsum) plus the task guide's bound tasks, retries, states and time limits.
import os
import time

from conveyor.celery.exceptions import SoftTimeLimitExceeded

from .celery import app


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task(bind=True)
def whoami(self, *args, **kwargs):
    req = self.request
    return {'id': req.id, 'task': req.task, 'retries': req.retries, 'args': list(req.args),
            'kwargs': req.kwargs, 'routing_key': req.delivery_info['routing_key'], 'hostname': req.hostname,
            'pid': os.getpid()}


@app.task(bind=True, max_retries=5)
def flaky(self, succeed_after):
    if self.request.retries < succeed_after:
        raise self.retry(exc=ConnectionError('not yet'), countdown=1)
    return self.request.retries


@app.task(autoretry_for=(ConnectionError,), retry_kwargs={'max_retries': 2}, default_retry_delay=0.1)
def always_down():
    raise ConnectionError('the service is down')


@app.task
def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return 'done'


@app.task
def divide(x, y):
    return x / y


@app.task(soft_time_limit=0.5, time_limit=30)
def cleans_up():
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        return 'cleaned up in a hurry'


@app.task(time_limit=0.5)
def too_slow():
    time.sleep(30)
