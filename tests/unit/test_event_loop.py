"""Which event loop the services run on (conveyor.event_loop)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util

import click
import pytest
from click.testing import CliRunner

from conveyor import event_loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_picks_uvloop_where_installed() -> None:
    assert importlib.util.find_spec("uvloop") is not None  # a dependency of the services on Linux
    assert event_loop.resolve("auto") == "uvloop"
    assert event_loop.run(_loop_module()).startswith("uvloop")


def test_asyncio_runs_the_standard_loop() -> None:
    assert event_loop.resolve("asyncio") == "asyncio"
    assert event_loop.run(_loop_module(), "asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert event_loop.resolve("auto") == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        event_loop.resolve("uvloop")


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one of auto, uvloop, asyncio"):
        event_loop.resolve("trio")


def test_the_loop_option_resolves_and_names_itself_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command()
    @event_loop.option(envvar="TEST_LOOP")
    def cmd(loop: str) -> None:
        click.echo(f"loop={loop}")

    runner = CliRunner()
    assert runner.invoke(cmd, []).output == "loop=uvloop\n"
    assert runner.invoke(cmd, [], env={"TEST_LOOP": "asyncio"}).output == "loop=asyncio\n"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    refused = runner.invoke(cmd, ["--loop", "uvloop"])
    assert refused.exit_code == 2 and "--loop" in refused.output and "uvloop is not installed" in refused.output


def test_run_tunes_the_collector_for_a_service() -> None:
    """A service's loop runs with start-up objects frozen and the young generation's threshold
    raised (event_loop.tune_gc); this test puts the defaults back for the rest of the session."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()

    async def main() -> tuple[tuple[int, int, int], int]:
        return gc.get_threshold(), gc.get_freeze_count()

    try:
        threshold, frozen_now = event_loop.run(main(), "asyncio")
        assert threshold == event_loop.GC_THRESHOLD
        assert frozen_now > frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
