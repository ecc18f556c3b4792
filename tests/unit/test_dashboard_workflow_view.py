"""How the workflow page lays a graph out (columns by longest path, wide columns as one box, edges
once per pair of elements) and what its event stream sends (only what changed)."""

from __future__ import annotations

from conveyor.common import TaskState
from conveyor.v1 import workflow_pb2 as wf
from conveyor.workflow_snapshots import NodeSnapshot, WorkflowSnapshot
from conveyor_dashboard.events import WorkflowChanges
from conveyor_dashboard.workflow_view import COLLAPSE_OVER, MAX_COLUMNS, MAX_SQUARES, after_text, layout

LIST, VALUE = wf.PARENT_RESULTS_LIST, wf.PARENT_RESULTS_VALUE


def node(key: str, *parents: str, results: int = 0, state: int = 0, task_id: str = "",
         name: str = "t.add") -> wf.NodeState:
    return wf.NodeState(key=key, parents=parents, parent_results=results, state=state, task_id=task_id, name=name,
                        queue="default")


def snaps(*nodes: wf.NodeState) -> tuple[NodeSnapshot, ...]:
    return tuple(NodeSnapshot.of(n) for n in nodes)


def shape(nodes: tuple[NodeSnapshot, ...]) -> list[list[str]]:
    return [[n.key for n in c.nodes] for c in layout(nodes).columns]


def test_a_chain_is_one_column_per_step_and_a_chord_two() -> None:
    chain = snaps(node("0"), node("1", "0", results=VALUE), node("2", "1", results=VALUE))
    assert shape(chain) == [["0"], ["1"], ["2"]]
    assert layout(chain).edges == (("node-0", "node-1"), ("node-1", "node-2"))
    chord = snaps(*(node(str(i)) for i in range(3)), node("3", "0", "1", "2", results=LIST))
    assert shape(chord) == [["0", "1", "2"], ["3"]]
    assert len(layout(chord).edges) == 3 and not any(c.collapsed for c in layout(chord).columns)


def test_depth_is_the_longest_path_whatever_the_node_order() -> None:
    # d after c and a; c after b after a: d goes right of c, not next to b; listed child first.
    nodes = snaps(node("d", "c", "a"), node("c", "b"), node("b", "a"), node("a"))
    assert shape(nodes) == [["a"], ["b"], ["c"], ["d"]]
    assert ("node-a", "node-d") in layout(nodes).edges  # an edge may skip columns


def test_a_group_of_chains_keeps_each_chain_on_its_row() -> None:
    # Two chains listed so that node order alone would cross them in the second column.
    nodes = snaps(node("a0"), node("b0"), node("b1", "b0", results=VALUE), node("a1", "a0", results=VALUE))
    assert shape(nodes) == [["a0", "b0"], ["a1", "b1"]]


def test_a_wide_header_is_one_box_with_one_edge_to_the_callback() -> None:
    width = 1000
    header = [node(str(i), state=TaskState.SUCCEEDED if i % 2 else TaskState.ACTIVE, task_id=f"t{i}")
              for i in range(width)]
    graph = layout(snaps(*header, node("cb", *(str(i) for i in range(width)), results=LIST)))
    box, callback = graph.columns
    assert box.collapsed and not callback.collapsed and len(box.nodes) == width
    assert graph.edges == (("group-0", "node-cb"),)
    assert box.counts() == [("ACTIVE", 500), ("SUCCEEDED", 500)]
    assert box.summary("name") == "t.add" and box.after == "" and box.hidden == 0
    assert callback.nodes[0].after == "0, 1, 2, 3, … 1000 in all (list)"
    assert graph.groups() == {str(i): "group-0" for i in range(width)}
    assert len(layout(snaps(*(node(str(i)) for i in range(COLLAPSE_OVER)))).columns[0].nodes) == COLLAPSE_OVER
    assert not layout(snaps(*(node(str(i)) for i in range(COLLAPSE_OVER)))).columns[0].collapsed


def test_boxes_cap_their_squares_and_box_to_box_is_one_edge() -> None:
    wide = MAX_SQUARES + 5
    first = [node(f"a{i}", name="t.add" if i else "t.other") for i in range(wide)]
    second = [node(f"b{i}", *(f"a{j}" for j in range(wide)), results=LIST) for i in range(20)]
    graph = layout(snaps(*first, *second))
    assert graph.edges == (("group-0", "group-1"),)
    assert graph.columns[0].hidden == 5 and len(graph.columns[0].squares) == MAX_SQUARES
    assert graph.columns[0].summary("name") == f"t.add ({wide - 1}), t.other (1)"
    assert graph.columns[1].after.endswith(f"… {wide} in all (list)")


def test_a_graph_too_deep_to_draw_is_one_box_without_edges() -> None:
    nodes = snaps(node("0"), *(node(str(i), str(i - 1), results=VALUE) for i in range(1, MAX_COLUMNS + 1)))
    graph = layout(nodes)
    assert not graph.drawn and graph.edges == ()
    assert [len(c.nodes) for c in graph.columns] == [MAX_COLUMNS + 1] and graph.columns[0].collapsed
    assert layout(nodes[:MAX_COLUMNS]).drawn


def test_after_text_says_what_a_node_gets() -> None:
    assert after_text(NodeSnapshot.of(node("r"))) == ""
    assert after_text(NodeSnapshot.of(node("r", results=LIST))) == "[] (list)"
    assert after_text(NodeSnapshot.of(node("x", "a", results=VALUE))) == "a (value)"
    assert after_text(NodeSnapshot.of(node("x", "a", "b"))) == "a, b (waits only)"


def workflow(state: int, *nodes: wf.NodeState) -> WorkflowSnapshot:
    record = wf.Workflow(id="wf_x", state=state, run=1, nodes=nodes,
                         finished_nodes=sum(1 for n in nodes if n.state >= TaskState.SUCCEEDED))
    return WorkflowSnapshot.of(record)


def test_the_stream_sends_every_node_first_then_only_what_changed() -> None:
    running, done = wf.WORKFLOW_STATE_RUNNING, wf.WORKFLOW_STATE_SUCCEEDED
    headers = [node(str(i), state=TaskState.ACTIVE, task_id=f"t{i}") for i in range(20)]
    callback = node("cb", *(str(i) for i in range(20)), results=LIST)
    changes = WorkflowChanges()
    first = changes.event(workflow(running, *headers, callback))
    assert len(first["nodes"]) == 21 and first["nodes"][-1] == ["cb", "WAITING", ""]
    assert first["groups"] == {"group-0": [("ACTIVE", 20)]}
    assert (first["state"], first["terminal"], first["finished"], first["total"]) == ("RUNNING", False, 0, 21)

    headers[3] = node("3", state=TaskState.SUCCEEDED, task_id="t3")
    second = changes.event(workflow(running, *headers, callback))
    assert second["nodes"] == [["3", "SUCCEEDED", "t3"]]
    assert second["groups"] == {"group-0": [("ACTIVE", 19), ("SUCCEEDED", 1)]}
    assert second["counts"] == [("WAITING", 1), ("ACTIVE", 19), ("SUCCEEDED", 1)]

    headers = [node(str(i), state=TaskState.SUCCEEDED, task_id=f"t{i}") for i in range(20)]
    callback = node("cb", *(str(i) for i in range(20)), results=LIST, state=TaskState.SUCCEEDED, task_id="tcb")
    last = changes.event(workflow(done, *headers, callback))
    assert len(last["nodes"]) == 20 and ["cb", "SUCCEEDED", "tcb"] in last["nodes"] and last["terminal"]
    assert last["groups"] == {"group-0": [("SUCCEEDED", 20)]} and last["finished"] == 21
