"""Workflow logic without Redis: SubmitWorkflow's validation (errors name the node and field)
and result passing along edges (workflow_payloads). The scripts and the advance run for real
in tests/integration/test_workflow_store.py and tests/e2e/test_workflows.py."""

from __future__ import annotations

import json

import pytest

from conveyor.v1 import task_pb2, workflow_pb2
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.validation import NewTask
from conveyor_scheduler.workflow_checks import MAX_NODES, check_workflow
from conveyor_scheduler.workflow_payloads import (
    MAX_NODE_PAYLOAD,
    NodeError,
    node_payload,
    outcome_of,
    workflow_result,
)

VALUE, LIST, NONE = (workflow_pb2.PARENT_RESULTS_VALUE, workflow_pb2.PARENT_RESULTS_LIST,
                     workflow_pb2.PARENT_RESULTS_UNSPECIFIED)


def check_task(spec: task_pb2.TaskSpec, at: str) -> NewTask:
    """Stands in for Submit's check: routes to "default", refuses an empty name."""
    if not spec.name:
        raise InvalidArgument(f"{at}.name", "must be 1-200 characters")
    return NewTask(spec.queue or "default", 0, 0, "", 0, [], name=spec.name)


def node(key: str, *parents: str, mode: int = NONE, payload: bytes = b'{"args": [1], "kwargs": {}}',
         name: str = "t.add") -> workflow_pb2.WorkflowNode:
    return workflow_pb2.WorkflowNode(key=key, parents=parents, parent_results=mode,
                                     task=task_pb2.TaskSpec(name=name, payload=payload))


def spec(*nodes: workflow_pb2.WorkflowNode, **kw: object) -> workflow_pb2.WorkflowSpec:
    return workflow_pb2.WorkflowSpec(nodes=nodes, **kw)  # type: ignore[arg-type]


def refused(s: workflow_pb2.WorkflowSpec) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as info:
        check_workflow(s, check_task)
    return info.value.field, str(info.value)


# -- validation ---------------------------------------------------------------------------------


def test_a_chord_is_stored_with_children_leaves_and_routed_queues() -> None:
    nodes = check_workflow(spec(node("h0"), node("h1"), node("cb", "h0", "h1", mode=LIST)), check_task)
    assert [(n.key, n.parents, n.children, n.mode, n.queue) for n in nodes] == [
        ("h0", [], ["cb"], NONE, "default"), ("h1", [], ["cb"], NONE, "default"),
        ("cb", ["h0", "h1"], [], LIST, "default")]
    assert task_pb2.TaskSpec.FromString(nodes[0].spec).queue == "default"  # pinned to its routed queue


@pytest.mark.parametrize(("bad", "field", "words"), [
    (spec(node("a", "c"), node("b", "a"), node("c", "b")), "workflow.nodes[0].parents", "cycle"),
    (spec(node("a"), node("b", "zz")), "workflow.nodes[1].parents[0]", "no node has the key 'zz'"),
    (spec(node("a"), node("a")), "workflow.nodes[1].key", "nodes[0] too"),
    (spec(node("a b")), "workflow.nodes[0].key", "[A-Za-z0-9_.:-]"),
    (spec(node("a"), node("b", "a", name="")), "workflow.nodes[1].task.name", "1-200"),
    (spec(node("a", "a")), "workflow.nodes[0].parents[0]", "its own parent"),
    (spec(node("a"), node("b", "a", "a")), "workflow.nodes[1].parents[1]", "named twice"),
    (spec(node("a"), node("b"), node("c", "a", "b", mode=VALUE)), "workflow.nodes[2].parent_results",
     "exactly one parent"),
    (spec(node("a"), node("b", "a", mode=VALUE, payload=b"[1, 2]")), "workflow.nodes[1].task.payload",
     '{"args"'),
    (spec(node("a"), name="x" * 201), "workflow.name", "200"),
    (spec(), "workflow.nodes", "1 to 100,000"),
])
def test_bad_workflows_are_refused_naming_the_node_and_field(bad: workflow_pb2.WorkflowSpec, field: str,
                                                            words: str) -> None:
    got_field, message = refused(bad)
    assert got_field == field
    assert words in message


def test_a_cycle_is_named_in_its_order() -> None:
    _, message = refused(spec(node("root"), node("a", "root", "c"), node("b", "a"), node("c", "b")))
    assert "a -> b -> c -> a" in message


def test_an_idempotency_key_is_refused_on_a_node() -> None:
    s = spec(node("a"))
    s.nodes[0].task.idempotency_key = "mine"
    assert refused(s)[0] == "workflow.nodes[0].task.idempotency_key"


def test_more_than_the_node_limit_is_refused_before_anything_else() -> None:
    s = workflow_pb2.WorkflowSpec()
    s.nodes.extend(workflow_pb2.WorkflowNode(key=f"n{i}") for i in range(MAX_NODES + 1))
    field, message = refused(s)
    assert field == "workflow.nodes" and "100,001" in message


# -- result passing -----------------------------------------------------------------------------


def test_a_chain_step_gets_its_parents_result_first_and_bytes_stay_as_sent() -> None:
    out = node_payload(b'{"args": [2], "kwargs": {"k": 1}}', VALUE, ["a"], [b"r12345678901234567890.5"], False)
    assert out == b'{"args":[12345678901234567890.5,2],"kwargs":{"k":1}}'
    assert json.loads(out) == {"args": [12345678901234567890.5, 2], "kwargs": {"k": 1}}


def test_a_chord_callback_gets_the_list_in_parent_order() -> None:
    out = node_payload(b"", LIST, ["h0", "h1", "h2"], [b"r1", b'r"two"', b"r[3]"], False)
    assert json.loads(out) == {"args": [[1, "two", [3]]], "kwargs": {}}
    assert json.loads(node_payload(b"", LIST, [], [], False)) == {"args": [[]], "kwargs": {}}


def test_an_immutable_node_keeps_its_payload() -> None:
    assert node_payload(b'{"args": [7]}', NONE, ["a"], [b"r1"], False) == b'{"args": [7]}'


def test_continue_wraps_each_outcome_so_a_callback_sees_results_and_errors() -> None:
    failed = outcome_of(task_pb2.TASK_STATE_DEAD, b"", "", "ValueError", "bad input")
    cancelled = outcome_of(task_pb2.TASK_STATE_CANCELLED, b"", "", "", "")
    out = json.loads(node_payload(b"", LIST, ["h0", "h1", "h2"], [b"r5", failed, cancelled], True))
    assert out["args"][0] == [
        {"result": 5},
        {"error": {"node": "h1", "type": "ValueError", "message": "bad input", "state": "DEAD"}},
        {"error": {"node": "h2", "type": "TaskCancelled", "message": "the task was cancelled",
                   "state": "CANCELLED"}}]


def test_a_result_that_is_not_json_cannot_be_passed_on() -> None:
    binary = outcome_of(task_pb2.TASK_STATE_SUCCEEDED, b"\x00\x01", "application/octet-stream", "", "")
    with pytest.raises(NodeError) as info:
        node_payload(b"", VALUE, ["a"], [binary], False)
    assert info.value.type == "ParentResultNotJSON"


def test_results_past_the_node_payload_limit_fail_the_node() -> None:
    big = b"r" + b'"' + b"x" * (MAX_NODE_PAYLOAD // 2) + b'"'
    with pytest.raises(NodeError) as info:
        node_payload(b"", LIST, ["a", "b", "c"], [big, big, big], False)
    assert info.value.type == "ParentResultsTooLarge"


def test_a_workflow_result_is_its_leaf_or_the_list_of_its_leaves() -> None:
    assert workflow_result(["z"], [b'r{"sum": 3}']) == b'{"sum": 3}'
    assert json.loads(workflow_result(["a", "b"], [b"r1", b"r2"])) == [1, 2]
