"""How conveyor-worker finds its app from APP or -A, as Celery's -A does: MODULE:ATTR, or a module's
`app`, its `celery`, its only app instance, or its `celery` submodule; a conveyor.celery app is
finalized and its conveyor App run, which takes the app's broker URL and default queue."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from conveyor import App
from conveyor.celery.app import WorkerApp
from conveyor_worker.loader import app_scheduler, load_app

_names = itertools.count()


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Writes modules under a fresh top-level name; returns that name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)

    def make(files: dict[str, str]) -> str:
        """`files` by path in the package ("" for a plain module); "TOP" in a text is the name."""
        top = f"loading_{next(_names)}"
        for path, text in files.items():
            target = tmp_path / top / path if path else tmp_path / f"{top}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).replace("TOP", top))
        return top
    return make


CELERY_APP = """
    from conveyor.celery import Celery
    {name} = Celery('proj', broker='conveyor://sched-1:7000', include=[{include}])
    {name}.conf.task_default_queue = 'work'
    @{name}.task
    def add(x, y):
        return x + y
"""


@pytest.mark.parametrize("name", ["app", "celery", "my_app"])
def test_a_module_holding_one_celery_app(write, name: str) -> None:  # type: ignore[no-untyped-def]
    module = write({"": CELERY_APP.format(name=name, include="")})
    app = load_app(module)
    assert isinstance(app, WorkerApp) and f"{module}.add" in app.tasks
    assert app_scheduler(app) == "sched-1:7000" and app.default_queues() == {"work"}


def test_a_package_with_a_celery_submodule_and_its_include(write) -> None:  # type: ignore[no-untyped-def]
    top = write({"__init__.py": "", "celery.py": CELERY_APP.format(name="app", include="'TOP.tasks'"),
                 "tasks.py": "from TOP.celery import app\n@app.task\ndef mul(x, y):\n    return x * y\n"})
    app = load_app(top)  # Celery's `celery -A proj worker` layout
    assert {f"{top}.celery.add", f"{top}.tasks.mul"} <= set(app.tasks)


def test_module_attribute_and_a_conveyor_app(write) -> None:  # type: ignore[no-untyped-def]
    module = write({"": "from conveyor import App\nmine = App('x')\nother = App('y')\n"})
    app = load_app(f"{module}:mine")
    assert isinstance(app, App) and app.name == "x" and app_scheduler(app) is None
    assert app.default_queues() == {"default"}
    with pytest.raises(TypeError, match="several apps"):
        load_app(module)


def test_nothing_to_run_says_where_it_looked(write) -> None:  # type: ignore[no-untyped-def]
    module = write({"": "x = 1\n"})
    with pytest.raises(TypeError, match="looked for 'app', 'celery', a single app instance, and a celery submodule"):
        load_app(module)
    with pytest.raises(TypeError, match=r"is not a conveyor\.App or conveyor\.celery\.Celery"):
        load_app(f"{module}:x")
