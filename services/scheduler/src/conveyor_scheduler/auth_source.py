"""The auth file as it is now: re-read when it changes, so a token is added or revoked without a restart.

Calls ask `current()`, which looks at the file's modification time, size and inode at most
once a second (one stat); `watch()` asks once a second too, so an edit is logged (taken, or
refused) at once even while no call comes. A changed file is parsed whole and replaces the
table only if it is valid; a broken edit, or a file that went missing, keeps the last good
table and logs one error per version of the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from conveyor_scheduler.auth_file import AuthFileError, AuthTable, load
from conveyor_scheduler.file_stamps import stamp

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 1.0
MAX_CACHED_SECRETS = 10_000


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class AuthSource:
    """Holds the latest good AuthTable of one file."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._version = stamp(self.path)
        self.table: AuthTable = load(path)  # an invalid file stops start-up
        self._next_check = clock() + CHECK_INTERVAL_S
        self._digests: dict[str, str] = {}
        log.info("auth: %s", self.summary())

    def summary(self) -> str:
        t = self.table
        certs = len(t.subjects) + len(t.common_names)
        return f"{len(t.tokens)} tokens and {certs} certificate subjects from {self.path}"

    def current(self) -> AuthTable:
        """The table to check a call against (re-reads a changed file at most once a second)."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL_S
            self._reload_if_changed()
        return self.table

    async def watch(self) -> None:
        """Runs until cancelled: looks at the file every second."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self.current()

    def digest(self, secret: str) -> str:
        """SHA-256 of a presented secret, cached: a client sends the same one on every call."""
        digest = self._digests.get(secret)
        if digest is None:
            if len(self._digests) >= MAX_CACHED_SECRETS:  # unknown secrets must not grow it forever
                self._digests.clear()
            digest = self._digests[secret] = sha256_hex(secret)
        return digest

    def _reload_if_changed(self) -> None:
        version = stamp(self.path)
        if version == self._version:
            return
        self._version = version
        if version is None:
            log.error("auth file %s is gone; the last good version stays in force", self.path)
            return
        try:
            self.table = load(self.path)
        except AuthFileError as exc:
            log.error("%s; the last good version stays in force", exc)
            return
        log.info("auth file changed: %s", self.summary())
