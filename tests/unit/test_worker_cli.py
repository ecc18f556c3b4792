"""conveyor-worker refuses bad pool settings at start-up, naming the flag (Celery's spellings too);
which of its security options reach the app's own clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import App, TLSConfig
from conveyor.cli_security import tls_config
from conveyor_worker.cli import _given_security, main


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


def test_the_command_lines_tls_and_token_go_to_the_app_and_the_environments_stay_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag wins over what the app set in code (tasks connect as the worker does); a variable
    does not (the app's own clients read CONVEYOR_* themselves, after what it set in code)."""
    monkeypatch.setenv("CONVEYOR_TOKEN", "from-env")
    monkeypatch.setenv("CONVEYOR_TLS_CA", "env-ca.pem")

    def given(*args: str) -> tuple[TLSConfig | None, str | None]:
        ctx = main.make_context("conveyor-worker", ["tests.apps.basic:app", *args])
        p = ctx.params
        return _given_security(ctx, tls_config(p["tls_ca"], p["tls_cert"], p["tls_key"]), p["token"])

    assert given() == (None, None)
    assert given("--token", "flag-token") == (None, "flag-token")
    assert given("--tls-cert", "c.pem", "--tls-key", "k.pem") == (
        TLSConfig(Path("env-ca.pem"), Path("c.pem"), Path("k.pem")), None)
    monkeypatch.delenv("CONVEYOR_TLS_CA")
    app = App("x", token="code-token")
    first = app.client  # (no call is made: a channel connects on first use)
    app.set_security(tls=None, token=None)
    app.set_security(token="code-token")
    assert app.client is first  # nothing changes: the same client
    app.set_security(token="flag-token")
    assert (app.tls, app._token) == (None, "flag-token") and app.client is not first
    app.set_security(tls=TLSConfig(ca="ca.pem"))
    assert (app.tls, app._token) == (TLSConfig(ca="ca.pem"), "flag-token") and app._client is None
