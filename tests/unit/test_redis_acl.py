"""redis_acl's rule covers every command the Lua scripts run, and docs/ARCHITECTURE.md shows it."""

from __future__ import annotations

import re
from pathlib import Path

import conveyor_scheduler
from conveyor_scheduler.redis_acl import COMMANDS, SCRIPTED, acl_rule
from tests.harness import ROOT

LUA = Path(conveyor_scheduler.__file__).parent / "lua"


def test_every_scripted_command_is_allowed() -> None:
    used = {m.lower() for f in LUA.glob("*.lua") for m in re.findall(r"redis\.p?call\(\s*['\"](\w+)", f.read_text())}
    assert used, "no redis.call found: the pattern no longer matches the scripts"
    assert used - set(COMMANDS) == set()
    assert set(SCRIPTED) - used == set(), "allowed for the scripts, used by none"
    assert not re.search(r"redis\.p?call\(\s*[^'\"\s]", "".join(f.read_text() for f in LUA.glob("*.lua"))), \
        "a script calls a command named by a variable: list it in redis_acl"


def test_the_rule_is_documented() -> None:
    assert acl_rule() in (ROOT / "docs" / "ARCHITECTURE.md").read_text()
