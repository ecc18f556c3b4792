"""The canvas compiler (conveyor.workflow_graph): every shape and nesting, node by node.

Each test states the exact nodes a canvas becomes: key, task, parents (in order) and what
the node receives (ParentResults), which is the whole of what the scheduler is told.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor import App, Call, Signature, SubmitOptions, chain, chord, group, signature
from conveyor.common import submit_request
from conveyor.v1 import workflow_pb2 as wf
from conveyor.workflow_graph import MAX_NAME, compile_workflow, describe, workflow_spec

NONE, VALUE, LIST = "none", "value", "list"
_RECEIVES = {wf.PARENT_RESULTS_UNSPECIFIED: NONE, wf.PARENT_RESULTS_VALUE: VALUE, wf.PARENT_RESULTS_LIST: LIST}

app = App("graph")


@app.task(name="a")
def a(*args: Any) -> Any: ...


@app.task(name="b")
def b(*args: Any) -> Any: ...


@app.task(name="c")
def c(*args: Any) -> Any: ...


@app.task(name="d")
def d(*args: Any) -> Any: ...


@app.task(name="cb", queue="callbacks", priority=7, max_retries=3, retry_backoff=2)
def cb(*args: Any) -> Any: ...


Node = tuple[str, str, list[str], str]


def nodes(canvas: Any, **kw: Any) -> list[Node]:
    """(key, task name, parents, receives) of each node, in order."""
    spec = compile_workflow(canvas, **kw)
    return [(n.key, n.task.name, list(n.parents), _RECEIVES[n.parent_results]) for n in spec.nodes]


def args_of(spec: wf.WorkflowSpec) -> list[list[Any]]:
    return [json.loads(n.task.payload)["args"] for n in spec.nodes]


def leaves(spec: wf.WorkflowSpec) -> list[str]:
    """What the scheduler makes the workflow's result of: nodes nobody names, in node order."""
    named = {p for n in spec.nodes for p in n.parents}
    return [n.key for n in spec.nodes if n.key not in named]


# --- chains ---------------------------------------------------------------------------------

def test_pipe_of_two_signatures_passes_the_value() -> None:
    spec = compile_workflow(a.s(1) | b.s())
    assert nodes(a.s(1) | b.s()) == [("0", "a", [], NONE), ("1", "b", ["0"], VALUE)]
    assert args_of(spec) == [[1], []]  # the scheduler puts a's result first in b's args
    assert leaves(spec) == ["1"]


def test_chain_function_is_the_same_as_the_pipe() -> None:
    assert compile_workflow(chain(a.s(1), b.s(), c.s(2))) == compile_workflow(a.s(1) | b.s() | c.s(2))


def test_chain_of_three() -> None:
    assert nodes(chain(a.s(1), b.s(), c.s())) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], VALUE), ("2", "c", ["1"], VALUE)]


def test_chains_are_flattened_however_they_are_built() -> None:
    left = (a.s() | b.s()) | (c.s() | d.s())
    assert isinstance(left, chain) and len(left.tasks) == 4
    assert left == chain(a.s(), b.s(), c.s(), d.s()) == chain([a.s(), b.s(), c.s(), d.s()])
    assert nodes(left)[-1] == ("3", "d", ["2"], VALUE)


def test_immutable_step_waits_but_gets_nothing() -> None:
    assert nodes(a.s(1) | b.si(2) | c.s()) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], NONE), ("2", "c", ["1"], VALUE)]
    spec = compile_workflow(a.s(1) | b.si(2) | c.s())
    assert args_of(spec) == [[1], [2], []]


def test_first_step_gets_nothing_even_when_mutable() -> None:
    assert nodes(chain(a.s(1))) == [("0", "a", [], NONE)]
    assert nodes(a.s(1)) == [("0", "a", [], NONE)]  # one signature: a one-node workflow


def test_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="empty chain"):
        compile_workflow(chain())
    with pytest.raises(ValueError, match="empty chain"):
        compile_workflow(group(a.s(), chain()))


# --- groups ---------------------------------------------------------------------------------

def test_group_of_a_hundred_from_a_generator() -> None:
    spec = compile_workflow(group(a.s(i) for i in range(100)))
    assert nodes(group(a.s(i) for i in range(100))) == [(str(i), "a", [], NONE) for i in range(100)]
    assert args_of(spec) == [[i] for i in range(100)]
    assert leaves(spec) == [str(i) for i in range(100)]  # the result: their list, in group order


def test_group_takes_tasks_or_one_iterable() -> None:
    assert group(a.s(), b.s()) == group([a.s(), b.s()]) == group(s for s in [a.s(), b.s()])
    assert len(group(a.s(), b.s())) == 2


def test_group_after_a_task_gives_each_member_its_value() -> None:
    assert nodes(a.s() | group(b.s(), c.s())) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], VALUE), ("2", "c", ["0"], VALUE)]
    assert leaves(compile_workflow(a.s() | group(b.s(), c.s()))) == ["1", "2"]


def test_groups_inside_groups_are_flattened() -> None:
    assert group(group(a.s(), b.s()), c.s()) == group(a.s(), b.s(), c.s())
    assert nodes(group(group(a.s(), b.s()), c.s()) | d.s())[-1] == ("3", "d", ["0", "1", "2"], LIST)


def test_group_of_chains() -> None:
    canvas = group(a.s(1) | b.s(), c.s(2) | d.s())
    assert nodes(canvas) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], VALUE), ("2", "c", [], NONE), ("3", "d", ["2"], VALUE)]
    assert leaves(compile_workflow(canvas)) == ["1", "3"]


def test_group_of_chains_then_a_callback_gets_each_chains_end() -> None:
    assert nodes(group(a.s() | b.s(), c.s() | d.s()) | cb.s())[-1] == ("4", "cb", ["1", "3"], LIST)


def test_group_member_ending_in_a_group_adds_its_ends_flat() -> None:
    canvas = group(a.s() | group(b.s(), c.s()), d.s()) | cb.s()
    assert nodes(canvas) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], VALUE), ("2", "c", ["0"], VALUE), ("3", "d", [], NONE),
        ("4", "cb", ["1", "2", "3"], LIST)]


def test_chain_of_groups_gives_every_second_group_node_the_first_groups_list() -> None:
    canvas = chain(group(a.s(1), b.s(2)), group(c.s(), d.s()))
    assert nodes(canvas) == [
        ("0", "a", [], NONE), ("1", "b", [], NONE), ("2", "c", ["0", "1"], LIST), ("3", "d", ["0", "1"], LIST)]
    assert leaves(compile_workflow(canvas)) == ["2", "3"]


def test_group_piped_into_a_group_is_a_chain_not_a_chord() -> None:
    canvas = group(a.s(), b.s()) | group(c.s(), d.s())
    assert isinstance(canvas, chain)
    assert compile_workflow(canvas) == compile_workflow(chain(group(a.s(), b.s()), group(c.s(), d.s())))


def test_chain_of_three_groups() -> None:
    canvas = chain(group(a.s(), b.s()), group(c.s(), d.s()), group(cb.s()))
    assert nodes(canvas)[4] == ("4", "cb", ["2", "3"], LIST)


def test_group_of_one_still_passes_a_list() -> None:
    assert nodes(group(a.s()) | b.s()) == [("0", "a", [], NONE), ("1", "b", ["0"], LIST)]


def test_empty_group_first_passes_an_empty_list() -> None:
    # The contract: a node with no parents and PARENT_RESULTS_LIST gets []; Celery calls a chord's
    # body with [] when its header is empty.
    assert nodes(chain(group(), b.s())) == [("0", "b", [], LIST)]
    assert nodes(chord([], cb.s())) == [("0", "cb", [], LIST)]
    assert nodes(group([]) | b.s()) == [("0", "b", [], LIST)]


def test_empty_group_after_a_step_is_refused() -> None:
    with pytest.raises(ValueError, match="empty group can only come first"):
        compile_workflow(chain(a.s(), group(), b.s()))


def test_empty_workflow_is_refused() -> None:
    with pytest.raises(ValueError, match="no task to run"):
        compile_workflow(group())


# --- chords ---------------------------------------------------------------------------------

def test_chord_callback_gets_the_headers_in_header_order() -> None:
    canvas = chord([a.s(i) for i in range(10)], cb.s())
    assert nodes(canvas) == [(str(i), "a", [], NONE) for i in range(10)] + [
        ("10", "cb", [str(i) for i in range(10)], LIST)]
    assert leaves(compile_workflow(canvas)) == ["10"]


def test_group_piped_into_a_task_is_a_chord() -> None:
    canvas = group(a.s(1), b.s(2)) | cb.s()
    assert isinstance(canvas, chord)
    assert canvas == chord(group(a.s(1), b.s(2)), cb.s())
    assert nodes(canvas) == [("0", "a", [], NONE), ("1", "b", [], NONE), ("2", "cb", ["0", "1"], LIST)]


def test_chord_header_forms() -> None:
    header = [a.s(1), b.s(2)]
    assert chord(header, cb.s()) == chord(group(header), cb.s()) == chord(iter(header), cb.s())
    assert nodes(chord(a.s(), cb.s())) == [("0", "a", [], NONE), ("1", "cb", ["0"], LIST)]  # a lone header task


def test_chord_with_an_immutable_callback_waits_for_the_header_and_gets_nothing() -> None:
    assert nodes(group(a.s(), b.s()) | cb.si("done")) == [
        ("0", "a", [], NONE), ("1", "b", [], NONE), ("2", "cb", ["0", "1"], NONE)]


def test_chord_inside_a_chain() -> None:
    canvas = chain(a.s(1), chord([b.s(), c.s()], cb.s()), d.s())
    assert nodes(canvas) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], VALUE), ("2", "c", ["0"], VALUE), ("3", "cb", ["1", "2"], LIST),
        ("4", "d", ["3"], VALUE)]


def test_chord_then_a_task_passes_the_callbacks_value() -> None:
    assert nodes((group(a.s(), b.s()) | cb.s()) | d.s())[-1] == ("3", "d", ["2"], VALUE)


def test_chain_inside_a_chord_header() -> None:
    canvas = chord([a.s(1) | b.s(), c.s(2)], cb.s())
    assert nodes(canvas) == [
        ("0", "a", [], NONE), ("1", "b", ["0"], VALUE), ("2", "c", [], NONE), ("3", "cb", ["1", "2"], LIST)]


def test_chord_whose_body_is_a_chain() -> None:
    assert nodes(chord([a.s(), b.s()], cb.s() | d.s())) == [
        ("0", "a", [], NONE), ("1", "b", [], NONE), ("2", "cb", ["0", "1"], LIST), ("3", "d", ["2"], VALUE)]


def test_chord_whose_body_is_a_group() -> None:
    assert nodes(chord([a.s(), b.s()], group(c.s(), d.s()))) == [
        ("0", "a", [], NONE), ("1", "b", [], NONE), ("2", "c", ["0", "1"], LIST), ("3", "d", ["0", "1"], LIST)]


def test_chord_of_chords() -> None:
    inner = [chord([a.s(i), b.s(i)], c.s()) for i in range(2)]
    assert nodes(chord(inner, cb.s())) == [
        ("0", "a", [], NONE), ("1", "b", [], NONE), ("2", "c", ["0", "1"], LIST),
        ("3", "a", [], NONE), ("4", "b", [], NONE), ("5", "c", ["3", "4"], LIST),
        ("6", "cb", ["2", "5"], LIST)]


def test_deep_nesting() -> None:
    canvas = a.s() | group(b.s() | group(c.s(), d.s()) | cb.s(), c.si()) | d.s()
    assert nodes(canvas) == [
        ("0", "a", [], NONE),
        ("1", "b", ["0"], VALUE), ("2", "c", ["1"], VALUE), ("3", "d", ["1"], VALUE), ("4", "cb", ["2", "3"], LIST),
        ("5", "c", ["0"], NONE),
        ("6", "d", ["4", "5"], LIST)]


def test_chord_without_a_callback_cannot_be_compiled() -> None:
    with pytest.raises(ValueError, match="chord needs its callback"):
        compile_workflow(chord([a.s(), b.s()]))


class Recorder:
    """Stands in for a Client: keeps what submit_workflow was given."""

    def __init__(self) -> None:
        self.specs: list[wf.WorkflowSpec] = []

    def submit_workflow(self, workflow: Any, *, on_failure: str | None = None, name: str | None = None) -> str:
        self.specs.append(workflow_spec(workflow, on_failure, name))
        return "handle"


def test_chord_header_then_body_call_submits_it_as_celery_does() -> None:
    client = Recorder()
    assert chord([a.s(1), b.s(2)])(cb.s(), client=client) == "handle"  # type: ignore[arg-type,comparison-overlap]
    (spec,) = client.specs
    assert [(n.key, list(n.parents), _RECEIVES[n.parent_results]) for n in spec.nodes] == [
        ("0", [], NONE), ("1", [], NONE), ("2", ["0", "1"], LIST)]
    assert spec == compile_workflow(chord([a.s(1), b.s(2)], cb.s()))


def test_calling_a_chain_or_group_submits_it() -> None:
    client = Recorder()
    (a.s() | b.s())(client=client, on_failure="continue")  # type: ignore[arg-type]  # a stand-in client
    group(a.s(), b.s())(client=client, name="two")  # type: ignore[arg-type]
    assert [len(s.nodes) for s in client.specs] == [2, 2]
    assert client.specs[0].on_failure == wf.FAILURE_POLICY_CONTINUE and client.specs[1].name == "two"


# --- the nodes' tasks, options and the spec -------------------------------------------------------

def test_a_nodes_task_is_built_as_call_spec_builds_a_task() -> None:
    spec = compile_workflow(a.s(1, x=2) | cb.s(3))
    first, second = spec.nodes
    assert json.loads(first.task.payload) == {"args": [1], "kwargs": {"x": 2}}
    assert second.task.queue == "callbacks" and second.task.priority == 7
    assert second.task.retry.max_retries == 3 and second.task.retry.initial_backoff.seconds == 2
    expected = cb.s(3).spec()
    expected.push_result = False  # ignored for a node; cleared so the spec says so
    assert second.task == expected
    assert not first.task.push_result and not first.task.idempotency_key


def test_signature_options_can_be_changed_with_set() -> None:
    sig = a.s(1).set(queue="fast", priority=3)
    spec = compile_workflow(sig | b.s().set(immutable=True))
    assert (spec.nodes[0].task.queue, spec.nodes[0].task.priority) == ("fast", 3)
    assert spec.nodes[1].parent_results == wf.PARENT_RESULTS_UNSPECIFIED
    assert a.s(1).options.queue is None  # set made a copy


def test_a_nodes_idempotency_key_is_refused() -> None:
    with pytest.raises(ValueError, match=r"node 1 \(b\): a workflow's task takes no idempotency_key"):
        compile_workflow(a.s() | b.s().set(idempotency_key="k"))


def test_plain_calls_and_signatures_by_name_are_canvas_steps() -> None:
    by_name = signature("a", [1]) | Call("b", (), {}, SubmitOptions(queue="q"))
    assert nodes(by_name) == [("0", "a", [], NONE), ("1", "b", ["0"], VALUE)]
    assert compile_workflow(Call("a", [1]) | b.s()) == compile_workflow(a.s(1) | b.s())  # Call on the left
    assert compile_workflow(chain(Call("a", [1]), Call("b"))).nodes[1].parent_results == wf.PARENT_RESULTS_VALUE
    assert signature("x", immutable=True, queue="q") == Signature("x", (), {}, SubmitOptions(queue="q"), True)


def test_a_canvas_refuses_what_is_not_a_step() -> None:
    with pytest.raises(TypeError, match="a canvas is made of signatures"):
        chain(a.s(), "b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        a.s() | 3  # type: ignore[operator]


def test_signatures_still_go_to_submit_many_as_calls() -> None:
    sig = a.s(1, k="v")
    assert isinstance(sig, Call)
    assert submit_request([sig]) == submit_request([Call("a", (1,), {"k": "v"})])
    assert a.si(1).spec() == a.s(1).spec()  # immutable means nothing outside a canvas


def test_failure_policy() -> None:
    assert compile_workflow(a.s()).on_failure == wf.FAILURE_POLICY_UNSPECIFIED
    assert compile_workflow(a.s(), on_failure="continue").on_failure == wf.FAILURE_POLICY_CONTINUE
    assert compile_workflow(a.s(), on_failure="fail-fast").on_failure == wf.FAILURE_POLICY_UNSPECIFIED
    with pytest.raises(ValueError, match="on_failure must be"):
        compile_workflow(a.s(), on_failure="ignore")


def test_name_defaults_to_the_canvas_in_a_line() -> None:
    assert compile_workflow(a.s(1) | b.s()).name == "a | b"
    assert compile_workflow(a.s(), name="nightly").name == "nightly"
    assert describe(a.s() | group(b.s(i) for i in range(40)) | cb.s()) == "a | group(b, b, ... 40 tasks) | cb"
    assert describe(chain(a.s(), group(b.s(), c.s()) | cb.s())) == "a | chord(group(b, c), cb)"
    long = chain(signature("x" * 50) for _ in range(10))
    assert len(describe(long)) == MAX_NAME and describe(long).endswith("…")


def test_keys_are_deterministic_and_unique() -> None:
    canvas = group(chord([a.s(i) for i in range(3)], cb.s()) | d.s() for _ in range(5))
    first, second = compile_workflow(canvas), compile_workflow(canvas)
    assert first == second
    keys = [n.key for n in first.nodes]
    assert keys == [str(i) for i in range(len(keys))] == sorted(set(keys), key=int)


def test_a_given_spec_is_sent_as_it_is_unless_told_otherwise() -> None:
    spec = compile_workflow(a.s() | b.s(), name="mine")
    assert workflow_spec(spec, None, None) == spec
    changed = workflow_spec(spec, "continue", "other")
    assert (changed.on_failure, changed.name) == (wf.FAILURE_POLICY_CONTINUE, "other")
    assert spec.name == "mine"  # a copy was changed
    with pytest.raises(ValueError, match="on_failure must be"):
        workflow_spec(spec, "sometimes", None)
