"""Routing rules: first matching glob wins, else 'default'; and the GLOB=QUEUE parser."""

from __future__ import annotations

import pytest

from conveyor_scheduler.routing import DEFAULT_QUEUE, Router, parse_route


def test_no_rules_routes_to_default() -> None:
    assert DEFAULT_QUEUE == "default"
    assert Router().route("anything.at.all") == "default"


def test_first_match_wins() -> None:
    router = Router([("emails.*", "emails"), ("emails.bulk.*", "bulk"), ("*.report", "reports"), ("*", "catchall")])
    assert router.route("emails.bulk.send") == "emails"  # the earlier, broader rule wins
    assert router.route("emails.send") == "emails"
    assert router.route("daily.report") == "reports"
    assert router.route("other") == "catchall"


def test_unmatched_names_go_to_default() -> None:
    router = Router([("emails.*", "emails"), ("billing.?", "billing")])
    assert router.route("billing.x") == "billing"
    assert router.route("billing.xy") == "default"
    assert router.route("email.send") == "default"
    assert router.route("emails") == "default"


def test_globs_are_case_sensitive() -> None:
    router = Router([("Emails.*", "emails")])
    assert router.route("Emails.send") == "emails"
    assert router.route("emails.send") == "default"


def test_character_classes() -> None:
    router = Router([("shard[0-3].*", "low"), ("shard[!0-3].*", "high")])
    assert router.route("shard2.x") == "low"
    assert router.route("shard7.x") == "high"


def test_rules_from_a_generator_are_kept() -> None:
    router = Router(r for r in [("a.*", "qa")])
    assert router.route("a.b") == "qa"
    assert router.route("a.c") == "qa"  # a consumed-once iterable must still work for the second lookup


@pytest.mark.parametrize(("text", "expected"), [
    ("emails.*=emails", ("emails.*", "emails")),
    (" emails.* = emails ", ("emails.*", "emails")),
    ("*=catchall", ("*", "catchall")),
])
def test_parse_route(text: str, expected: tuple[str, str]) -> None:
    assert parse_route(text) == expected


@pytest.mark.parametrize("text", ["", "emails", "=emails", "emails.*=", " = ", "emails.* ", "=", "  =q"])
def test_parse_route_errors(text: str) -> None:
    with pytest.raises(ValueError, match="GLOB=QUEUE"):
        parse_route(text)


@pytest.mark.parametrize("text", ["a.*=b=c", "a.*=q{x}", "a.*=my*queue", "a.*=" + "q" * 65])
def test_parse_route_rejects_invalid_queue_names(text: str) -> None:
    # A routed queue skips check_queue in validation.check_spec, so a route to an
    # invalid name would put tasks under a broken Redis hash tag.
    with pytest.raises(ValueError):
        parse_route(text)
