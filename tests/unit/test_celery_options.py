"""The task and call option tables, driven from the tables: every supported @app.task option and
apply_async option has an example whose effect is checked (on the conveyor task the worker runs,
on the submit options, or on an attempt run here the way the worker runs it), every accepted one
passes, every refused one raises Unsupported naming it."""

from __future__ import annotations

import contextvars
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest

from conveyor import Retry
from conveyor.celery import Celery, Task, Unsupported
from conveyor.celery.options import CALL_OPTIONS, CALL_REFUSED, TASK_ACCEPTED, TASK_OPTIONS, TASK_REFUSED
from conveyor.context import TaskContext, bind


def attempt(task: Task, *args: Any, number: int = 1, max_retries: int = 3, **kwargs: Any) -> Any:
    """Runs the conveyor handler as the worker does (a TaskContext bound); returns its value or
    the exception it raised."""
    ctx = TaskContext(id="01TEST", name=task.name, queue="default", attempt=number, max_retries=max_retries,
                      headers={}, deadline=0.0)

    def run() -> Any:
        bind(ctx)
        try:
            return task.conveyor_task.fn(*args, **kwargs)
        except BaseException as exc:
            return exc
    return contextvars.copy_context().run(run)


def make(options: dict[str, Any], fn: Callable[..., Any] | None = None) -> Task:
    app = Celery("t", set_as_current=False)
    return app.task(**options)(fn or (lambda *a, **k: "ok"))  # type: ignore[no-any-return]


def _name(task: Task) -> None:
    assert task.name == "custom.name" and task.app.conveyor_app.tasks["custom.name"] is task.conveyor_task


def _bind(_: Task) -> None:
    task = make({"bind": True, "name": "t.bound"}, lambda self, x: (self.request.id, self.request.retries, x))
    assert attempt(task, 5, number=2) == ("01TEST", 1, 5)


class Recording(Task):
    seen: list[str] = []

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self.seen.append(f"success {retval}")

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.seen.append(status)


def _base(task: Task) -> None:
    assert isinstance(task, Recording)
    assert attempt(task) == "ok" and Recording.seen[-2:] == ["success ok", "SUCCESS"]


def _failing(exc: BaseException) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc
    return fail


def _max_retries(task: Task) -> None:
    assert task.conveyor_task.options.max_retries == 7


def _default_retry_delay(_: Task) -> None:
    task = make({"bind": True, "default_retry_delay": 42}, lambda self: self.retry())
    raised = attempt(task)
    assert isinstance(raised, Retry) and raised.delay == 42


def _autoretry_for(_: Task) -> None:
    task = make({"autoretry_for": (ConnectionError,), "default_retry_delay": 5}, _failing(ConnectionError("down")))
    raised = attempt(task)
    assert isinstance(raised, Retry) and raised.delay == 5 and "ConnectionError: down" in str(raised)
    other = make({"autoretry_for": (ConnectionError,)}, _failing(KeyError("k")))
    assert isinstance(attempt(other), KeyError)  # not named: the task fails, as in Celery
    assert isinstance(attempt(task, number=4), ConnectionError)  # retries used up: the error itself


def _dont_autoretry_for(_: Task) -> None:
    task = make({"autoretry_for": (OSError,), "dont_autoretry_for": (FileNotFoundError,)},
                _failing(FileNotFoundError("gone")))
    assert isinstance(attempt(task), FileNotFoundError)


def _retry_kwargs(_: Task) -> None:
    task = make({"autoretry_for": (OSError,), "retry_kwargs": {"max_retries": 5, "countdown": 2}},
                _failing(OSError("x")))
    assert task.conveyor_task.options.max_retries == 5
    raised = attempt(task, number=5, max_retries=5)
    assert isinstance(raised, Retry) and raised.delay == 2
    assert isinstance(attempt(task, number=6, max_retries=5), OSError)


def _backoff(options: dict[str, Any], retries: int) -> float:
    task = make({"autoretry_for": (OSError,), "max_retries": 10, **options}, _failing(OSError("x")))
    raised = attempt(task, number=retries + 1, max_retries=10)
    assert isinstance(raised, Retry)
    return float(raised.delay or 0)


def _retry_backoff(_: Task) -> None:
    assert [_backoff({"retry_backoff": 3, "retry_jitter": False}, n) for n in range(4)] == [3, 6, 12, 24]
    assert _backoff({"retry_backoff": True, "retry_jitter": False}, 2) == 4


def _retry_backoff_max(_: Task) -> None:
    assert _backoff({"retry_backoff": True, "retry_backoff_max": 5, "retry_jitter": False}, 6) == 5


def _retry_jitter(_: Task) -> None:
    assert all(0 <= _backoff({"retry_backoff": 8, "retry_jitter": True}, 1) <= 16 for _ in range(20))


def _typing(task: Task) -> None:
    checked = make({}, lambda x: x)
    with pytest.raises(TypeError, match="missing a required argument"):
        checked.apply()
    unchecked = make({"typing": False}, lambda x: x)
    assert isinstance(unchecked.apply().result, TypeError)  # called with the wrong arguments, on the worker


def _submit_option(field: str, expected: Any) -> Callable[[Task], None]:
    def check(task: Task) -> None:
        call = task.app.submit_options(task.name, task, {}, (), {})
        assert getattr(call, field) == expected
    return check


TASK_EXAMPLES: dict[str, tuple[dict[str, Any], Callable[[Task], None]]] = {
    "name": ({"name": "custom.name"}, _name),
    "bind": ({}, _bind),
    "base": ({"base": Recording}, _base),
    "max_retries": ({"max_retries": 7}, _max_retries),
    "default_retry_delay": ({}, _default_retry_delay),
    "autoretry_for": ({}, _autoretry_for),
    "dont_autoretry_for": ({}, _dont_autoretry_for),
    "retry_kwargs": ({}, _retry_kwargs),
    "retry_backoff": ({}, _retry_backoff),
    "retry_backoff_max": ({}, _retry_backoff_max),
    "retry_jitter": ({}, _retry_jitter),
    "rate_limit": ({"rate_limit": 5}, _submit_option("rate_limit", "5/s")),
    "time_limit": ({"time_limit": 30}, _submit_option("timeout", 30.0)),
    "soft_time_limit": ({"soft_time_limit": 20}, _submit_option("soft_timeout", 20.0)),
    "ignore_result": ({"ignore_result": True}, _submit_option("ignore_result", True)),
    "queue": ({"queue": "emails"}, _submit_option("queue", "emails")),
    "priority": ({"priority": 8}, _submit_option("priority", 8)),
    "expires": ({"expires": 60}, _submit_option("expires", 60.0)),
    "serializer": ({"serializer": "json"}, lambda task: None),
    "typing": ({}, _typing),
    "pool": ({"pool": "processes"}, lambda task: _eq(task.conveyor_task.pool, "processes")),
}

CALL_EXAMPLES: dict[str, tuple[Any, str, Any]] = {
    "countdown": (10, "countdown", 10.0),
    "eta": (dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "eta", dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
    "expires": (dt.timedelta(minutes=1), "expires", 60.0),
    "queue": ("high-priority", "queue", "high-priority"),
    "priority": (9, "priority", 9),
    "headers": ({"tenant": "a"}, "headers", {"tenant": "a"}),
    "time_limit": (30, "timeout", 30.0),
    "soft_time_limit": (20, "soft_timeout", 20.0),
    "ignore_result": (True, "ignore_result", True),
    "serializer": ("json", "queue", "t"),
    "retry": (False, "queue", "t"),
    "idempotency_key": ("order-42", "idempotency_key", "order-42"),
}


def _eq(actual: Any, expected: Any) -> None:
    assert actual == expected


def test_every_option_in_the_tables_has_an_example() -> None:
    assert set(TASK_EXAMPLES) == set(TASK_OPTIONS)
    assert set(CALL_EXAMPLES) == set(CALL_OPTIONS)
    assert not (set(TASK_OPTIONS) | set(TASK_ACCEPTED)) & set(TASK_REFUSED)
    assert not set(CALL_OPTIONS) & set(CALL_REFUSED)


@pytest.mark.parametrize("name", sorted(TASK_EXAMPLES))
def test_a_task_option_does_what_the_table_says(name: str) -> None:
    options, check = TASK_EXAMPLES[name]
    check(make(options))


@pytest.mark.parametrize("name", sorted(TASK_ACCEPTED))
def test_an_accepted_task_option_is_taken(name: str) -> None:
    assert make({name: True}).apply().get() == "ok"


@pytest.mark.parametrize("name", [*sorted(TASK_REFUSED), "frobnicate"])
def test_a_refused_task_option_raises_naming_it(name: str) -> None:
    with pytest.raises(Unsupported, match=re.escape(f"@app.task({name}=...)")):
        make({name: True})


@pytest.mark.parametrize("name", sorted(CALL_EXAMPLES))
@pytest.mark.parametrize("how", ["signature", "set", "send_task"])
def test_a_call_option_does_what_the_table_says(name: str, how: str) -> None:
    value, field, expected = CALL_EXAMPLES[name]
    task = make({"queue": "t"})
    if how == "signature":
        options = task.signature((), {}, **{name: value}).options
    elif how == "set":
        options = task.s().set(**{name: value}).options
    else:
        options = task.app.submit_options("not.defined.here", None, {"queue": "t", name: value}, (), {})
    assert getattr(options, field) == expected


@pytest.mark.parametrize("name", [*sorted(CALL_REFUSED), "frobnicate"])
def test_a_refused_call_option_raises_naming_it_before_sending(name: str) -> None:
    task = make({})
    with pytest.raises(Unsupported, match=re.escape(f"apply_async({name}=...)")):
        task.apply_async((), {}, **{name: "x"})  # no scheduler: refused before any call
    with pytest.raises(Unsupported, match=re.escape(name)):
        task.s().set(**{name: "x"})


@pytest.mark.parametrize(("options", "named", "why"), [
    ({"serializer": "pickle"}, "serializer)='pickle'", "arbitrary code"),
    ({"retry": True}, "apply_async(retry=True)", "idempotency_key"),
    ({"headers": {"n": 1}}, "apply_async(headers=...)", "strings"),
    ({"eta": 10}, "apply_async(eta=10)", "countdown="),
])
def test_a_call_option_value_that_does_not_map_is_refused(options: dict[str, Any], named: str, why: str) -> None:
    with pytest.raises(Unsupported) as caught:
        make({}).apply_async((), {}, **options)
    assert named in str(caught.value) and why in str(caught.value)


@pytest.mark.parametrize(("options", "named"), [
    ({"serializer": "pickle"}, "@app.task(serializer)='pickle'"),
    ({"rate_limit": "fast"}, "rate_limit='fast'"),
    ({"autoretry_for": "ValueError"}, "autoretry_for='ValueError'"),
    ({"retry_kwargs": {"exc": 1}}, "retry_kwargs: exc"),
    ({"max_retries": 5000}, "max_retries=5000"),
    ({"pool": "eventlet"}, "@app.task(pool='eventlet')"),
    ({"base": object}, "@app.task(base=...)"),
])
def test_a_task_option_value_that_does_not_map_is_refused(options: dict[str, Any], named: str) -> None:
    with pytest.raises(Unsupported, match=re.escape(named)):
        make(options)


def test_retry_refuses_what_a_conveyor_retry_cannot_carry() -> None:
    for call, named in [(lambda s: s.retry(args=(1,)), "retry(args=, kwargs=)"),
                        (lambda s: s.retry(throw=False), "retry(throw=False)"),
                        (lambda s: s.retry(queue="other"), "retry(queue=...)"),
                        (lambda s: s.retry(max_retries=50), "retry(max_retries=50)")]:
        raised = attempt(make({"bind": True}, call))
        assert isinstance(raised, Unsupported) and named in str(raised)


def test_max_retries_used_up_without_exc_is_max_retries_exceeded() -> None:
    raised = attempt(make({"bind": True, "max_retries": 1}, lambda s: s.retry()), number=2)
    assert type(raised).__name__ == "MaxRetriesExceededError"
