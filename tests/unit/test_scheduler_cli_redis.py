"""conveyor-scheduler refuses a Redis URL or --redis-wait-replicas it cannot use with a usage
error naming the flag (exit 2), before it starts anything, instead of a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conveyor_scheduler.cli import main


@pytest.mark.parametrize(("args", "flag", "words"), [
    (["--redis-url", "http://127.0.0.1:6379"], "--redis-url", "not a Redis URL scheme"),
    (["--redis-url", "redis+cluster://127.0.0.1:7000/3"], "--redis-url", "only database 0"),
    (["--redis-url", "redis+cluster://127.0.0.1:x"], "--redis-url", "no port number"),
    (["--redis-url", "redis+cluster://"], "--redis-url", "at least one host:port"),
    (["--redis-url", "redis://127.0.0.1:1", "--redis-client", "redis-py", "--redis-wait-replicas", "1"],
     "--redis-wait-replicas", "hiredis"),
])
def test_a_redis_setting_it_cannot_use_is_a_usage_error(args: list[str], flag: str, words: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert flag in result.output and words in result.output
    assert "Traceback" not in result.output
