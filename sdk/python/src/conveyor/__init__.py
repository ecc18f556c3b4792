"""Conveyor Python SDK: submit tasks to a Conveyor scheduler and define them with `@app.task`."""

from conveyor.admin import DeadLetters, WorkerInfo
from conveyor.admin_queues import QueueHistory, QueueInfo, QueueWindow
from conveyor.admin_tasks import BulkResult, TaskPage
from conveyor.aio import AsyncClient, AsyncTaskHandle
from conveyor.app import App, Task
from conveyor.canvas import Canvas, Signature, chain, chord, group, signature
from conveyor.channels import TLSConfig
from conveyor.client import Client, TaskHandle
from conveyor.common import Call, TaskEvent, TaskState
from conveyor.context import TaskContext, current_task
from conveyor.errors import (
    AlreadyExists,
    ChannelConfigError,
    ConveyorError,
    FailedPrecondition,
    InsecureTokenError,
    InvalidArgument,
    NotFound,
    ResultTimeout,
    Retry,
    RPCError,
    SoftTimeLimitExceeded,
    TaskCancelled,
    TaskError,
    TaskExpired,
    TaskFailed,
    TimeLimitExceeded,
    TLSConfigError,
    Unavailable,
    WorkflowCancelled,
    WorkflowError,
    WorkflowFailed,
)
from conveyor.options import SubmitOptions
from conveyor.schedules import Schedule
from conveyor.workflow_snapshots import NodeSnapshot, WorkflowSnapshot, WorkflowState
from conveyor.workflows import AsyncWorkflowHandle, WorkflowHandle

__version__ = "0.1.0"
__all__ = [
    "AlreadyExists", "App", "AsyncClient", "AsyncTaskHandle", "AsyncWorkflowHandle", "BulkResult", "Call", "Canvas",
    "ChannelConfigError", "Client", "ConveyorError", "DeadLetters", "FailedPrecondition", "InsecureTokenError",
    "InvalidArgument", "NodeSnapshot", "NotFound", "QueueHistory", "QueueInfo", "QueueWindow", "RPCError",
    "ResultTimeout", "Retry", "Schedule", "Signature", "SoftTimeLimitExceeded", "SubmitOptions", "TLSConfig",
    "TLSConfigError", "Task", "TaskCancelled", "TaskContext", "TaskError", "TaskEvent", "TaskExpired", "TaskFailed",
    "TaskHandle", "TaskPage", "TaskState", "TimeLimitExceeded", "Unavailable", "WorkerInfo", "WorkflowCancelled",
    "WorkflowError", "WorkflowFailed", "WorkflowHandle", "WorkflowSnapshot", "WorkflowState", "__version__", "chain",
    "chord", "current_task", "group", "signature",
]
