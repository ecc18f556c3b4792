"""SubmitWorkflow and the calls by id over real gRPC: bad input is INVALID_ARGUMENT naming the node
and field, an unknown workflow is NOT_FOUND, and a refused workflow leaves nothing in Redis
(no workflow key, no task, no outbox)."""

from __future__ import annotations

import grpc
import pytest
import redis

from conveyor.v1 import task_pb2, workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc

Node = workflow_pb2.WorkflowNode


def node(key: str, *parents: str, name: str = "t.add") -> workflow_pb2.WorkflowNode:
    return Node(key=key, parents=parents, task=task_pb2.TaskSpec(name=name, payload=b'{"args": [1, 1]}'))


def many(count: int) -> list[workflow_pb2.WorkflowNode]:
    return [Node(key=f"n{i}", task=task_pb2.TaskSpec(name="t.add")) for i in range(count)]


@pytest.mark.parametrize(("nodes", "field", "words"), [
    ([node("a", "c"), node("b", "a"), node("c", "b")], "workflow.nodes[0].parents", "a -> b -> c -> a"),
    ([node("a"), node("b", "ghost")], "workflow.nodes[1].parents[0]", "no node has the key 'ghost'"),
    (many(100_001), "workflow.nodes", "got 100,001"),
    ([node("a"), node("b", "a", name="not a name!")], "workflow.nodes[1].task.name", ""),
    ([node("a"), node("a")], "workflow.nodes[1].key", "nodes[0] too"),
])
def test_bad_workflows_are_refused_naming_the_node_and_field_and_nothing_is_stored(
        scheduler: str, redis_url: str, nodes: list[workflow_pb2.WorkflowNode], field: str, words: str) -> None:
    r = redis.Redis.from_url(redis_url)
    before = set(r.keys("*"))
    with grpc.insecure_channel(scheduler, options=[("grpc.max_send_message_length", 256 * 1024 * 1024)]) as ch:
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitWorkflow(workflow_service_pb2.SubmitWorkflowRequest(
                workflow=workflow_pb2.WorkflowSpec(nodes=nodes)), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith(field + ":") and words in details, details
    assert set(r.keys("*")) == before  # no workflow, task, index entry or outbox was written


def test_calls_by_id_name_a_bad_id_and_miss_an_unknown_one(scheduler: str) -> None:
    with grpc.insecure_channel(scheduler) as ch:
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(ch)
        with pytest.raises(grpc.RpcError) as bad:
            stub.GetWorkflow(workflow_service_pb2.GetWorkflowRequest(workflow_id="nope"), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (bad.value.details() or "").startswith("workflow_id:")
        unknown = "wf_" + "0" * 26
        for call, request in ((stub.GetWorkflow, workflow_service_pb2.GetWorkflowRequest),
                              (stub.CancelWorkflow, workflow_service_pb2.CancelWorkflowRequest),
                              (stub.RetryWorkflow, workflow_service_pb2.RetryWorkflowRequest)):
            with pytest.raises(grpc.RpcError) as missing:
                call(request(workflow_id=unknown), timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND, call
        with pytest.raises(grpc.RpcError) as empty:
            stub.SubmitWorkflow(workflow_service_pb2.SubmitWorkflowRequest(), timeout=10)
        assert (empty.value.details() or "").startswith("workflow:")
