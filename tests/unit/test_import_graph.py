"""The scheduler's modules import each other without a circle, not even one only a type
checker sees (`if TYPE_CHECKING:`), and only server.py imports the Core that wires them.
conveyor.celery's modules, too, import each other without a circle.

A circle means two modules cannot be read, tested or changed apart; Core is where objects
are wired together, and a module that imports it is using it as a service locator.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "services/scheduler/src/conveyor_scheduler"
NAME = "conveyor_scheduler"
CELERY_PACKAGE = ROOT / "sdk/python/src/conveyor/celery"
CELERY_NAME = "conveyor.celery"


def modules(package: Path = PACKAGE, package_name: str = NAME) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = (package_name, *path.relative_to(package).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file: at the top, in a
    function, under `if TYPE_CHECKING:`. `from a import b` counts as importing a.b when
    that is a module, else a."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def graph(package: Path = PACKAGE, package_name: str = NAME) -> dict[str, set[str]]:
    mods = modules(package, package_name)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_every_import_and_finds_a_circle(tmp_path: Path) -> None:
    module = tmp_path / "beat.py"
    module.write_text("from typing import TYPE_CHECKING\n"
                      "from conveyor_scheduler import store\n"
                      "from . import keys\n"
                      "if TYPE_CHECKING:\n    from conveyor_scheduler.core import Core\n"
                      "def later():\n    import conveyor_scheduler.bus\n")
    known = {f"{NAME}.{m}" for m in ("store", "keys", "core", "bus", "beat")}
    assert imports(f"{NAME}.beat", module, known) == known - {f"{NAME}.beat"}
    assert f"{NAME}.servicers.task_service" in graph()
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_scheduler_modules_import_each_other_without_a_circle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())


def test_only_the_server_imports_core() -> None:
    importers = sorted(name for name, targets in graph().items() if f"{NAME}.core" in targets)
    assert importers == [f"{NAME}.server"], f"modules importing {NAME}.core: {importers}"


def test_the_celery_compat_modules_import_each_other_without_a_circle() -> None:
    edges = graph(CELERY_PACKAGE, CELERY_NAME)
    assert f"{CELERY_NAME}.app" in edges and f"{CELERY_NAME}.task" in edges[f"{CELERY_NAME}.app"]
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())
