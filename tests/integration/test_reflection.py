"""Server reflection over real gRPC, as grpc.reflection.v1 and as grpc.reflection.v1alpha."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

RPC_TIMEOUT = 30.0
CONVEYOR = {"conveyor.v1.TaskService", "conveyor.v1.WorkerService", "conveyor.v1.AdminService",
            "conveyor.v1.ScheduleService", "conveyor.v1.WorkflowService"}
EXPECTED = CONVEYOR | {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                       "grpc.reflection.v1alpha.ServerReflection"}


@pytest.fixture
def channel(scheduler: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(scheduler) as ch:
        yield ch


def _string_field(number: int, text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128  # one-byte length
    return bytes([number << 3 | 2, len(data)]) + data


def ask_v1(channel: grpc.Channel, *requests: bytes) -> list[reflection_pb2.ServerReflectionResponse]:
    """Calls grpc.reflection.v1 with requests encoded by hand from the v1 proto's field numbers
    (file_containing_symbol = 4, list_services = 7), so nothing of the server's is reused; the
    answers are read with the v1alpha classes, whose messages v1 copies field for field."""
    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=None, response_deserializer=None)
    return [reflection_pb2.ServerReflectionResponse.FromString(raw)
            for raw in call(iter(requests), timeout=RPC_TIMEOUT)]


def test_v1_lists_services_and_describes_them(channel: grpc.Channel) -> None:
    listed, task_file, itself = ask_v1(channel, _string_field(7, ""),
                                       _string_field(4, "conveyor.v1.TaskService"),
                                       _string_field(4, "grpc.reflection.v1.ServerReflection"))
    assert {s.name for s in listed.list_services_response.service} == EXPECTED

    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in task_file.file_descriptor_response.file_descriptor_proto]
    by_name = {f.name: f for f in files}
    assert {"conveyor/v1/task_service.proto", "conveyor/v1/task.proto",
            "google/protobuf/duration.proto"} <= by_name.keys()  # with its dependencies
    methods = {m.name for m in by_name["conveyor/v1/task_service.proto"].service[0].method}
    assert {"Submit", "Poll", "Ack", "ExtendLease", "GetResult", "GetResults", "Cancel", "Pipeline"} <= methods

    (own,) = [descriptor_pb2.FileDescriptorProto.FromString(b)
              for b in itself.file_descriptor_response.file_descriptor_proto]
    assert own.package == "grpc.reflection.v1"
    (method,) = own.service[0].method
    assert (method.name, method.input_type, method.client_streaming, method.server_streaming) == (
        "ServerReflectionInfo", ".grpc.reflection.v1.ServerReflectionRequest", True, True)


def test_v1_reports_an_unknown_symbol_as_not_found(channel: grpc.Channel) -> None:
    (answer,) = ask_v1(channel, _string_field(4, "conveyor.v1.NoSuchService"))
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_v1alpha_with_grpcio_reflection_client(channel: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    assert set(db.get_services()) == EXPECTED
    file = db.FindFileContainingSymbol("conveyor.v1.ScheduleService")
    assert file.name == "conveyor/v1/schedule_service.proto"
    assert file.service[0].name == "ScheduleService"
