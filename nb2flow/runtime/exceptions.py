"""Exceptions the runtime raises into user code (flows, ``future.result()``)."""

from __future__ import annotations


class TaskRunError(Exception):
    """A task run did not produce a value (base class)."""


class UpstreamFailed(TaskRunError):
    """The task did not run (NotRun) because a task it waits for did not complete."""


class TaskCancelled(TaskRunError):
    """The task run was cancelled (Ctrl-C, or its flow ended first)."""


class TaskTimeout(TaskRunError, TimeoutError):
    """An attempt of a task ran longer than its ``timeout_seconds``."""


class FlowTimeout(TimeoutError):
    """The flow body ran longer than the flow's ``timeout_seconds``."""


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a flow started by ``run_cli``: the run is cancelled as on Ctrl-C."""


class RemoteError(TaskRunError):
    """An error raised in another process whose exception object could not be sent back.

    ``str()`` is the original ``Type: message`` line; ``remote_traceback`` the traceback.
    """

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback
