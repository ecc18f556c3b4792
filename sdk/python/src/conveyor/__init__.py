"""Conveyor Python SDK: submit tasks to a Conveyor scheduler and define them with `@app.task`."""

from conveyor.aio import AsyncClient, AsyncTaskHandle
from conveyor.app import App, Task
from conveyor.client import Client, TaskHandle
from conveyor.common import Call, TaskState
from conveyor.errors import (
    ConveyorError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResultTimeout,
    Retry,
    RPCError,
    TaskCancelled,
    TaskError,
    TaskExpired,
    TaskFailed,
    Unavailable,
)
from conveyor.options import SubmitOptions

__version__ = "0.1.0"
__all__ = [
    "App", "AsyncClient", "AsyncTaskHandle", "Call", "Client", "ConveyorError", "FailedPrecondition",
    "InvalidArgument", "NotFound", "RPCError", "ResultTimeout", "Retry", "SubmitOptions", "Task", "TaskCancelled",
    "TaskError", "TaskExpired", "TaskFailed", "TaskHandle", "TaskState", "Unavailable", "__version__",
]
