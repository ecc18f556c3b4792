"""SubmitWorkflow's validation: the graph (keys, parents, no cycle) and each node's task, with
errors naming the node and field ("workflow.nodes[3].parents[0]: ..."). Nothing is stored
unless the whole workflow passes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from conveyor.v1 import task_pb2, workflow_pb2
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.validation import JSON_TYPE, NewTask
from conveyor_scheduler.workflow_store import GraphNode

MAX_NODES = 100_000
MAX_NAME = 200
KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MODES = {v.number for v in workflow_pb2.ParentResults.DESCRIPTOR.values}
POLICIES = {v.number for v in workflow_pb2.FailurePolicy.DESCRIPTOR.values}

CheckTask = Callable[[task_pb2.TaskSpec, str], NewTask]
"""Validates one TaskSpec as Submit does; errors name the given field path."""


def check_workflow(spec: workflow_pb2.WorkflowSpec, check_task: CheckTask) -> list[GraphNode]:
    """The workflow's nodes, validated, in request order, each task's spec pinned to its routed
    queue (so a routing change cannot move a node submitted later)."""
    at = "workflow"
    count = len(spec.nodes)
    if not 1 <= count <= MAX_NODES:
        raise InvalidArgument(f"{at}.nodes", f"must hold 1 to {MAX_NODES:,} nodes, got {count:,}")
    if len(spec.name) > MAX_NAME:
        raise InvalidArgument(f"{at}.name", f"must be at most {MAX_NAME} characters, got {len(spec.name)}")
    if spec.on_failure not in POLICIES:
        raise InvalidArgument(f"{at}.on_failure", f"unknown FailurePolicy {spec.on_failure}")
    index: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if not KEY_RE.fullmatch(node.key):
            raise InvalidArgument(f"{at}.nodes[{i}].key", f"must be 1-64 characters of [A-Za-z0-9_.:-], got "
                                  f"{node.key[:80]!r}")
        if node.key in index:
            raise InvalidArgument(f"{at}.nodes[{i}].key", f"{node.key!r} is the key of nodes[{index[node.key]}] too")
        index[node.key] = i
    children: dict[str, list[str]] = {node.key: [] for node in spec.nodes}
    for i, node in enumerate(spec.nodes):
        here = f"{at}.nodes[{i}]"
        if len(node.parents) > MAX_NODES:
            raise InvalidArgument(f"{here}.parents", f"must name at most {MAX_NODES:,} nodes")
        seen: set[str] = set()
        for j, parent in enumerate(node.parents):
            if parent not in index:
                raise InvalidArgument(f"{here}.parents[{j}]", f"no node has the key {parent!r}")
            if parent == node.key:
                raise InvalidArgument(f"{here}.parents[{j}]", "a node cannot be its own parent")
            if parent in seen:
                raise InvalidArgument(f"{here}.parents[{j}]", f"{parent!r} is named twice")
            seen.add(parent)
            children[parent].append(node.key)
        if node.parent_results not in MODES:
            raise InvalidArgument(f"{here}.parent_results", f"unknown ParentResults {node.parent_results}")
        if node.parent_results == workflow_pb2.PARENT_RESULTS_VALUE and len(node.parents) != 1:
            raise InvalidArgument(f"{here}.parent_results", f"PARENT_RESULTS_VALUE needs exactly one parent, "
                                  f"the node has {len(node.parents)}")
    _check_acyclic(spec, children)
    nodes = []
    for i, node in enumerate(spec.nodes):
        here = f"{at}.nodes[{i}].task"
        if node.task.idempotency_key:
            raise InvalidArgument(f"{here}.idempotency_key", "must be empty in a workflow (the scheduler sets "
                                  "one per node: wf:WORKFLOW_ID:RUN:NODE_KEY)")
        task = check_task(node.task, here)
        if node.parent_results != workflow_pb2.PARENT_RESULTS_UNSPECIFIED:
            _check_takes_results(node.task, here)
        pinned = task_pb2.TaskSpec()
        pinned.CopyFrom(node.task)
        pinned.queue = task.queue
        pinned.push_result = False
        nodes.append(GraphNode(node.key, pinned.SerializeToString(), list(node.parents), children[node.key],
                               node.parent_results, task.queue, pinned.name))
    return nodes


def _check_takes_results(task: task_pb2.TaskSpec, at: str) -> None:
    """A node that receives its parents' results needs a JSON {"args": [...], ...} payload."""
    if task.content_type not in ("", JSON_TYPE):
        raise InvalidArgument(f"{at}.content_type", f"must be {JSON_TYPE} for a node that receives its parents' "
                              f"results, got {task.content_type!r}")
    if not task.payload:
        return
    try:
        data = json.loads(task.payload)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("args", []), list) \
            or not isinstance(data.get("kwargs", {}), dict):
        raise InvalidArgument(f"{at}.payload", 'must be a JSON object {"args": [...], "kwargs": {...}} for a node '
                              "that receives its parents' results")


def _check_acyclic(spec: workflow_pb2.WorkflowSpec, children: dict[str, list[str]]) -> None:
    """Kahn's algorithm: what is never freed of parents lies on (or behind) a cycle."""
    waiting = {node.key: len(node.parents) for node in spec.nodes}
    ready = [key for key, n in waiting.items() if n == 0]
    freed = 0
    while ready:
        key = ready.pop()
        freed += 1
        for child in children[key]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if freed == len(spec.nodes):
        return
    parents = {node.key: list(node.parents) for node in spec.nodes}
    stuck = {key for key, n in waiting.items() if n > 0}
    key = next(k for k in (n.key for n in spec.nodes) if k in stuck)
    path = [key]  # walk up through stuck parents until a node repeats: that loop is a cycle
    while True:
        key = next(p for p in parents[key] if p in stuck)
        if key in path:
            cycle = [*path[path.index(key):], key][::-1]
            break
        path.append(key)
    i = next(i for i, node in enumerate(spec.nodes) if node.key == cycle[0])
    raise InvalidArgument(f"workflow.nodes[{i}].parents", "the graph has a cycle: " + " -> ".join(cycle))
