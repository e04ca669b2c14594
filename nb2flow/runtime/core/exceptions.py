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


class ValueUnavailable(TaskRunError):
    """A task's input is an :class:`~nb2flow.runtime.futures.Unavailable` marker: an item
    of an upstream result that could not be sent from the process that computed it."""

    def __init__(self, marker: object) -> None:
        describe = getattr(marker, "describe", None)
        what = describe() if describe is not None else repr(marker)
        reason = getattr(marker, "reason", "")
        super().__init__(
            f"input {what} is unavailable: it could not be sent from the process that "
            f"computed it ({reason}); run on threads, or return a value that can be pickled"
        )
        self.marker = marker


class RemoteError(TaskRunError):
    """An error raised in another process whose exception object could not be sent back.

    ``str()`` is the original ``Type: message`` line; ``remote_traceback`` the traceback.
    """

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback
