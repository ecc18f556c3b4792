"""conveyor-worker refuses bad pool settings at start-up, naming the flag (Celery's spellings too)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conveyor_worker.cli import main


@pytest.mark.parametrize(("args", "flag", "why"), [
    (["--pool", "nonsense"], "--pool", "give threads, processes, or both"),
    (["--pool", "threads,threads"], "--pool", "give threads, processes, or both"),
    (["--pool", "processes", "--autoscale", "1,5"], "--autoscale", "1 <= MIN <= MAX"),
    (["--pool", "processes", "--autoscale", "4"], "--autoscale", "MAX,MIN, two whole numbers"),
    (["--pool", "processes", "--autoscale", "0,0"], "--autoscale", "1 <= MIN <= MAX"),
    (["--autoscale", "4,1"], "--autoscale", "needs --pool processes"),
    (["--pool", "processes", "--start-method", "teleport"], "--start-method", "teleport"),
    (["--pool", "processes", "--max-tasks-per-child", "-1"], "--max-tasks-per-child", "-1"),
    (["-P", "eventlet"], "-P", "no green-thread pool"),
    (["-P", "gevent", "-c", "100"], "-P", "--pool threads with a high -c"),
    (["-P", "solo", "-c", "4"], "-P", "solo runs one task at a time"),
    (["-P", "solo,threads"], "-P", "solo is a pool of its own"),
])
def test_bad_pool_settings_are_refused_naming_the_flag(args: list[str], flag: str, why: str) -> None:
    result = CliRunner().invoke(main, ["tests.apps.pool:app", *args])
    assert result.exit_code == 2, result.output
    assert flag in result.output and why in result.output, result.output


@pytest.mark.parametrize(("args", "why"), [
    ([], "give the app: conveyor-worker MODULE:app, or -A MODULE"),
    (["tests.apps.pool:app", "-A", "tests.apps.basic"], "two apps given"),
])
def test_the_app_is_given_once(args: list[str], why: str) -> None:
    result = CliRunner().invoke(main, args, env={"CONVEYOR_WORKER_APP": ""})
    assert result.exit_code == 2 and why in result.output, result.output
