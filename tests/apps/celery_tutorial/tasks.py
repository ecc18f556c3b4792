# "First steps with Celery": https://docs.celeryq.dev/en/stable/getting-started/first-steps-with-celery.html
from conveyor.celery import Celery

app = Celery('tasks', backend='rpc://', broker='conveyor://localhost:50051')


@app.task
def add(x, y):
    return x + y
