"""The settings table, driven from the table itself: every supported and accepted Celery setting
has an example here whose effect is checked, every refused one (and every refused prefix and
value) raises Unsupported naming it. A setting added to the table without an example fails
`test_every_setting_in_the_table_has_an_example`."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest

from conveyor.celery import Celery, Unsupported, crontab
from conveyor.celery.settings import ACCEPTED, REFUSED, REFUSED_PREFIXES, SUPPORTED


def opts(app: Celery, name: str = "t.unknown", **call: Any) -> Any:
    return app.submit_options(name, app.tasks.get(name), call, (), {})


def _routes(app: Celery) -> None:
    assert opts(app, "t.a").queue == "qa"
    assert opts(app, "t.b.sub").queue == "qb"
    assert (opts(app, "t.c9").queue, opts(app, "t.c9").priority) == ("qc", 7)
    assert opts(app, "t.a", queue="mine").queue == "mine"  # a call's queue wins
    assert opts(app, "other").queue is None  # no route: the scheduler routes it


def _schedule(app: Celery) -> None:
    stored = app.conveyor_app.schedules["nightly_run"]  # the entry's name made a schedule id
    assert (stored.cron.expression, stored.template.name) == ("0 2 * * *", "t.nightly")


def _timezone(app: Celery) -> None:
    assert app.conveyor_app.schedules["nightly_run"].cron.time_zone == "Europe/Berlin"
    eta = opts(app, eta=dt.datetime(2030, 1, 1, 12, 0)).eta  # naive: read in the app's timezone
    assert eta.utcoffset() == dt.timedelta(hours=1)


def _included(app: Celery) -> None:
    sys.modules.pop("tests.apps.celery_included", None)
    app.finalize()  # what the worker does on loading the app
    assert "tests.apps.celery_included" in sys.modules
    assert app.tasks["tests.apps.celery_included.ping"]() == "pong"


def _unchanged(name: str) -> Callable[[Celery], None]:
    def check(app: Celery) -> None:
        assert name in app.conf.changes()
    return check


def _eager_propagates(app: Celery) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        boom.apply()


BEAT = {"nightly run": {"task": "t.nightly", "schedule": crontab(minute=0, hour=2)}}
EXAMPLES: dict[str, tuple[dict[str, Any], Callable[[Celery], None]]] = {
    "broker_url": ({"broker_url": "conveyor://h1:1;conveyor://h2"},
                   lambda app: _eq(app.scheduler, "h1:1,h2:50051")),
    "task_routes": ({"task_routes": {"t.a": {"queue": "qa"}, "t.b*": "qb",
                                     re.compile(r"t\.c\d"): {"queue": "qc", "priority": 7}}}, _routes),
    "task_default_queue": ({"task_default_queue": "celery"}, lambda app: _eq(
        (opts(app).queue, app.conveyor_app.default_queues()), ("celery", {"celery"}))),
    "task_default_priority": ({"task_default_priority": 4}, lambda app: _eq(opts(app).priority, 4)),
    "task_time_limit": ({"task_time_limit": 30}, lambda app: _eq(opts(app).timeout, 30.0)),
    "task_soft_time_limit": ({"task_soft_time_limit": dt.timedelta(seconds=20)},
                             lambda app: _eq(opts(app).soft_timeout, 20.0)),
    "task_default_rate_limit": ({"task_default_rate_limit": "10/m"}, lambda app: _eq(opts(app).rate_limit, "10/m")),
    "task_ignore_result": ({"task_ignore_result": True}, lambda app: _eq(opts(app).ignore_result, True)),
    "beat_schedule": ({"beat_schedule": BEAT}, _schedule),
    "timezone": ({"beat_schedule": BEAT, "timezone": "Europe/Berlin"}, _timezone),
    "include": ({"include": ["tests.apps.celery_included"]}, _included),
    "imports": ({"imports": ("tests.apps.celery_included",)}, _included),
    "result_backend": ({"result_backend": "redis://localhost:6379/1"}, _unchanged("result_backend")),
    "result_expires": ({"result_expires": 86400}, _unchanged("result_expires")),
    "task_acks_late": ({"task_acks_late": True}, _unchanged("task_acks_late")),
    "task_reject_on_worker_lost": ({"task_reject_on_worker_lost": True}, _unchanged("task_reject_on_worker_lost")),
    "task_acks_on_failure_or_timeout": ({"task_acks_on_failure_or_timeout": True},
                                        _unchanged("task_acks_on_failure_or_timeout")),
    "task_track_started": ({"task_track_started": True}, _unchanged("task_track_started")),
    "task_create_missing_queues": ({"task_create_missing_queues": True}, _unchanged("task_create_missing_queues")),
    "task_serializer": ({"task_serializer": "json"}, lambda app: _eq(app.conf.task_serializer, "json")),
    "result_serializer": ({"result_serializer": "application/json"},
                          lambda app: _eq(app.conf.result_serializer, "json")),
    "accept_content": ({"accept_content": ["json", "application/json"]}, _unchanged("accept_content")),
    "result_accept_content": ({"result_accept_content": ["json"]}, _unchanged("result_accept_content")),
    "enable_utc": ({"enable_utc": False, "timezone": "Europe/Berlin"}, _unchanged("enable_utc")),
    "task_always_eager": ({"task_always_eager": False}, _unchanged("task_always_eager")),
    "task_eager_propagates": ({"task_eager_propagates": True}, _eager_propagates),
    "result_extended": ({"result_extended": True}, _unchanged("result_extended")),
    "broker_connection_retry": ({"broker_connection_retry": True}, _unchanged("broker_connection_retry")),
    "broker_connection_retry_on_startup": ({"broker_connection_retry_on_startup": True},
                                           _unchanged("broker_connection_retry_on_startup")),
}

REFUSED_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"broker_url": "redis://localhost:6379/0"}, "broker_url='redis://localhost:6379/0'", "--redis-url"),
    ({"broker_url": "amqp://guest@localhost//"}, "broker_url='amqp://guest@localhost//'", "RabbitMQ"),
    ({"broker_url": "conveyor://user:pw@host:1"}, "broker_url", "CONVEYOR_TOKEN"),
    ({"task_serializer": "pickle"}, "task_serializer='pickle'", "arbitrary code"),
    ({"result_serializer": "yaml"}, "result_serializer='yaml'", "JSON only"),
    ({"accept_content": ["json", "pickle"]}, "accept_content='pickle'", "arbitrary code"),
    ({"task_always_eager": True}, "task_always_eager=True", "task.apply("),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone='Mars/Olympus_Mons'", "IANA"),
    ({"task_default_priority": 12}, "task_default_priority=12", "0 to 9"),
    ({"task_default_rate_limit": "0.5/s"}, "rate_limit='0.5/s'", "whole number"),
    ({"task_routes": {"t.a": {"queue": "q", "exchange": "e"}}}, "exchange", "AMQP"),
    ({"task_routes": {"t.a": {"queue": "q", "routing_key": "k"}}}, "routing_key", "AMQP"),
    ({"task_routes": ["proj.routers.route"]}, "task_routes", "pass the function itself"),
    ({"beat_schedule": {"e": {"task": "t", "schedule": 10, "relative": True}}}, "relative", "anchored"),
    ({"beat_schedule": {"e": {"task": "t", "schedule": 10, "options": {"expires": 5}}}}, "beat_schedule['e']",
     "expires"),
    ({"beat_schedule": {"e": {"task": "t", "schedule": 10, "name": "x"}}}, "name", "an entry takes"),
    ({"beat_schedule": {"e": {"task": "t", "schedule": "daily"}}}, "beat_schedule['e']['schedule']", "crontab"),
]


def _eq(actual: Any, expected: Any) -> None:
    assert actual == expected


@pytest.fixture(autouse=True)
def no_broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_SCHEDULER", raising=False)


def test_every_setting_in_the_table_has_an_example() -> None:
    assert set(EXAMPLES) == set(SUPPORTED) | set(ACCEPTED)
    assert not set(REFUSED) & (set(SUPPORTED) | set(ACCEPTED))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("how", ["update", "attribute", "constructor", "config_from_object"])
def test_a_supported_or_accepted_setting_does_what_the_table_says(name: str, how: str) -> None:
    settings, check = EXAMPLES[name]
    if how == "constructor":
        app = Celery("t", set_as_current=False, **settings)
    else:
        app = Celery("t", set_as_current=False)
        if how == "update":
            app.conf.update(settings)
        elif how == "attribute":
            for key, value in settings.items():
                setattr(app.conf, key, value)
        else:
            app.config_from_object(type("Settings", (), settings))
    check(app)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_setting_raises_naming_it(name: str) -> None:
    with pytest.raises(Unsupported, match=re.escape(name)) as caught:
        Celery("t", set_as_current=False).conf.update({name: "anything"})
    assert caught.value.name == name and caught.value.why == REFUSED[name]


@pytest.mark.parametrize("prefix", sorted(REFUSED_PREFIXES))
def test_a_celery_setting_in_no_table_is_refused_by_its_prefix(prefix: str) -> None:
    name = f"{prefix}made_up_setting"
    app = Celery("t", set_as_current=False)
    with pytest.raises(Unsupported, match=re.escape(name)):
        app.conf[name] = 1
    with pytest.raises(Unsupported, match=re.escape(name)):
        app.config_from_object({name: 1})
    assert name not in app.conf.changes()


@pytest.mark.parametrize(("settings", "named", "why"), REFUSED_VALUES, ids=[n for _, n, _ in REFUSED_VALUES])
def test_a_value_that_does_not_map_is_refused_naming_it(settings: dict[str, Any], named: str, why: str) -> None:
    app = Celery("t", set_as_current=False)
    with pytest.raises(Unsupported) as caught:
        app.conf.update(settings)
    assert named in str(caught.value) and why in str(caught.value)
    assert not set(settings) & set(app.conf.changes())  # nothing of a refused update is kept


def test_enable_utc_false_needs_a_timezone_by_the_time_it_is_used() -> None:
    app = Celery("t", set_as_current=False)
    app.conf.enable_utc = False
    app.conf.beat_schedule = BEAT
    with pytest.raises(Unsupported, match=r"enable_utc=False .*timezone="):
        opts(app)
    app.conf.timezone = "Europe/London"  # Celery programs set it next
    assert app.conveyor_app.schedules["nightly_run"].cron.time_zone == "Europe/London"


def test_other_names_are_the_apps_own_config_kept_unused() -> None:
    app = Celery("t", set_as_current=False)
    app.conf.update(my_feature_flag=True)
    assert app.conf.my_feature_flag is True and app.conf["my_feature_flag"] is True


def test_result_expires_other_than_a_day_warns_naming_the_scheduler_flag(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "conveyor.celery"):
        Celery("t", set_as_current=False).conf.result_expires = 3600
    assert "--result-ttl" in caplog.text


def test_config_from_object_reads_a_module_a_namespace_and_refuses_old_names() -> None:
    app = Celery("t", broker="conveyor://kept:1", set_as_current=False)
    app.conf.task_default_queue = "dropped"
    django = type("settings", (), {"CELERY_TASK_DEFAULT_QUEUE": "q", "CELERY_BROKER_URL": "conveyor://x:2",
                                   "DEBUG": True, "INSTALLED_APPS": []})
    app.config_from_object(django, namespace="CELERY")
    assert app.conf.task_default_queue == "q" and app.scheduler == "kept:1"  # the constructor's broker wins
    app.config_from_object({"timezone": "UTC"})
    assert app.conf.task_default_queue is None  # replaced, as Celery's config_from_object does
    with pytest.raises(Unsupported, match="CELERY_ROUTES"):
        app.config_from_object(type("old", (), {"CELERY_ROUTES": {}}))
    app.config_from_object("tests.apps.celery_settings")
    assert app.conf.task_default_priority == 3
    app.config_from_object("no.such.module", silent=True)


def test_the_broker_url_variable_wins_as_in_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("t", broker="conveyor://in-code:1", set_as_current=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "conveyor://from-env:2")
    assert app.scheduler == "from-env:2"
    monkeypatch.delenv("CELERY_BROKER_URL")
    monkeypatch.setenv("CONVEYOR_SCHEDULER", "conveyor-var:3")
    assert app.scheduler == "in-code:1"
    assert Celery("t", set_as_current=False).scheduler == "conveyor-var:3"
