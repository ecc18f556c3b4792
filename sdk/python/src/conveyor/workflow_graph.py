"""Compiles a canvas into the contract's WorkflowSpec (pure: no I/O).

Each part of the canvas is added after a `Flow`, what comes before it: the nodes it waits for
and how their results reach it. A task after one task gets that task's result
(PARENT_RESULTS_VALUE); after a group, the list of the group's results in the group's order
(PARENT_RESULTS_LIST, parents in that order); first in the workflow, or immutable (`.si()`),
nothing (PARENT_RESULTS_UNSPECIFIED) though it still waits. Every member of a group is added
after the same Flow, and the group's own Flow is its members' ends, in order: so a chord is a
group followed by its body, a group after a group gives every second-group node all the first
group's nodes as parents, and a group member that ends in a group adds its ends flat (a LIST
is flat in the contract).

Keys are "0", "1", ... in canvas order (depth first), so the leaves come in the order of the
canvas' results and the workflow's result list (leaves in node order) is the canvas' own.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.canvas import Canvas, Signature, as_canvas, chain, chord, group
from conveyor.common import Call
from conveyor.options import build_spec
from conveyor.v1 import task_pb2
from conveyor.v1 import workflow_pb2 as wf

NONE, VALUE, LIST = wf.PARENT_RESULTS_UNSPECIFIED, wf.PARENT_RESULTS_VALUE, wf.PARENT_RESULTS_LIST
FAILURE_POLICIES = {"fail_fast": wf.FAILURE_POLICY_UNSPECIFIED, "fail-fast": wf.FAILURE_POLICY_UNSPECIFIED,
                    "continue": wf.FAILURE_POLICY_CONTINUE}
MAX_NAME = 200
"""WorkflowSpec.name's limit (characters)."""


@dataclass(frozen=True, slots=True)
class Flow:
    """What the next part of a canvas is added after: the nodes it waits for, and what it
    receives from them (NONE, VALUE or LIST)."""

    parents: tuple[str, ...]
    results: wf.ParentResults.ValueType


START = Flow((), NONE)
Workflow = Canvas | Call | wf.WorkflowSpec
"""What submit_workflow takes: a canvas (compiled here) or a WorkflowSpec, sent as it is."""


def compile_workflow(canvas: Canvas | Call, *, on_failure: str = "fail_fast",
                     name: str | None = None) -> wf.WorkflowSpec:
    """The WorkflowSpec of `canvas`; `name` defaults to a short description of it. Raises
    ValueError for a canvas the contract cannot express (see _add)."""
    if on_failure not in FAILURE_POLICIES:
        raise ValueError(f"on_failure must be 'fail_fast' or 'continue', got {on_failure!r}")
    top = as_canvas(canvas)
    nodes: list[wf.WorkflowNode] = []
    _add(top, START, nodes)
    if not nodes:
        raise ValueError("the workflow has no task to run (an empty group or chain)")
    return wf.WorkflowSpec(nodes=nodes, on_failure=FAILURE_POLICIES[on_failure],
                           name=describe(top) if name is None else name)


def workflow_spec(workflow: Workflow, on_failure: str | None, name: str | None) -> wf.WorkflowSpec:
    """The spec to send: a given spec with `on_failure` and `name` applied when given, or the canvas compiled."""
    if not isinstance(workflow, wf.WorkflowSpec):
        return compile_workflow(workflow, on_failure=on_failure or "fail_fast", name=name)
    spec = wf.WorkflowSpec()
    spec.CopyFrom(workflow)
    if on_failure is not None:
        if on_failure not in FAILURE_POLICIES:
            raise ValueError(f"on_failure must be 'fail_fast' or 'continue', got {on_failure!r}")
        spec.on_failure = FAILURE_POLICIES[on_failure]
    if name is not None:
        spec.name = name
    return spec


def _add(part: Canvas, after: Flow, nodes: list[wf.WorkflowNode]) -> Flow:
    """Appends the nodes of `part`, run after `after`; returns the Flow of what follows it."""
    if isinstance(part, Signature):
        key = str(len(nodes))
        nodes.append(wf.WorkflowNode(key=key, task=_task(part, key), parents=after.parents,
                                     parent_results=NONE if part.immutable else after.results))
        return Flow((key,), VALUE)
    if isinstance(part, chain):
        if not part.tasks:
            raise ValueError("an empty chain has nothing to run")
        for step in part.tasks:
            after = _add(step, after, nodes)
        return after
    if isinstance(part, group):
        if not part.tasks:
            if after.parents:  # it would have to wait for them and pass on [], which no node can say
                raise ValueError("an empty group can only come first (what follows it then gets [])")
            return Flow((), LIST)
        ends: list[str] = []
        for member in part.tasks:
            ends += _add(member, after, nodes).parents
        return Flow(tuple(ends), LIST)
    if isinstance(part, chord):
        if part.body is None:
            raise ValueError("a chord needs its callback: chord(header, callback) or chord(header)(callback)")
        return _add(part.body, _add(part.header, after, nodes), nodes)
    raise TypeError(f"not a canvas: {part!r}")


def _task(sig: Signature, key: str) -> task_pb2.TaskSpec:
    """The node's task, built as `Call.spec()` builds a task's; the scheduler sets its idempotency
    key (and ignores push_result, cleared here so the spec says what happens)."""
    if sig.options.idempotency_key:
        raise ValueError(f"node {key} ({sig.name}): a workflow's task takes no idempotency_key (the "
                         "scheduler gives each node its own)")
    spec = build_spec(sig.name, sig.args, sig.kwargs, sig.options)
    spec.push_result = False
    return spec


def describe(canvas: Canvas, limit: int = MAX_NAME) -> str:
    """The canvas in a line, task names only (arguments may be large or private), cut to `limit`
    characters: "t.fetch | group(t.resize, t.resize, ... 40 tasks) | t.zip"."""
    text = _describe(canvas)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _describe(part: Canvas) -> str:
    if isinstance(part, Signature):
        return part.name
    if isinstance(part, chain):
        return " | ".join(_describe(t) for t in part.tasks)  # nested chains are flattened: no parentheses needed
    if isinstance(part, group):
        shown = [_describe(t) for t in part.tasks[:2 if len(part.tasks) > 3 else 3]]
        more = f", ... {len(part.tasks)} tasks" if len(part.tasks) > 3 else ""
        return f"group({', '.join(shown)}{more})"
    if isinstance(part, chord):
        return f"chord({_describe(part.header)}, {'-' if part.body is None else _describe(part.body)})"
    return repr(part)
