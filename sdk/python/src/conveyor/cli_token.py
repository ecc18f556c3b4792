"""`conveyor token new`: a fresh secret and the scheduler's auth-file entry for it.

The secret is printed once and never stored: the entry holds only its SHA-256, so the
scheduler's auth file can be read by anyone who runs the scheduler without giving a
token away. Nothing here talks to a scheduler.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

import click

ROLES = ("producer", "worker", "reader", "admin")
"""As the scheduler's access table names them (conveyor_scheduler.access.ROLES)."""
NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def entry(name: str, secret: str, roles: list[str], queues: list[str] | None) -> str:
    """The [[token]] entry of `secret` (TOML; strings written as JSON ones, which TOML reads alike)."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    lines = ["[[token]]", f"name = {json.dumps(name)}", f'sha256 = "{digest}"', f"roles = {json.dumps(roles)}"]
    if queues:
        lines.append(f"queues = {json.dumps(queues)}")
    return "\n".join(lines)


@click.group()
def token() -> None:
    """Tokens for a scheduler started with --auth-file."""


@token.command()
@click.option("--name", required=True, help="Shown in the scheduler's logs and denials (1-64 of A-Z a-z 0-9 _.:@-).")
@click.option("--role", "roles", required=True, multiple=True, type=click.Choice(ROLES),
              help="A role the token holds (repeatable).")
@click.option("--queues", default=None,
              help="Comma-separated queue globs the token is limited to, e.g. 'payments,emails*' (default: all).")
def new(name: str, roles: tuple[str, ...], queues: str | None) -> None:
    """Print a new random secret (once) and the [[token]] entry to paste into the auth file.

    Give the secret to the client (e.g. as CONVEYOR_TOKEN); the entry holds only its SHA-256."""
    if not NAME_RE.fullmatch(name):
        raise click.BadParameter("must be 1 to 64 of letters, digits and _.:@-", param_hint="--name")
    globs = None
    if queues is not None:
        globs = [g.strip() for g in queues.split(",") if g.strip()]
        if not globs:
            raise click.BadParameter("name at least one queue glob", param_hint="--queues")
    secret = new_token()
    click.echo(f"secret: {secret}")
    click.echo("(shown this once: give it to the client, e.g. as CONVEYOR_TOKEN; the scheduler keeps only its hash)")
    click.echo("")
    click.echo("# paste into the scheduler's --auth-file:")
    click.echo(entry(name, secret, list(dict.fromkeys(roles)), globs))
