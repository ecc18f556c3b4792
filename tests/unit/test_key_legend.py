"""One legend for the Redis model: conveyor_scheduler.keys (KEY_PATTERNS, TASK_FIELDS,
SCHEDULE_FIELDS, WORKER_FIELDS) is the source; the Lua scripts, the Python code and docs/ARCHITECTURE.md
are held to it.

- Every hash field the Lua scripts read or write (field-name literals of HSET, HGET, HMGET,
  HDEL, HEXISTS, HINCRBY and finish(); `f.xx` reads of a record map) and every field the
  Python code reads or writes is in the legend, and every legend field is used somewhere.
  Python: any short lower-case bytes literal (records are dict[bytes, bytes]: rec[b"st"],
  rec.get(b"st")), field literals of redis-py hash calls, and the `fields` lists/dicts built
  for a script. Modules beat.py, schedules.py and schedule_store.py handle schedule hashes,
  registry.py and the worker_*.lua scripts worker hashes.
- Every key and channel keys.py builds, or a script derives from its prefix, is a
  KEY_PATTERNS entry, and every entry is built somewhere; the Lua comments name only those.
- docs/ARCHITECTURE.md's four legend tables hold exactly the legend's rows.

A failure names the field or key, where it was found, and the file to add it to.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections import defaultdict
from pathlib import Path

from conveyor_scheduler import keys

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "services/scheduler/src/conveyor_scheduler"
LUA = PACKAGE / "lua"
KEYS_PY = "services/scheduler/src/conveyor_scheduler/keys.py"
DOC = ROOT / "docs/ARCHITECTURE.md"
SCHEDULE_SCRIPTS = "beat_"
"""Scripts whose hash is a schedule hash (cv:{beat}:s:ID), not a task hash."""
NO_TASK_HASH_SCRIPTS = {"register_queue.lua"}
SCHEDULE_MODULES = {"beat.py", "schedules.py", "schedule_store.py"}
"""Python modules whose hash records are schedule hashes."""
WORKER_SCRIPTS = "worker_"
"""Scripts whose hash is a worker registry hash (cv:{workers}:w:ID)."""
WORKER_MODULES = {"registry.py"}
"""Python modules whose hash records are worker registry hashes."""
WORKFLOW_SCRIPTS = "wf_"
"""Scripts whose literal hash fields are a workflow's meta hash (cv:{w:ID}:w); its other hashes
are keyed by node keys, never by literals."""
WORKFLOW_MODULES = {"workflows.py", "workflow_store.py"}
"""Python modules whose hash records are workflow meta hashes."""
NO_HASH_MODULES = {"workflow_payloads.py"}
"""Python modules whose short bytes literals are not hash fields (outcome markers)."""
FIELD_RE = re.compile(r"[a-z][a-z0-9]{0,3}")
HASH_COMMANDS = {"hset", "hget", "hmget", "hdel", "hexists", "hincrby"}
TABLES = {
    "### Keys and channels": "keys",
    "### Task hash fields": "task",
    "### Schedule hash fields": "schedule",
    "### Worker hash fields": "worker",
    "### Workflow hash fields": "workflow",
}
"""Headings of docs/ARCHITECTURE.md's legend tables."""

Uses = dict[str, set[str]]
"""name -> the places it was found ("claim.lua", "records.py", ...)."""


# -- reading the Lua scripts -------------------------------------------------------------------

def _strip_lua_comments(text: str) -> str:
    out = []
    for line in text.splitlines():
        quote, end = None, len(line)
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif line.startswith("--", i):
                end = i
                break
        out.append(line[:end])
    return "\n".join(out)


def _call_args(text: str, open_paren: int) -> list[str]:
    """The top-level comma-separated arguments of the call whose '(' is at `open_paren`."""
    depth, quote, start, args = 0, None, open_paren + 1, []
    for i in range(open_paren, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                args.append(text[start:i].strip())
                return args
        elif ch == "," and depth == 1:
            args.append(text[start:i].strip())
            start = i + 1
    raise AssertionError(f"unbalanced call at offset {open_paren}")


def _literal(arg: str) -> str | None:
    m = re.fullmatch(r"'([^']*)'|\"([^\"]*)\"", arg)
    return None if m is None else (m.group(1) if m.group(1) is not None else m.group(2))


def _field_positions(command: str, rest: list) -> list:
    """The field arguments of a hash command, given its arguments after the key."""
    command = command.lower()
    if command == "hset":
        return rest[0::2]
    if command in ("hget", "hexists", "hincrby"):
        return rest[:1]
    if command in ("hmget", "hdel"):
        return rest
    return []


def lua_fields() -> tuple[Uses, Uses, Uses, Uses]:
    """(task, schedule, worker, workflow hash fields) the scripts read or write."""
    task: Uses = defaultdict(set)
    schedule: Uses = defaultdict(set)
    worker: Uses = defaultdict(set)
    workflow: Uses = defaultdict(set)
    for path in sorted(LUA.glob("*.lua")):
        if path.name in NO_TASK_HASH_SCRIPTS:
            continue
        uses = schedule if path.name.startswith(SCHEDULE_SCRIPTS) else \
            worker if path.name.startswith(WORKER_SCRIPTS) else \
            workflow if path.name.startswith(WORKFLOW_SCRIPTS) else task
        code = _strip_lua_comments(path.read_text(encoding="utf-8"))
        for m in re.finditer(r"redis\.call\s*\(", code):
            args = _call_args(code, m.end() - 1)
            command = _literal(args[0]) or ""
            for arg in _field_positions(command, args[2:]):
                if (name := _literal(arg)) is not None:
                    uses[name].add(f"{path.name} ({command})")
        for m in re.finditer(r"\bfinish\s*\(", code):  # finish(id, key, state, watched, node, field, value, ...)
            if code[:m.start()].rstrip().endswith("function"):
                continue
            for arg in _call_args(code, m.end() - 1)[5::2]:
                if (name := _literal(arg)) is not None:
                    uses[name].add(f"{path.name} (finish)")
        for m in re.finditer(r"\bf\.([A-Za-z_]\w*)", code):  # reads of a HGETALL record map
            uses[m.group(1)].add(f"{path.name} (f.{m.group(1)})")
    return task, schedule, worker, workflow


# -- reading the Python code --------------------------------------------------------------------

def _python_fields(path: Path, uses: Uses) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = str(path.relative_to(ROOT))

    def add(node: ast.AST | None, how: str) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes | str):
            name = node.value.decode() if isinstance(node.value, bytes) else node.value
            if FIELD_RE.fullmatch(name):
                uses[name].add(f"{where}:{node.lineno} ({how})")

    def add_built(value: ast.AST | None) -> None:
        """A `fields` list (name, value, name, value, ...) or dict built for a script."""
        if isinstance(value, ast.List):
            for element in value.elts[0::2]:
                add(element, "fields list")
        elif isinstance(value, ast.Dict):
            for key in value.keys:
                add(key, "fields dict")

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            add(node, "record key")  # rec[b"st"], rec.get(b"st"), b"et" in rec, {b"st": ...}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "fields" for t in targets):
                add_built(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, args = node.func.attr, node.args
            if attr in HASH_COMMANDS:  # redis.hget(key, "h")
                for arg in _field_positions(attr, args[1:]):
                    add(arg, attr)
            elif attr == "execute" and args and isinstance(args[0], ast.Constant) \
                    and str(args[0].value).lower() in HASH_COMMANDS:  # fast.execute("HGET", key, "st")
                for arg in _field_positions(str(args[0].value), args[2:]):
                    add(arg, str(args[0].value))
            elif attr == "save":  # ScheduleStore.save(id, version, next, {fields})
                for arg in args:
                    add_built(arg)


def python_fields() -> tuple[Uses, Uses, Uses, Uses]:
    """(task, schedule, worker, workflow hash fields) the scheduler package and the bench use."""
    task: Uses = defaultdict(set)
    schedule: Uses = defaultdict(set)
    worker: Uses = defaultdict(set)
    workflow: Uses = defaultdict(set)
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "bench").glob("*.py")]):
        if path.name in NO_HASH_MODULES:
            continue
        _python_fields(path, schedule if path.name in SCHEDULE_MODULES else
                       worker if path.name in WORKER_MODULES else
                       workflow if path.name in WORKFLOW_MODULES else task)
    for name in keys.CLAIM_REPLY_FIELDS:
        task.pop(name, None)
    return task, schedule, worker, workflow


# -- keys ---------------------------------------------------------------------------------------

def normalize(pattern: str) -> str:
    """Placeholders (upper-case words, numbers) as '*': cv:{q:QUEUE}:r:P -> cv:{q:*}:r:*."""
    return re.sub(r"(?<=[:{])(?:[A-Z][A-Z0-9_]*|\d+)(?=[:}]|$)", "*", pattern)


def _key_values(value: object) -> list[str]:
    items = value if isinstance(value, tuple) else (value,)
    return [v for v in items if isinstance(v, str) and v.startswith("cv:") and not v.endswith(":")]


def _placeholder_call(fn: object, skip: int = 0) -> object:
    count = len(inspect.signature(fn).parameters) - skip  # type: ignore[arg-type]
    return fn(*(["ARG"] * count))  # type: ignore[operator]


def built_keys() -> Uses:
    """Normalized key/channel patterns that keys.py builds or a Lua script derives."""
    uses: Uses = defaultdict(set)
    for name, value in vars(keys).items():
        if inspect.isfunction(value) and value.__module__ == keys.__name__:
            value = _placeholder_call(value)  # noqa: PLW2901
        for key in _key_values(value):
            uses[normalize(key)].add(f"keys.py ({name})")
    queue = keys.QueueKeys.of("QUEUE")
    for name in dir(keys.QueueKeys):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(keys.QueueKeys, name)
        if isinstance(static, classmethod | staticmethod):
            continue
        value = _placeholder_call(getattr(queue, name)) if inspect.isfunction(static) else getattr(queue, name)
        for key in _key_values(value):
            uses[normalize(key)].add(f"keys.py (QueueKeys.{name})")
    for key in keys.WorkflowKeys.of("ID").script_keys:
        uses[normalize(key)].add("keys.py (WorkflowKeys)")
    for path in sorted(LUA.glob("*.lua")):
        code = _strip_lua_comments(path.read_text(encoding="utf-8"))
        for m in re.finditer(r"\bPREFIX\s*\.\.\s*'([^']+)'", code):
            suffix = m.group(1)
            uses[normalize("cv:{q:QUEUE}:" + suffix + ("ID" if suffix.endswith(":") else ""))].add(path.name)
        for m in re.finditer(r"\bARGV\[4\]\s*\.\.\s*'(:[^']+)'", code):
            uses[normalize(keys.CHANNEL_PREFIX + m.group(1))].add(path.name)
    return uses


def lua_comment_keys() -> Uses:
    uses: Uses = defaultdict(set)
    for path in sorted(LUA.glob("*.lua")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("--"):
                for m in re.finditer(r"cv:\{[^}]*\}(?::[\w.-]+)*(?![:\w.-])", line):  # not prefixes
                    uses[normalize(m.group(0))].add(f"{path.name} (comment)")
    return uses


# -- docs/ARCHITECTURE.md -----------------------------------------------------------------------

def _cells(row: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def doc_tables() -> dict[str, dict[str, list[str]]]:
    """table -> first cell (backticks removed) -> the other cells."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    tables: dict[str, dict[str, list[str]]] = {}
    for heading, table in TABLES.items():
        assert heading in lines, f"docs/ARCHITECTURE.md has no heading {heading!r} for its legend table"
        rows: dict[str, list[str]] = {}
        i = lines.index(heading) + 1
        while i < len(lines) and not lines[i].startswith("|"):
            i += 1
        i += 2  # header and separator
        while i < len(lines) and lines[i].startswith("|"):
            first, *rest = _cells(lines[i])
            rows[first.strip("`")] = rest
            i += 1
        tables[table] = rows
    return tables


def _row(*cells: str) -> str:
    first, *rest = cells
    return "| " + " | ".join([f"`{first}`", *(c.replace("|", "\\|") for c in rest)]) + " |"


def expected_rows() -> dict[str, dict[str, list[str]]]:
    return {
        "keys": {k: [t, m] for k, (t, m) in keys.KEY_PATTERNS.items()},
        "task": {f: [m] for f, m in keys.TASK_FIELDS.items()},
        "schedule": {f: [m] for f, m in keys.SCHEDULE_FIELDS.items()},
        "worker": {f: [m] for f, m in keys.WORKER_FIELDS.items()},
        "workflow": {f: [m] for f, m in keys.WORKFLOW_FIELDS.items()},
    }


# -- the tests ----------------------------------------------------------------------------------

def _places(uses: Uses, name: str) -> str:
    return ", ".join(sorted(uses[name])[:4]) + (" ..." if len(uses[name]) > 4 else "")


def _fields_in_legend(kind: str, legend: dict[str, str], lua: Uses, py: Uses) -> list[str]:
    problems = []
    for name in sorted(set(lua) | set(py)):
        if name not in legend:
            places = _places({name: lua.get(name, set()) | py.get(name, set())}, name)
            problems.append(f"{kind} field {name!r} is used ({places}) but missing from {KEYS_PY}; "
                            "add its meaning there, then its row to docs/ARCHITECTURE.md")
    for name in sorted(legend):
        if name not in lua and name not in py:
            problems.append(f"{kind} field {name!r} is listed in {KEYS_PY} but no Lua script or Python "
                            "code uses it; remove it from keys.py and docs/ARCHITECTURE.md")
    return problems


def test_task_hash_fields_match_the_legend() -> None:
    lua, _, _, _ = lua_fields()
    py, _, _, _ = python_fields()
    problems = _fields_in_legend("task hash (TASK_FIELDS)", keys.TASK_FIELDS, lua, py)
    assert not problems, "\n".join(problems)


def test_schedule_hash_fields_match_the_legend() -> None:
    _, lua, _, _ = lua_fields()
    _, py, _, _ = python_fields()
    problems = _fields_in_legend("schedule hash (SCHEDULE_FIELDS)", keys.SCHEDULE_FIELDS, lua, py)
    assert not problems, "\n".join(problems)


def test_worker_hash_fields_match_the_legend() -> None:
    _, _, lua, _ = lua_fields()
    _, _, py, _ = python_fields()
    problems = _fields_in_legend("worker hash (WORKER_FIELDS)", keys.WORKER_FIELDS, lua, py)
    assert not problems, "\n".join(problems)


def test_workflow_hash_fields_match_the_legend() -> None:
    *_, lua = lua_fields()
    *_, py = python_fields()
    problems = _fields_in_legend("workflow hash (WORKFLOW_FIELDS)", keys.WORKFLOW_FIELDS, lua, py)
    assert not problems, "\n".join(problems)


def test_keys_match_the_legend() -> None:
    built = built_keys()
    legend = {normalize(p): p for p in keys.KEY_PATTERNS}
    problems = [f"key {key!r} is built ({_places(built, key)}) but missing from KEY_PATTERNS in {KEYS_PY}; "
                "add it there (placeholders in upper case), then its row to docs/ARCHITECTURE.md"
                for key in sorted(set(built) - set(legend))]
    problems += [f"key {legend[key]!r} is listed in KEY_PATTERNS ({KEYS_PY}) but neither keys.py nor a Lua "
                 "script builds it; remove it from keys.py and docs/ARCHITECTURE.md"
                 for key in sorted(set(legend) - set(built))]
    assert not problems, "\n".join(problems)


def test_lua_comments_name_legend_keys_only() -> None:
    named = lua_comment_keys()
    legend = {normalize(p) for p in keys.KEY_PATTERNS}
    problems = [f"{_places(named, key)} names key {key!r}, which is not in KEY_PATTERNS ({KEYS_PY})"
                for key in sorted(set(named) - legend)]
    assert not problems, "\n".join(problems)
    assert named, "no key pattern found in the Lua comments: the parser broke (lib.lua lists the KEYS)"


def test_lua_comments_point_to_the_legend() -> None:
    """The scripts keep no copy of the field legend (one that could drift): they point to keys.py."""
    lib = (LUA / "lib.lua").read_text(encoding="utf-8")
    assert "TASK_FIELDS in" in lib and "keys.py" in lib, "lib.lua's header must point to TASK_FIELDS in keys.py"
    assert "SCHEDULE_FIELDS in ../keys.py" in (LUA / "beat_save.lua").read_text(encoding="utf-8")
    for path in LUA.glob("*.lua"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"hash fields:\s*[a-z][a-z0-9]{0,3} [a-z]", text), \
            f"{path.name} lists hash fields in a comment; point to keys.py (TASK_FIELDS/SCHEDULE_FIELDS) instead"


def test_architecture_doc_tables_match_the_legend() -> None:
    docs, expected = doc_tables(), expected_rows()
    names = {"keys": "Keys and channels", "task": "Task hash fields", "schedule": "Schedule hash fields",
             "worker": "Worker hash fields", "workflow": "Workflow hash fields"}
    problems = []
    for table, rows in expected.items():
        got = docs[table]
        for name, cells in rows.items():
            if name not in got:
                problems.append(f"docs/ARCHITECTURE.md, table {names[table]!r}: {name!r} is missing; "
                                f"add the row: {_row(name, *cells)}")
            elif got[name] != cells:
                problems.append(f"docs/ARCHITECTURE.md, table {names[table]!r}: the row of {name!r} differs "
                                f"from {KEYS_PY}; make it: {_row(name, *cells)}")
        problems += [f"docs/ARCHITECTURE.md, table {names[table]!r}: {name!r} is not in {KEYS_PY}; "
                     "add it there or remove the row" for name in got if name not in rows]
    assert not problems, "\n".join(problems)


def test_the_readers_find_what_they_look_for() -> None:
    """Guards the parsers themselves: each kind of use is found where it is known to be."""
    lua_task, lua_schedule, lua_worker, lua_workflow = lua_fields()
    py_task, py_schedule, py_worker, py_workflow = python_fields()
    assert "finish" in " ".join(lua_task["r"])  # finish(..., 'r', data)
    assert any("f.rs" in p for p in lua_task["rs"])  # claim.lua's record map
    assert any("HINCRBY" in p for p in lua_task["ev"])
    assert "beat_advance.lua (HINCRBY)" in lua_schedule["fc"]
    assert any("validation.py" in p for p in py_task["st2"])  # the fields list check_spec builds
    assert any("telemetry.py" in p for p in py_task["h"])  # redis.hget(key, "h")
    assert any("records.py" in p for p in py_task["et"])
    assert any("beat.py" in p for p in py_schedule["ua"])  # the fields dict given to save()
    assert "worker_leave.lua (HGET)" in lua_worker["o"]
    assert any("registry.py" in p for p in py_worker["hb"])
    assert "wf_apply.lua (HINCRBY)" in lua_workflow["nf"]
    assert any("workflows.py" in p for p in py_workflow["en"])
    assert "lt" not in lua_task or not any(p.startswith("beat_") for p in lua_task["lt"])
    built = built_keys()
    assert normalize("cv:{q:QUEUE}:rl:NAME") in built and normalize("cv:{q:QUEUE}:r:P") in built
    assert normalize(keys.schedule_key("x1")) == "cv:{beat}:s:x1"  # lower case is not a placeholder
