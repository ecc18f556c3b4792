"""The scheduler's error tree; each error carries the gRPC status it is reported as."""

from __future__ import annotations

import grpc


class SchedulerError(Exception):
    """Root of every error the scheduler reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(SchedulerError):
    """A request field is malformed or out of range; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(SchedulerError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(SchedulerError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(SchedulerError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(SchedulerError):
    """A concurrent change won a race the caller may simply retry."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(SchedulerError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SchedulerError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(SchedulerError):
    """The call carries no credential, or one the auth file does not know."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SchedulerError):
    """The caller is known but its roles or queues do not cover the call."""

    code = grpc.StatusCode.PERMISSION_DENIED
