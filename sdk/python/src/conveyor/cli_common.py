"""Helpers every `conveyor` subcommand shares (kept apart from cli.py, which imports the groups)."""

from __future__ import annotations

import json
from typing import Any

import click

from conveyor.client import Client


def client_of(ctx: click.Context) -> Client:
    """A client for the scheduler named by the root command's --scheduler."""
    return Client(ctx.find_root().obj["scheduler"])


def call_args(args_json: str, kwargs_json: str) -> tuple[list[Any], dict[str, Any]]:
    """Parses --args (a JSON list) and --kwargs (a JSON object)."""
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise click.BadParameter("--args takes a JSON list and --kwargs a JSON object")
    return args, kwargs
