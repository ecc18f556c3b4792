"""`conveyor workflow ID`'s pure parts: the tree a workflow's nodes are drawn as, the "after"
cell, and the JSON form."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from conveyor import NodeSnapshot, TaskState, WorkflowSnapshot, chord, group, signature
from conveyor.cli_workflow import tree_rows, view, workflow_json
from conveyor.v1 import task_pb2
from conveyor.v1 import workflow_pb2 as wf
from conveyor.workflow_graph import compile_workflow
from conveyor.workflow_snapshots import after_text

a, b, c, d, cb = (signature(name) for name in ("a", "b", "c", "d", "cb"))


def snapshot_of(canvas: Any, **fields: Any) -> WorkflowSnapshot:
    spec = compile_workflow(canvas)
    nodes = [wf.NodeState(key=n.key, name=n.task.name, queue="default", parents=n.parents,
                          parent_results=n.parent_results) for n in spec.nodes]
    fields = {"state": wf.WORKFLOW_STATE_RUNNING, **fields}
    return WorkflowSnapshot.of(wf.Workflow(id="wf_1", name=spec.name, run=1, nodes=nodes, **fields))


def drawn(canvas: Any) -> list[str]:
    return [line for line, _ in tree_rows(snapshot_of(canvas).nodes)]


def test_a_chain_is_a_column() -> None:
    assert drawn(a | b | c) == ["0", "1", "2"]


def test_a_group_branches_and_what_follows_hangs_under_its_last_member() -> None:
    assert drawn(a | chord([b, c], cb) | d) == ["0", "├── 1", "└── 2", "    3", "    4"]


def test_a_group_of_chains() -> None:
    assert drawn(group(a | b, c | d) | cb) == ["├── 0", "│   1", "└── 2", "    3", "    4"]


def test_a_group_after_a_group() -> None:
    assert drawn(a | group(b, c) | group(d, a) | cb) == ["0", "├── 1", "└── 2", "    ├── 3", "    └── 4", "        5"]


def test_a_long_chain_draws_without_recursion() -> None:
    many = tuple(NodeSnapshot(str(i), "", TaskState.UNSPECIFIED, "x", "q", (str(i - 1),) if i else (), "value")
                 for i in range(20_000))
    lines = [line for line, _ in tree_rows(many)]
    assert lines[:2] == ["0", "1"] and lines[-1] == "19999"


def test_a_node_naming_an_unknown_parent_is_still_drawn() -> None:
    orphan = NodeSnapshot("z", "", TaskState.UNSPECIFIED, "x", "q", ("gone",), "value")
    assert [line for line, _ in tree_rows((orphan,))] == ["z"]


def test_after_names_the_parents_and_what_the_node_gets() -> None:
    nodes = snapshot_of(chord([a] * 6, cb) | d.set(immutable=True)).nodes
    assert after_text(nodes[0]) == ""
    assert after_text(nodes[6]) == "0, 1, 2, 3, … 6 in all (list)"
    assert after_text(nodes[7]) == "6 (waits only)"
    assert after_text(snapshot_of(a | b).nodes[1]) == "0 (value)"
    assert after_text(snapshot_of(group() | b).nodes[0]) == "[] (list)"


def test_the_view_shows_the_error_and_the_json_decodes_the_result() -> None:
    failed = snapshot_of(a | b, state=wf.WORKFLOW_STATE_FAILED, error=wf.WorkflowError(
        node="1", task_id="t1", state=task_pb2.TASK_STATE_FAILED, error=task_pb2.TaskError(type="E", message="m")))
    console = Console(width=200, record=True)
    console.print(view(failed))
    text = console.export_text()
    assert "node 1 (task t1) ended FAILED: E: m" in text and "0/2 finished: 2 WAITING" in text
    done = snapshot_of(a, state=wf.WORKFLOW_STATE_SUCCEEDED,
                       result=task_pb2.TaskResult(data=b'{"n": 1}', content_type="application/json"))
    out = workflow_json(done)
    assert out["result"] == {"content_type": "application/json", "value": {"n": 1}}
    assert out["id"] == "wf_1" and out["state"] == "WORKFLOW_STATE_SUCCEEDED" and len(out["nodes"]) == 1
    raw = snapshot_of(a, state=wf.WORKFLOW_STATE_SUCCEEDED,
                      result=task_pb2.TaskResult(data=b"\x00\x01", content_type="application/octet-stream"))
    assert workflow_json(raw)["result"] == {"content_type": "application/octet-stream", "size": 2, "hex": "0001"}
