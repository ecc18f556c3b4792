# "Periodic Tasks": https://docs.celeryq.dev/en/stable/userguide/periodic-tasks.html
from datetime import timedelta

from conveyor.celery import Celery
from conveyor.celery.schedules import crontab

app = Celery('periodic', broker='conveyor://localhost:50051')


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    # Calls test('hello') every 10 seconds.
    sender.add_periodic_task(10.0, test.s('hello'), name='add every 10')


app.conf.beat_schedule = {
    # Executes every Monday morning at 7:30 a.m.
    'add-every-monday-morning': {
        'task': 'periodic.add',
        'schedule': crontab(hour=7, minute=30, day_of_week=1),
        'args': (16, 16),
    },
    'tick-every-second': {
        'task': 'periodic.add',
        'schedule': timedelta(seconds=1),
        'args': (1, 1),
    },
}
app.conf.timezone = 'Europe/Berlin'


@app.task
def test(arg):
    print(arg)
    return arg


@app.task
def add(x, y):
    z = x + y
    print(z)
    return z
