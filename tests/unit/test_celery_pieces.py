"""conveyor.celery's parts apart from a scheduler: the state mapping, crontab and schedule ids,
routers, rebuilt errors, the canvas in Celery's terms, task.apply() (the in-process helper),
and the calls that are refused with their reasons."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conveyor import TaskState, WorkflowState
from conveyor import canvas as base
from conveyor.celery import (
    AsyncResult,
    Celery,
    EagerResult,
    GroupResult,
    Unsupported,
    chain,
    chord,
    crontab,
    group,
    schedule,
    shared_task,
    signature,
    solar,
    states,
)
from conveyor.celery.result import task_exception
from conveyor.celery.routes import compile_routes, route
from conveyor.celery.schedules import schedule_id
from conveyor.errors import TaskFailed, TimeLimitExceeded
from conveyor.workflow_graph import compile_workflow


@pytest.fixture
def app() -> Celery:
    app = Celery("t", broker="conveyor://127.0.0.1:1", set_as_current=False)

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.xsum")
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(name="t.flaky", bind=True, max_retries=4)
    def flaky(self: Any, succeed_after: int) -> dict[str, Any]:
        if self.request.retries < succeed_after:
            raise self.retry(countdown=60)
        return {"retries": self.request.retries, "eager": self.request.is_eager, "id": self.request.id}

    return app


@pytest.mark.parametrize(("state", "attempt", "celery"), [
    (TaskState.UNSPECIFIED, 0, states.PENDING), (TaskState.QUEUED, 0, states.PENDING),
    (TaskState.QUEUED, 2, states.PENDING), (TaskState.SCHEDULED, 0, states.PENDING),
    (TaskState.SCHEDULED, 1, states.RETRY), (TaskState.ACTIVE, 1, states.STARTED),
    (TaskState.SUCCEEDED, 1, states.SUCCESS), (TaskState.FAILED, 1, states.FAILURE),
    (TaskState.DEAD, 4, states.FAILURE), (TaskState.CANCELLED, 0, states.REVOKED),
    (TaskState.EXPIRED, 0, states.REVOKED),
])
def test_task_states_map_onto_celerys(state: TaskState, attempt: int, celery: str) -> None:
    assert states.task_state(state, attempt) == celery


def test_every_state_is_mapped() -> None:
    assert set(states.TASK_STATES) == set(TaskState) and set(states.WORKFLOW_STATES) == set(WorkflowState)
    assert set(states.TASK_STATES.values()) | {states.RETRY, states.RECEIVED} == states.ALL_STATES


@pytest.mark.parametrize(("made", "expression"), [
    (crontab(), "* * * * *"),
    (crontab(minute=0, hour=0), "0 0 * * *"),
    (crontab(minute="*/15"), "*/15 * * * *"),
    (crontab(hour=7, minute=30, day_of_week=1), "30 7 * * 1"),
    (crontab(minute=0, hour="*/3,8-17", day_of_week="mon-fri"), "0 */3,8-17 * * mon-fri"),
    (crontab(0, 0, day_of_month="2-30/2"), "0 0 2-30/2 * *"),
    (crontab(minute=[0, 30], month_of_year="*/3"), "0,30 * * */3 *"),
])
def test_crontab_is_a_cron_expression(made: crontab, expression: str) -> None:
    assert made.expression == expression


def test_schedules_refused_or_made_ids() -> None:
    with pytest.raises(Unsupported, match=r"crontab\(nowfun=...\)"):
        crontab(nowfun=lambda: None)
    with pytest.raises(Unsupported, match="solar"):
        solar("sunrise", -37.81, 144.96)
    with pytest.raises(Unsupported, match="relative"):
        schedule(10, relative=True)
    assert schedule(30).seconds == 30
    assert schedule_id("add every 10") == "add_every_10" and schedule_id("t.test('hello')") == "t.test_hello"
    assert len(schedule_id("x" * 300)) == 128


def test_routers_in_order_first_answer_wins() -> None:
    def by_args(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        return "vip" if kwargs.get("vip") else None

    class Legacy:
        def route_for_task(self, task: str, args: Any = None, kwargs: Any = None) -> Any:
            return {"queue": "legacy"} if task == "t.old" else None

    routers = compile_routes([by_args, Legacy(), {"t.*": {"queue": "t", "priority": 2}, re.compile("x"): "x"}])
    assert route(routers, "t.add", (), {"vip": True}, {}) == {"queue": "vip"}
    assert route(routers, "t.old", (), {}, {}) == {"queue": "legacy"}
    assert route(routers, "t.add", (), {}, {}) == {"queue": "t", "priority": 2}
    assert route(routers, "other", (), {}, {}) == {}
    with pytest.raises(Unsupported, match="exchange"):
        route(compile_routes(lambda *a, **k: {"queue": "q", "exchange": "e"}), "t", (), {}, {})


@pytest.mark.parametrize(("error_type", "rebuilt"), [
    ("ValueError", ValueError), ("ZeroDivisionError", ZeroDivisionError), ("KeyError", KeyError),
    ("TimeLimitExceeded", TimeLimitExceeded), ("UnicodeDecodeError", TaskFailed), ("MyAppError", TaskFailed),
])
def test_a_stored_error_comes_back_as_its_type_when_it_can(error_type: str, rebuilt: type) -> None:
    exc = task_exception("01X", "FAILURE", error_type, "it broke", "Traceback ...")
    assert type(exc) is rebuilt and "01X" in "".join(getattr(exc, "__notes__", []))
    if rebuilt is TaskFailed:
        assert exc.error_type == error_type and exc.traceback == "Traceback ..."  # type: ignore[attr-defined]


def test_apply_runs_here_with_a_request_and_retries_at_once(app: Celery) -> None:
    result = app.tasks["t.flaky"].apply((2,))
    assert isinstance(result, EagerResult) and result.successful() and result.state == states.SUCCESS
    value = result.get()
    assert value["retries"] == 2 and value["eager"] is True and value["id"] == result.id
    assert app.tasks["t.add"].apply((1, 2)).get() == 3
    assert app.tasks["t.add"].s(2).apply((1,)).get() == 3  # Celery's partial arguments: new ones first
    assert app.tasks["t.add"](1, 2) == 3 and app.tasks["t.add"].s(1, 2)() == 3  # called here, as Celery does


def test_apply_sends_arguments_through_json_as_the_scheduler_would(app: Celery) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        app.tasks["t.add"].apply((object(), 1))
    assert app.tasks["t.xsum"].apply(((1, 2, 3),)).get() == 6  # a tuple arrives as a list


def test_the_canvas_is_conveyors_with_celerys_calls(app: Celery) -> None:
    add, xsum = app.tasks["t.add"], app.tasks["t.xsum"]
    piped = add.s(1, 1) | add.s(2) | add.s(3)
    assert isinstance(piped, chain) and isinstance(piped, base.chain) and len(piped.tasks) == 3
    assert isinstance(group(add.s(i, i) for i in range(3)) | xsum.s(), chord)
    assert isinstance(chord([add.s(1, 1)], xsum.s()), base.chord)
    nodes = compile_workflow(chain(add.s(4, 4), add.s(8), group(add.s(1), add.s(2)), xsum.s())).nodes
    assert [n.task.name for n in nodes] == ["t.add", "t.add", "t.add", "t.add", "t.xsum"]
    by_name = signature("t.add", args=(2, 2), countdown=10, app=app)
    assert (by_name.args, by_name.options.countdown) == ((2, 2), 10.0)
    from_dict = signature({"task": "t.add", "args": [1], "kwargs": {}, "options": {"queue": "q"}}, app=app)
    assert from_dict.options.queue == "q"
    with pytest.raises(Unsupported, match=r"chain.apply_async\(countdown=...\)"):
        chain(add.s(1, 1), add.s(2)).apply_async(countdown=10)
    with pytest.raises(Unsupported, match="chord"):
        chord([add.s(1, 1)], xsum.s(), interval=1)


def test_shared_task_registers_on_every_app_made_before_or_after() -> None:
    before = Celery("before", set_as_current=False)

    @shared_task(name="shared.hello")
    def hello(who: str) -> str:
        return f"hello {who}"

    after = Celery("after")
    assert "shared.hello" in before.tasks and "shared.hello" in after.tasks
    assert hello("you") == "hello you" and hello.name == "shared.hello"
    assert hello.apply(("eager",)).get() == "hello eager"


@pytest.mark.parametrize(("call", "named"), [
    (lambda app: AsyncResult("01X", app=app).forget(), "AsyncResult.forget()"),
    (lambda app: AsyncResult("01X", app=app).get(callback=print), "get(callback=...)"),
    (lambda app: AsyncResult("01X", app=app).revoke(signal="SIGKILL"), "revoke(signal='SIGKILL')"),
    (lambda app: AsyncResult("wf_01X", app=app).parent, "result.parent"),
    (lambda app: GroupResult(results=[]), "GroupResult(results=...)"),
    (lambda app: app.control.rate_limit("t.add", "10/m"), "app.control.rate_limit()"),
    (lambda app: app.control.purge(), "app.control.purge()"),
    (lambda app: app.control.revoke("01X", destination=["w1"]), "revoke(destination=...)"),
    (lambda app: app.control.inspect().scheduled(), "inspect().scheduled()"),
    (lambda app: app.control.inspect().reserved(), "inspect().reserved()"),
    (lambda app: app.worker_main(), "app.worker_main"),
    (lambda app: app.Beat(), "app.Beat"),
    (lambda app: app.connection_for_write(), "app.connection_for_write"),
    (lambda app: app.autodiscover_tasks(), "autodiscover_tasks() without packages"),
    (lambda app: Celery("x", loader="default", set_as_current=False), "Celery(loader=...)"),
    (lambda app: app.config_from_object({"CELERYD_CONCURRENCY": 4}), "CELERYD_CONCURRENCY"),
])
def test_what_does_not_map_is_refused_naming_it(app: Celery, call: Any, named: str) -> None:
    with pytest.raises(Unsupported) as caught:
        call(app)
    assert named in str(caught.value)


def test_an_id_of_a_workflow_is_a_workflow_result(app: Celery) -> None:
    assert type(AsyncResult("wf_01X", app=app)).__name__ == "WorkflowResult"
    assert type(AsyncResult("01X", app=app)) is AsyncResult
    assert AsyncResult("01X", app=app) == "01X" and str(AsyncResult("01X", app=app)) == "01X"
