"""Passing results along a workflow's edges (pure): a node's outcome as stored in its workflow,
a released node's payload with its parents' results as args[0], and a finished workflow's
result. JSON results are spliced in as the bytes the worker sent, never decoded and encoded
again (a float or a big integer stays exactly as it was)."""

from __future__ import annotations

import json

from conveyor.v1 import task_pb2, workflow_pb2
from conveyor_scheduler.validation import JSON_TYPE

MAX_NODE_PAYLOAD = 64 * 1024 * 1024
"""A node's payload with its parents' results in it (workflow.proto's ParentResults)."""
STATE_NAMES = {v.number: v.name.removeprefix("TASK_STATE_") for v in task_pb2.TaskState.DESCRIPTOR.values}


class NodeError(Exception):
    """A node that cannot be submitted (its parents' results cannot be passed, or the submit path
    refuses it): it fails with `type` without running."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


def outcome_of(state: int, result: bytes, result_type: str, error_type: str, error_message: str) -> bytes:
    """A finished node's outcome as its workflow keeps it (wf_lib.lua's NR hash)."""
    if state == task_pb2.TASK_STATE_SUCCEEDED:
        return (b"r" if result_type in ("", JSON_TYPE) else b"b") + result
    if state == task_pb2.TASK_STATE_CANCELLED:
        error_type, error_message = "TaskCancelled", error_message or "the task was cancelled"
    elif state == task_pb2.TASK_STATE_EXPIRED:
        error_type, error_message = "TaskExpired", "the task was not started before it expired"
    return b"e" + json.dumps({"type": error_type or "Error", "message": error_message,
                              "state": STATE_NAMES.get(state, str(state))}).encode()


def error_json(raw: bytes | None) -> dict[str, str]:
    """A failed node's error as stored (an outcome without its "e"; {} when absent)."""
    data = json.loads(raw) if raw else {}
    return data if isinstance(data, dict) else {}


def node_payload(payload: bytes, mode: int, parents: list[str], outcomes: list[bytes | None],
                 continue_on_failure: bool) -> bytes:
    """The payload a released node is submitted with."""
    if mode == workflow_pb2.PARENT_RESULTS_UNSPECIFIED:
        return payload
    values = [_passed(parent, outcome, continue_on_failure) for parent, outcome in zip(parents, outcomes,
                                                                                        strict=True)]
    value = values[0] if mode == workflow_pb2.PARENT_RESULTS_VALUE else b"[" + b",".join(values) + b"]"
    data = json.loads(payload) if payload else {}
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    rest = json.dumps(args, separators=(",", ":")).encode()[1:-1]
    out = (b'{"args":[' + value + (b"," + rest if rest else b"") + b'],"kwargs":'
           + json.dumps(kwargs, separators=(",", ":")).encode() + b"}")
    if len(out) > MAX_NODE_PAYLOAD:
        raise NodeError("ParentResultsTooLarge", f"the payload with the parents' results would be "
                                 f"{len(out):,} bytes, over the limit of {MAX_NODE_PAYLOAD:,}")
    return out


def _passed(parent: str, outcome: bytes | None, continue_on_failure: bool) -> bytes:
    """What one parent's outcome becomes in its child's args."""
    kind, body = (outcome or b"e{}")[:1], (outcome or b"e{}")[1:]
    if kind == b"r" and body:
        return b'{"result":' + body + b"}" if continue_on_failure else body
    if kind == b"b" or (kind == b"r" and not body):
        if not continue_on_failure:
            raise NodeError("ParentResultNotJSON", f"the result of node {parent!r} is not JSON, so it "
                                     "cannot be passed on")
        error = {"type": "ParentResultNotJSON", "message": "the result is not JSON", "state": "SUCCEEDED"}
    else:
        error = json.loads(body) if body else {}
    return json.dumps({"error": {"node": parent, **error}}, separators=(",", ":")).encode()


def workflow_result(leaves: list[str], outcomes: list[bytes | None]) -> bytes:
    """A succeeded workflow's result: its one leaf's, or the JSON list of its leaves' results."""
    if len(leaves) == 1:
        return (outcomes[0] or b"r")[1:]
    return b"[" + b",".join((o or b"rnull")[1:] or b"null" for o in outcomes) + b"]"
