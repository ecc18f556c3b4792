"""`@app.task` keeps the decorated function's signature for type checkers (checked with mypy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPET = '''
from conveyor import App, TaskHandle

app = App("types")

@app.task
def add(x: int, y: int) -> int:
    return x + y

@app.task(name="t.greet", queue="q")
async def greet(name: str) -> str:
    return name

ok_handle: TaskHandle[int] = add.submit(1, 2)
ok_async: TaskHandle[str] = greet.submit("ada")
ok_value: int = add.submit(1, y=2).result()
add.submit("one", 2)          # line 17: wrong type
add.submit(1)                 # line 18: missing argument
greet.submit(name=3)          # line 19: wrong type
import conveyor               # a canvas' signatures are partial (a chain's step gets its parent's result first)
flow: conveyor.Canvas = add.s(1, 2) | add.s(3) | conveyor.group(add.s(i) for i in range(3)) | greet.si("x")
handle: conveyor.WorkflowHandle = conveyor.chord([add.s(1, 2)], add.s())(client=conveyor.Client())
value: object = flow.submit().result(timeout=1)
called: conveyor.WorkflowHandle = (add.s(1, 2) | add.s(3))()  # Celery's chain(...)(): submits
'''


def test_task_submit_is_checked_against_the_function_signature_and_canvases_type_check(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "--no-error-summary",
         "--cache-dir", str(tmp_path / ".mypy"), str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    lines = {int(line.split(":")[1]) for line in out.stdout.splitlines() if ": error:" in line}
    assert lines == {17, 18, 19}, out.stdout
