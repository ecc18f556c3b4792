"""The auth file (`--auth-file tokens.toml`): who may call, with which roles, on which queues.

    [[token]]
    name = "web"                      # shown in logs and denials, never the secret
    sha256 = "9f86d0...0f00a08"       # hex SHA-256 of the secret: the file holds no secret
    roles = ["producer"]
    queues = ["payments", "emails*"]  # optional fnmatch globs; absent: every queue

    [[cert]]                          # used when mutual TLS is on
    subject = "CN=worker-1"
    roles = ["worker"]

A `[[cert]]` subject that is only a common name ("CN=worker-1") matches every client
certificate with that CN (the client CA is trusted to hand out CNs); any other subject
must equal the certificate's whole subject as gRPC reports it, RFC 4514 with the CN first,
e.g. "CN=worker-1,OU=ops,O=Acme". A token sent with a call wins over the certificate.

`load` refuses an invalid file with a message naming the entry and field.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor_scheduler.access import ROLES

NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_GLOB = 200
MAX_CACHED_QUEUES = 4096


class AuthFileError(ValueError):
    """The auth file cannot be used; the message names the file, entry and field."""


@dataclass(eq=False, slots=True)
class Principal:
    """Who a credential stands for. Compared and hashed by identity: each load makes new ones."""

    kind: str
    """"token" or "cert"."""
    name: str
    """The token's name or the certificate's subject: safe to log."""
    roles: frozenset[str]
    queues: tuple[str, ...] | None
    """Queue globs the principal is scoped to; None: every queue."""
    index: str = "tokens"
    """The AuthTable mapping that holds it ("tokens", "subjects" or "common_names") ..."""
    key: str = ""
    """... under this key: `AuthTable.again` finds the same credential in a newer table."""
    _allowed: dict[str, bool] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.kind} {self.name!r} ({', '.join(sorted(self.roles))})"

    def may_use(self, queue: str) -> bool:
        """True when the principal's queue globs match `queue` (cached per queue name)."""
        if self.queues is None:
            return True
        ok = self._allowed.get(queue)
        if ok is None:
            ok = any(fnmatch.fnmatchcase(queue, glob) for glob in self.queues)
            if len(self._allowed) < MAX_CACHED_QUEUES:
                self._allowed[queue] = ok
        return ok


@dataclass(frozen=True, slots=True)
class AuthTable:
    """One load of the auth file: credentials -> principals."""

    tokens: Mapping[str, Principal]
    """Lower-case hex SHA-256 of the secret -> principal."""
    subjects: Mapping[str, Principal]
    """Whole certificate subject -> principal."""
    common_names: Mapping[str, Principal]
    """Certificate CN -> principal (entries written "CN=name")."""

    def by_certificate(self, subject: str, common_name: str) -> Principal | None:
        return self.subjects.get(subject) or self.common_names.get(common_name)

    def again(self, principal: Principal) -> Principal | None:
        """The principal of the same credential in this table (None: it was removed)."""
        mapping: Mapping[str, Principal] = getattr(self, principal.index)
        return mapping.get(principal.key)


def load(path: Path) -> AuthTable:
    """Reads and checks the auth file (AuthFileError names what is wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(f"auth file {path}: cannot be read ({exc})") from None
    return parse(text, str(path))


def parse(text: str, source: str = "auth file") -> AuthTable:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AuthFileError(f"{source}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"token", "cert"})
    if unknown:
        raise AuthFileError(f"{source}: unknown table {unknown[0]!r} (expected [[token]] and [[cert]] entries)")
    tokens: dict[str, Principal] = {}
    names: set[str] = set()
    subjects: dict[str, Principal] = {}
    common_names: dict[str, Principal] = {}
    for i, entry in enumerate(_entries(doc, "token", source)):
        where = _where(source, "token", i, entry, "name")
        _fields(entry, where, required=("name", "sha256", "roles"), optional=("queues",))
        name = _string(entry, "name", where)
        if not NAME_RE.fullmatch(name):
            raise AuthFileError(f"{where}: name: must be 1 to 64 of letters, digits and _.:@-, got {name!r}")
        if name in names:
            raise AuthFileError(f"{where}: name: another [[token]] has the name {name!r}")
        digest = _string(entry, "sha256", where)
        if not SHA256_RE.fullmatch(digest):
            raise AuthFileError(f"{where}: sha256: must be the 64 hex digits of the secret's SHA-256 "
                                f"(`conveyor token new` prints an entry)")
        digest = digest.lower()
        if digest in tokens:
            raise AuthFileError(f"{where}: sha256: token {tokens[digest].name!r} has the same digest")
        names.add(name)
        tokens[digest] = Principal("token", name, _roles(entry, where), _queues(entry, where), "tokens", digest)
    for i, entry in enumerate(_entries(doc, "cert", source)):
        where = _where(source, "cert", i, entry, "subject")
        _fields(entry, where, required=("subject", "roles"), optional=("queues",))
        subject = _string(entry, "subject", where)
        if "=" not in subject:
            raise AuthFileError(f"{where}: subject: must be a certificate subject such as 'CN=worker-1', "
                                f"got {subject!r}")
        cn_only = subject.startswith("CN=") and "," not in subject
        index, target = ("common_names", common_names) if cn_only else ("subjects", subjects)
        key = subject.removeprefix("CN=") if cn_only else subject
        principal = Principal("cert", subject, _roles(entry, where), _queues(entry, where), index, key)
        if key in target:
            raise AuthFileError(f"{where}: subject: another [[cert]] has the subject {subject!r}")
        target[key] = principal
    if not (tokens or subjects or common_names):
        raise AuthFileError(f"{source}: no [[token]] or [[cert]] entry: nobody could call the scheduler")
    return AuthTable(tokens, subjects, common_names)


def _entries(doc: dict[str, Any], kind: str, source: str) -> list[dict[str, Any]]:
    entries = doc.get(kind, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise AuthFileError(f"{source}: {kind}: write each entry as [[{kind}]]")
    return entries


def _where(source: str, kind: str, index: int, entry: dict[str, Any], key: str) -> str:
    label = entry.get(key)
    return f"{source}: [[{kind}]] #{index + 1}" + (f" ({key} {label!r})" if isinstance(label, str) else "")


def _fields(entry: dict[str, Any], where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for key in required:
        if key not in entry:
            raise AuthFileError(f"{where}: {key}: missing")
    for key in entry:
        if key not in required + optional:
            raise AuthFileError(f"{where}: {key}: unknown field (known: {', '.join(required + optional)})")


def _string(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise AuthFileError(f"{where}: {key}: must be a non-empty string")
    return value


def _strings(entry: dict[str, Any], key: str, where: str) -> list[str]:
    value = entry[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise AuthFileError(f"{where}: {key}: must be a non-empty list of non-empty strings")
    return value


def _roles(entry: dict[str, Any], where: str) -> frozenset[str]:
    roles = _strings(entry, "roles", where)
    for role in roles:
        if role not in ROLES:
            raise AuthFileError(f"{where}: roles: unknown role {role!r} (known: {', '.join(ROLES)})")
    return frozenset(roles)


def _queues(entry: dict[str, Any], where: str) -> tuple[str, ...] | None:
    if "queues" not in entry:
        return None
    globs = _strings(entry, "queues", where)
    for glob in globs:
        if len(glob) > MAX_GLOB or glob != glob.strip() or "," in glob:
            raise AuthFileError(f"{where}: queues: {glob!r} is not a queue glob (one glob per list item, "
                                f"no spaces or commas)")
    return tuple(dict.fromkeys(globs))
