"""The SDK's one exception tree; gRPC statuses map onto it in `from_rpc_error`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import grpc


class ConveyorError(Exception):
    """Root of every error the SDK raises."""


class RPCError(ConveyorError):
    """A call to the scheduler failed; `code` is the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgument(RPCError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RPCError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(RPCError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(RPCError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(RPCError):
    code = grpc.StatusCode.ABORTED


class ResourceExhausted(RPCError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(RPCError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RPCError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(RPCError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RPCError):
    code = grpc.StatusCode.PERMISSION_DENIED


_BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, FailedPrecondition, ResourceExhausted,
                                      Unavailable, DeadlineExceeded, Unauthenticated, PermissionDenied,
                                      AlreadyExists, Aborted)}


CLOSED_AT_HANDSHAKE = ("; the server closed the connection, which is how a TLS server that requires client "
                       "certificates refuses one that is missing, expired or from a CA it does not trust (with "
                       "TLS 1.3 the client is not told which; the server's log is), and how a TLS port answers a "
                       "plaintext client")
"""Appended to UNAVAILABLE "Socket closed": gRPC reports nothing more to the client in those cases."""


def from_rpc_error(exc: grpc.RpcError) -> RPCError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE and details and details.endswith("Socket closed"):
        details += CLOSED_AT_HANDSHAKE
    return _BY_CODE.get(code, RPCError)(details or str(code), code)


@contextmanager
def mapped_rpc_errors() -> Iterator[None]:
    """Raises the SDK's RPCError subclass for any grpc.RpcError inside."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


@asynccontextmanager
async def amapped_rpc_errors() -> AsyncIterator[None]:
    """mapped_rpc_errors for async code."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


class ChannelConfigError(ConveyorError, ValueError):
    """A channel cannot be opened as configured (TLS files, token); raised before any call."""


class InsecureTokenError(ChannelConfigError):
    """A token would travel in plaintext to an address that is not loopback: use TLS."""


class TLSConfigError(ChannelConfigError):
    """A TLS setting is incomplete (a client cert without its key) or a file cannot be read."""


class TaskError(ConveyorError):
    """A task ended without a result; raised by TaskHandle.result()."""

    def __init__(self, task_id: str, state: str, message: str) -> None:
        super().__init__(f"task {task_id} ended {state}: {message}" if message else f"task {task_id} ended {state}")
        self.task_id = task_id
        self.state = state


class TaskFailed(TaskError):
    """The task's handler raised (FAILED), or it ran out of retries (DEAD)."""

    def __init__(self, task_id: str, state: str, error_type: str, error_message: str, traceback: str) -> None:
        super().__init__(task_id, state, f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class TaskCancelled(TaskError):
    """The task was cancelled before it finished."""


class TaskExpired(TaskError):
    """The task was not started before its expires_at."""


class WorkflowError(ConveyorError):
    """A workflow ended without a result; raised by WorkflowHandle.result(). Not a TaskError:
    a workflow is not a task, and the node that ended it may never have become one (its
    parents' results too large, say)."""

    def __init__(self, workflow_id: str, state: str, message: str) -> None:
        super().__init__(f"workflow {workflow_id} ended {state}: {message}" if message
                         else f"workflow {workflow_id} ended {state}")
        self.workflow_id = workflow_id
        self.state = state


class WorkflowFailed(WorkflowError):
    """A node failed (FAILED, DEAD, CANCELLED or EXPIRED after its retries): the workflow's first
    with fail-fast, a leaf with on_failure="continue". Names the node, its task and its error."""

    def __init__(self, workflow_id: str, node: str, task_id: str, node_state: str, error_type: str,
                 error_message: str, traceback: str = "") -> None:
        task = f", task {task_id}" if task_id else ""
        error = f": {error_type}: {error_message}" if error_type or error_message else ""
        super().__init__(workflow_id, "FAILED", f"node {node}{task} ended {node_state}{error}")
        self.node = node
        self.task_id = task_id
        self.node_state = node_state
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class WorkflowCancelled(WorkflowError):
    """The workflow was cancelled (CancelWorkflow) before it finished."""


class ResultTimeout(ConveyorError, TimeoutError):
    """The task did not finish within the time the caller was willing to wait."""


class SoftTimeLimitExceeded(ConveyorError):
    """An attempt ran past its soft time limit (sync handlers may raise it themselves)."""


class TimeLimitExceeded(ConveyorError):
    """An attempt ran past its hard time limit (the task's timeout)."""


class Retry(Exception):
    """Raise in a handler to ask for another attempt, optionally after `delay` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay
