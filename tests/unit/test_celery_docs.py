"""docs/migrating-from-celery.md's tables say what the code's tables say: every setting and
option has its row, with the same verdict (supported, accepted, refused); README links the page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.celery import options, settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/migrating-from-celery.md").read_text()
VERDICTS = {"supported": "supported", "accepted": "accepted", "refused": "**refused**"}


def section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


def rows(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| ([^|]+?) \|", text, re.MULTILINE)}


TABLES = [
    ("Settings", "supported", settings.SUPPORTED), ("Settings", "accepted", settings.ACCEPTED),
    ("Settings", "refused", settings.REFUSED),
    ("Task options", "supported", options.TASK_OPTIONS), ("Task options", "accepted", options.TASK_ACCEPTED),
    ("Task options", "refused", options.TASK_REFUSED),
    ("Call options", "supported", options.CALL_OPTIONS), ("Call options", "refused", options.CALL_REFUSED),
]


@pytest.mark.parametrize(("title", "verdict", "table"), TABLES, ids=[f"{t}-{v}" for t, v, _ in TABLES])
def test_every_name_has_its_row_with_the_codes_verdict(title: str, verdict: str, table: dict[str, str]) -> None:
    documented = rows(section(title))
    wrong = {name: documented.get(name) for name in table if documented.get(name) != VERDICTS[verdict]}
    assert not wrong, f"{title}: rows missing or with another verdict than {verdict}: {wrong}"


def test_the_doc_lists_nothing_the_code_does_not_know() -> None:
    for title, tables in (("Settings", [settings.SUPPORTED, settings.ACCEPTED, settings.REFUSED]),
                          ("Task options", [options.TASK_OPTIONS, options.TASK_ACCEPTED, options.TASK_REFUSED]),
                          ("Call options", [options.CALL_OPTIONS, options.CALL_REFUSED])):
        known = set().union(*tables)
        extra = {n for n in rows(section(title)) if n not in known and not n.endswith(("*", "_*"))
                 and not n.isupper() and " " not in n}
        assert not extra, f"{title}: {extra}"


def test_readme_links_the_page() -> None:
    assert "](docs/migrating-from-celery.md)" in (ROOT / "README.md").read_text()
