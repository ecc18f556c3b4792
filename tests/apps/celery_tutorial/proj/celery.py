# "Next steps": https://docs.celeryq.dev/en/stable/getting-started/next-steps.html
from conveyor.celery import Celery

app = Celery('proj',
             broker='conveyor://localhost:50051',
             backend='rpc://',
             include=['proj.tasks'])

# Optional configuration, see the application user guide.
app.conf.update(
    result_expires=3600,
)


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f'Request: {self.request!r}')
