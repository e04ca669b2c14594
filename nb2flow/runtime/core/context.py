"""The run context: what code running inside a flow body or a task attempt can ask about
its run (``get_run_context()``), and where that run's events go."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from nb2flow.runtime.core.events import RunEvent


class FlowRunHandle(Protocol):
    """What a flow body's context offers the task objects called in it (the engine's
    ``FlowRun``)."""

    def call_task(
        self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any
    ) -> Any: ...

    def submit_task(
        self,
        task: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Iterable[Any] | None,
        map_index: int | None = None,
        key_base: str | None = None,
    ) -> Any: ...

    def next_key(self, name: str) -> str: ...


class RunContext:
    """What code running inside a flow body or a task attempt can ask about its run."""

    __slots__ = (
        "flow_run_id",
        "task_run_id",
        "name",
        "flow_name",
        "sink",
        "log_prints",
        "flow_run",
        "flow_run_name",
        "output",
        "figures",
    )

    def __init__(
        self,
        flow_run_id: str,
        task_run_id: str | None,
        name: str,
        flow_name: str,
        sink: Callable[[RunEvent], None],
        log_prints: bool,
        flow_run: FlowRunHandle | None = None,
        flow_run_name: str = "",
        output: Any = None,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        self.name = name
        self.flow_name = flow_name
        #: where this run's events go (the flow run's publisher, or a buffer/queue)
        self.sink = sink
        self.log_prints = log_prints
        #: the FlowRun, in a flow body only (task attempts see None: tasks called inside a
        #: task are plain function calls)
        self.flow_run = flow_run
        #: the flow run's readable name (``brave-okapi``)
        self.flow_run_name = flow_run_name
        #: where the run's stdout/stderr and logging records go (an
        #: :class:`~nb2flow.runtime.observation.capture.Output`; None: not captured)
        self.output = output
        #: the pyplot figures open when the task attempt started (None: pyplot was not
        #: imported); what a cell boundary inside the task records and closes is the rest
        self.figures: frozenset[int] | None = None


RUN: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("nb2flow_run", default=None)


def current() -> RunContext | None:
    """The run context of the calling code (None outside flows and tasks)."""
    return RUN.get()
