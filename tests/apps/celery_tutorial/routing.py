# "Routing Tasks": https://docs.celeryq.dev/en/stable/userguide/routing.html
from conveyor.celery import Celery

app = Celery('routing', broker='conveyor://localhost:50051')
app.conf.task_routes = {
    'routing.import_feed': {'queue': 'feeds'},
    'routing.report_*': {'queue': 'reports'},
}


@app.task
def add(x, y):
    return x + y


@app.task
def import_feed(url):
    return f'imported {url}'


@app.task
def report_daily():
    return 'report'
