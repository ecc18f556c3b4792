"""`conveyor workflow ID`: a workflow's state, error or result, and its nodes as a tree (each with
its task, queue, state and task id); `--watch` redraws it as nodes finish."""

from __future__ import annotations

import collections
import json
import sys
from typing import Any

import click
from google.protobuf.json_format import MessageToDict
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from conveyor.cli_common import client_of, console, emit_json, json_option, raw, when
from conveyor.common import TaskState
from conveyor.serialization import JSON, decode_result
from conveyor.workflow_snapshots import NodeSnapshot, WorkflowSnapshot, WorkflowState, after_text

RESULT_CHARS = 2000
"""Characters of a result shown (pretty-printed JSON); --json has all of it."""
BRANCH, LAST, PIPE, BLANK = "├── ", "└── ", "│   ", "    "


def tree_rows(nodes: tuple[NodeSnapshot, ...]) -> list[tuple[str, NodeSnapshot]]:
    """(the node's key drawn in a tree, the node), in drawing order. A node hangs under its last
    parent (the one latest in node order; its "after" cell names them all); the only child of a
    node is drawn below it at the same depth, so a chain stays a column, and the children of a
    node with several are branches. Iterative: a chain of 100,000 nodes draws too."""
    order = {n.key: i for i, n in enumerate(nodes)}
    children: dict[str, list[NodeSnapshot]] = collections.defaultdict(list)
    roots: list[NodeSnapshot] = []
    for n in nodes:
        known = [p for p in n.parents if p in order]
        if known:
            children[max(known, key=order.__getitem__)].append(n)
        else:
            roots.append(n)
    rows: list[tuple[str, NodeSnapshot]] = []
    # (node, the prefix of its line, the prefix its children's lines continue with)
    stack: list[tuple[NodeSnapshot, str, str]] = _branches(roots, "")
    while stack:
        node, line, below = stack.pop()
        rows.append((line + node.key, node))
        stack += _branches(children.get(node.key, []), below)
    return rows


def _branches(kids: list[NodeSnapshot], prefix: str) -> list[tuple[NodeSnapshot, str, str]]:
    """Stack entries for `kids` (the first on top): one kid continues its parent's column."""
    if len(kids) == 1:
        return [(kids[0], prefix, prefix)]
    entries = [(k, prefix + (LAST if i == len(kids) - 1 else BRANCH), prefix + (BLANK if i == len(kids) - 1 else PIPE))
               for i, k in enumerate(kids)]
    return entries[::-1]




def state_text(node: NodeSnapshot) -> str:
    if node.state is TaskState.UNSPECIFIED:
        return "WAITING"  # for its parents
    return node.state.name


def nodes_table(snapshot: WorkflowSnapshot) -> Table:
    out = Table(title_justify="left")
    for column in ("node", "task", "queue", "state", "task id", "after"):
        out.add_column(column, overflow="fold", no_wrap=column == "node")
    for drawn, node in tree_rows(snapshot.nodes):
        out.add_row(*(Text(cell) for cell in (drawn, node.name, node.queue or "-", state_text(node),
                                              node.task_id or "-", after_text(node))))
    return out


def summary(snapshot: WorkflowSnapshot) -> Table:
    """The workflow's own lines: id, name, state, progress, times, error or result."""
    counts = collections.Counter(state_text(n) for n in snapshot.nodes)
    rows = [("workflow", snapshot.id), ("name", snapshot.name or "-"),
            ("state", snapshot.state.name + (f" (run {snapshot.run})" if snapshot.run > 1 else "")),
            ("on failure", snapshot.on_failure.replace("_", " ")),
            ("nodes", f"{snapshot.finished_nodes}/{len(snapshot.nodes)} finished: "
             + ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))),
            ("created", when(snapshot.record.created_at, snapshot.record.HasField("created_at"))),
            ("finished", when(snapshot.record.finished_at, snapshot.finished_at is not None))]
    if snapshot.error is not None:
        e = snapshot.error
        task = f" (task {e.task_id})" if e.task_id else ""
        rows.append(("error", f"node {e.node}{task} ended {e.state.name}: {e.error_type}: {e.error_message}"))
    result = result_json(snapshot)
    if result is not None:
        shown = _pretty(result["value"]) if "value" in result else f"{result['content_type']}, {result['size']} bytes"
        rows.append(("result", shown if len(shown) <= RESULT_CHARS else shown[:RESULT_CHARS] + " ..."))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, Text(value))
    return grid


def _pretty(value: Any) -> str:
    """JSON on one line when it is short, indented otherwise."""
    line = json.dumps(value, ensure_ascii=False)
    return line if len(line) <= 100 else json.dumps(value, indent=2, ensure_ascii=False)


def view(snapshot: WorkflowSnapshot) -> Group:
    return Group(summary(snapshot), nodes_table(snapshot))


def result_json(snapshot: WorkflowSnapshot) -> dict[str, Any] | None:
    """{"content_type", "value"} of a JSON result, {"content_type", "size", "hex"} of another,
    None before it succeeded."""
    if not snapshot.record.HasField("result"):
        return None
    data, ct = snapshot.record.result.data, snapshot.record.result.content_type or JSON
    if ct != JSON:
        return raw(data, ct)
    try:
        return {"content_type": ct, "value": decode_result(data, ct)}
    except ValueError:
        return raw(data, ct)


def workflow_json(snapshot: WorkflowSnapshot) -> dict[str, Any]:
    """The record as proto JSON, with the result decoded (as `conveyor task --json` does)."""
    out = MessageToDict(snapshot.record, preserving_proto_field_name=True)
    out.pop("result", None)
    result = result_json(snapshot)
    if result is not None:
        out["result"] = result
    return out


@click.command()
@click.argument("workflow_id")
@json_option
@click.option("--watch", is_flag=True,
              help="Redraw as nodes finish until the workflow ends; exit 1 unless it SUCCEEDED.")
@click.pass_context
def workflow(ctx: click.Context, workflow_id: str, as_json: bool, watch: bool) -> None:
    """Show workflow WORKFLOW_ID: its state, error or result, and its nodes as a tree (each
    node's key, task, queue, state and task id, and whom it runs after).

    A node hangs under the last of its parents; "after" names them all and what the node gets
    from them (value: the one parent's result; list: the list of their results; waits only:
    nothing, an immutable .si() signature). WAITING: not submitted yet. --json prints the
    record as proto JSON with the result decoded; with --watch, one line of JSON per change."""
    with client_of(ctx) as client:
        handle = client.workflow(workflow_id)
        if not watch:
            snapshot = handle.get()
            if as_json:
                emit_json(workflow_json(snapshot))
            else:
                console().print(view(snapshot))
            return
        last = _watch(handle.watch(), as_json)
    if last is not None and last.state is not WorkflowState.SUCCEEDED:
        sys.exit(1)


def _watch(snapshots: Any, as_json: bool) -> WorkflowSnapshot | None:
    last: WorkflowSnapshot | None = None
    try:
        if as_json:
            for last in snapshots:
                click.echo(json.dumps(workflow_json(last), default=str))
            return last
        last = next(snapshots)
        with Live(view(last), console=console(), auto_refresh=False) as live:
            for last in snapshots:
                live.update(view(last), refresh=True)
    except KeyboardInterrupt:
        return None
    return last
