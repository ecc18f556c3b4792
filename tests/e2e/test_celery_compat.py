"""Celery's tutorial programs on Conveyor (tests/apps/celery_tutorial: each is Celery's with only
the import and the broker URL changed), run by real workers started as the tutorials start
Celery's, `conveyor-worker -A MODULE -l INFO`, against a real scheduler; the producer is this
process. The tutorials' directory is on the path, as their working directory would be, and
CELERY_BROKER_URL points both sides at the test's scheduler (it wins over the URL in the code,
as in Celery); the workers are given no --scheduler, so they take it from the app.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Client, TimeLimitExceeded
from conveyor.celery import AsyncResult, GroupResult, TaskRevokedError, chain, chord, group, states
from tests.harness import ROOT, Cluster, Proc, spawn, unknown_id_like, wait_for

TUTORIAL = ROOT / "tests" / "apps" / "celery_tutorial"
WAIT = 60.0
MODULES = ("tasks", "proj", "proj.celery", "proj.tasks", "routing", "periodic", "logged")

Worker = Callable[..., Proc]


@pytest.fixture
def tutorial(scheduler: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The tutorials importable here and pointed at this test's scheduler; their apps' clients
    closed afterwards (the next test has another scheduler)."""
    monkeypatch.setenv("CELERY_BROKER_URL", f"conveyor://{scheduler}")
    monkeypatch.syspath_prepend(str(TUTORIAL))
    yield scheduler
    for name in MODULES:
        app = getattr(sys.modules.get(name), "app", None)
        if app is not None:
            app.close()


@pytest.fixture
def celery_worker(cluster: Cluster, tutorial: str) -> Worker:
    """Starts `conveyor-worker -A MODULE ARGS...` in the tutorials' directory, as a tutorial does."""
    def start(module: str, *args: str, name: str = "celery-worker") -> Proc:
        worker_id = f"{name}-{len(cluster.procs)}"
        cmd = [sys.executable, "-m", "conveyor_worker", "-A", module, "--loglevel", "INFO", "--worker-id", worker_id,
               *args]
        proc = spawn(name, cmd, cluster.log_dir, env={"CELERY_BROKER_URL": f"conveyor://{tutorial}",
                                                      "PYTHONPATH": f"{ROOT}:{TUTORIAL}"})
        cluster.procs.append(proc)
        return proc
    return start


def connected(client: Client, worker: Proc) -> None:
    wait_for(lambda: any(w.id.startswith(worker.name) for w in client.admin.list_workers()) or not worker.alive(),
             what=f"{worker.name} to connect")
    assert worker.alive(), worker.output()


def test_first_steps_add_delay_get(celery_worker: Worker) -> None:
    from tasks import add, app  # noqa: PLC0415 - the tutorial module, importable once the fixture ran

    celery_worker("tasks")
    result = add.delay(4, 4)
    assert result.get(timeout=WAIT) == 8
    assert result.ready() and result.successful() and not result.failed()
    assert result.state == result.status == states.SUCCESS and result.result == 8
    assert AsyncResult(result.id, app=app).get(timeout=WAIT) == 8
    assert AsyncResult(unknown_id_like(result.id), app=app).state == states.PENDING  # Celery's answer for any id


def test_bind_true_sees_its_own_request(celery_worker: Worker) -> None:
    from proj.celery import debug_task  # noqa: PLC0415
    from proj.tasks import whoami  # noqa: PLC0415

    celery_worker("proj")  # a package: the app is found in proj.celery, its include imports proj.tasks
    result = whoami.delay(1, "two", k=3)
    request = result.get(timeout=WAIT)
    assert request["id"] == result.id and request["task"] == "proj.tasks.whoami" and request["retries"] == 0
    assert (request["args"], request["kwargs"]) == ([1, "two"], {"k": 3})
    assert request["routing_key"] == "default" and request["hostname"] == f"conveyor@{socket.gethostname()}"
    assert debug_task.delay().get(timeout=WAIT) is None  # the Django tutorial's task: prints self.request


def test_routes_and_queues_with_q(cluster: Cluster, celery_worker: Worker, tutorial: str) -> None:
    from routing import add, import_feed, report_daily  # noqa: PLC0415

    celery_worker("routing", "-Q", "high-priority,feeds")
    high = add.apply_async((1, 1), queue="high-priority")
    feed = import_feed.delay("https://example.com/feed")  # task_routes by name
    report = report_daily.delay()  # task_routes by glob: 'reports', which this worker does not take
    assert high.get(timeout=WAIT) == 2 and high.queue == "high-priority"
    assert feed.get(timeout=WAIT) == "imported https://example.com/feed" and feed.queue == "feeds"
    assert report.queue == "reports" and report.state == states.PENDING
    celery_worker("routing", "-Q", "reports", name="reports-worker")
    assert report.get(timeout=WAIT) == "report"


def test_beat_schedule_with_a_crontab(celery_worker: Worker, tutorial: str) -> None:
    from periodic import app  # noqa: PLC0415

    celery_worker("periodic")  # applies beat_schedule (and add_periodic_task's entries) on start-up
    with Client(tutorial) as client:
        wait_for(lambda: len(client.schedules.list()) == 3, WAIT, what="the three schedules")
        stored = {s.id: s for s in client.schedules.list()}
        monday = stored["add-every-monday-morning"]
        assert (monday.cron.expression, monday.cron.time_zone) == ("30 7 * * 1", "Europe/Berlin")
        assert monday.template.name == "periodic.add"
        every_10 = stored["add_every_10"]  # add_periodic_task(name='add every 10'): spaces cannot be in an id
        assert every_10.interval.seconds == 10 and every_10.template.name == "periodic.test"
        # the interval entry fires by itself; the crontab one is fired now (Monday 7:30 is far)
        wait_for(lambda: client.schedules.get("tick-every-second").fire_count >= 2, WAIT, what="the 1 s tick")
        tick = client.schedules.get("tick-every-second").last_task_id
        assert AsyncResult(tick, app=app).get(timeout=WAIT) == 2
        assert AsyncResult(client.schedules.fire("add-every-monday-morning"), app=app).get(timeout=WAIT) == 32


def test_get_task_logger_marks_the_task(celery_worker: Worker) -> None:
    from logged import add  # noqa: PLC0415

    worker = celery_worker("logged")
    result = add.delay(4, 4)
    assert result.get(timeout=WAIT) == 8
    wait_for(lambda: f"logged.add[{result.id}]: Adding 4 + 4" in worker.output(), what="the task's log line")


def test_chain_group_and_chord(celery_worker: Worker) -> None:
    from proj.tasks import add, mul, xsum  # noqa: PLC0415

    celery_worker("proj", "-c", "10")
    assert chain(add.s(4, 4), mul.s(8), mul.s(10))().get(timeout=WAIT) == 640
    assert (add.s(2, 2) | add.s(4) | add.s(8))().get(timeout=WAIT) == 16
    grouped = group(add.s(i, i) for i in range(10))()
    assert isinstance(grouped, GroupResult)
    assert grouped.get(timeout=WAIT) == [2 * i for i in range(10)]
    assert grouped.ready() and grouped.successful() and grouped.completed_count() == len(grouped) == 10
    assert [r.get(timeout=WAIT) for r in grouped.results] == [2 * i for i in range(10)]
    assert chord((add.s(i, i) for i in range(10)), xsum.s())().get(timeout=WAIT) == 90
    assert chord(add.s(i, i) for i in range(3))(xsum.s()).get(timeout=WAIT) == 6  # chord(header)(callback)
    assert (group(add.s(1, 1), add.s(2, 2)) | xsum.s()).delay().get(timeout=WAIT) == 6


def test_retry_with_countdown_until_success(celery_worker: Worker) -> None:
    from proj.tasks import flaky  # noqa: PLC0415

    celery_worker("proj")
    result = flaky.delay(2)  # retries (countdown=1) until its third attempt
    wait_for(lambda: result.state == states.RETRY, WAIT, what="RETRY between attempts")
    assert isinstance(result.result, ConnectionError) and "not yet" in (result.traceback or "")
    assert result.get(timeout=WAIT) == 2
    assert result.state == states.SUCCESS and result.retries == 2


def test_autoretry_for_gives_up_with_the_original_error(celery_worker: Worker) -> None:
    from proj.tasks import always_down  # noqa: PLC0415

    celery_worker("proj")
    result = always_down.delay()
    with pytest.raises(ConnectionError, match="the service is down"):
        result.get(timeout=WAIT)
    assert result.state == states.FAILURE and result.retries == 2  # retry_kwargs={'max_retries': 2}


def test_time_limits_fail_the_task_as_in_celery(celery_worker: Worker) -> None:
    from proj.tasks import cleans_up, too_slow  # noqa: PLC0415

    celery_worker("proj", "-P", "prefork", "-c", "2")  # Celery's limits need prefork; so do real ones here
    assert cleans_up.delay().get(timeout=WAIT) == "cleaned up in a hurry"  # SoftTimeLimitExceeded, caught
    slow = too_slow.delay()
    with pytest.raises(TimeLimitExceeded):
        slow.get(timeout=WAIT)
    assert slow.state == states.FAILURE and slow.retries == 0  # failed, not retried (Celery's way)


def test_states_pending_started_success_and_failure(celery_worker: Worker, tmp_path: Path) -> None:
    from proj.tasks import divide  # noqa: PLC0415
    from proj.tasks import wait_for as waits  # noqa: PLC0415

    gate = tmp_path / "gate"
    result = waits.delay(str(gate))
    assert result.state == states.PENDING and not result.ready()  # no worker yet
    celery_worker("proj")
    wait_for(lambda: result.state == states.STARTED, WAIT, what="STARTED")
    gate.touch()
    assert result.get(timeout=WAIT) == "done" and result.state == states.SUCCESS

    failed = divide.delay(1, 0)
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        failed.get(timeout=WAIT)
    assert failed.state == states.FAILURE and failed.failed() and failed.ready() and not failed.successful()
    assert isinstance(failed.get(propagate=False), ZeroDivisionError)
    assert isinstance(failed.result, ZeroDivisionError)
    assert "ZeroDivisionError: division by zero" in failed.traceback and "in divide" in failed.traceback


def test_revoke_and_the_remote_control(celery_worker: Worker, tmp_path: Path) -> None:
    from proj.celery import app  # noqa: PLC0415
    from proj.tasks import wait_for as waits  # noqa: PLC0415

    worker = celery_worker("proj", "-P", "prefork", "-c", "1")  # terminate=True stops a child process
    running = waits.delay(str(tmp_path / "never"))
    queued = waits.delay(str(tmp_path / "never"))
    wait_for(lambda: running.state == states.STARTED, WAIT, what="the first task to start")
    inspect = app.control.inspect()
    wait_for(lambda: running.id in [t["id"] for t in (inspect.active() or {}).get(worker_id(worker), [])], WAIT,
             what="inspect().active() to show the running task")
    (active,) = inspect.active()[worker_id(worker)]
    assert active["name"] == "proj.tasks.wait_for" and active["delivery_info"]["routing_key"] == "default"
    assert "proj.tasks.add" in inspect.registered()[worker_id(worker)]
    assert app.control.ping() == [{worker_id(worker): {"ok": "pong"}}]
    app.control.revoke(queued.id)
    assert queued.state == states.REVOKED
    running.revoke(terminate=True)
    with pytest.raises(TaskRevokedError):
        running.get(timeout=WAIT)
    assert running.state == states.REVOKED


def worker_id(proc: Proc) -> str:
    args = list(proc.popen.args)  # type: ignore[arg-type]
    return str(args[args.index("--worker-id") + 1])


@pytest.mark.parametrize("pool", [["-P", "prefork", "-c", "2"], ["-P", "processes", "-c", "2"], ["-P", "solo"],
                                  ["-P", "threads", "-c", "2"]])
def test_pools(celery_worker: Worker, pool: list[str]) -> None:
    from proj.tasks import whoami  # noqa: PLC0415

    worker = celery_worker("proj", *pool)
    request = whoami.delay().get(timeout=WAIT)
    in_child = pool[1] in ("prefork", "processes")
    assert (request["pid"] != worker.popen.pid) == in_child
    if pool[1] == "solo":
        assert "concurrency 1" in worker.output()
