"""The task payload: everything the executing side needs to run one task run, picklable, with
upstream results replaced by :class:`Ref` placeholders into the run's upstream outcomes."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from nb2flow.runtime.core.exceptions import ValueUnavailable
from nb2flow.runtime.core.tracebacks import code_file, restore_code_file
from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.engine.setup import Setup
from nb2flow.runtime.engine.transport import Unavailable

#: the containers the engine looks into for futures and Refs (exact types: a subclass is a
#: value of its own)
CONTAINERS = (list, tuple, dict, set, frozenset)


class TaskSpec(Protocol):
    """What the engine reads of a task (the ``@task`` object of :mod:`nb2flow.runtime.api`)."""

    fn: Callable[..., Any]
    name: str
    retries: int
    retry_delay_seconds: float | list[float]
    timeout_seconds: float | None
    hard_timeout: bool
    cache: bool
    cache_key_fn: Callable[..., Any] | None
    log_prints: bool | None
    nout: int | None
    argnames: tuple[str, ...]

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]: ...


class Ref:
    """Placeholder for an upstream result inside a payload's arguments: item ``item`` (or
    the whole value when None) of ``upstream[slot]``."""

    __slots__ = ("slot", "item")

    def __init__(self, slot: int, item: int | None) -> None:
        self.slot = slot
        self.item = item

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ref, (self.slot, self.item))


#: types worth looking into for Ref placeholders (the containers and Ref itself)
_REF_SCANNED = frozenset({Ref, *CONTAINERS})


class TaskPayload:
    """Everything the executing side needs to run one task run; picklable (cloudpickle)."""

    __slots__ = (
        "task",
        "flow_run_id",
        "task_run_id",
        "flow_name",
        "args",
        "kwargs",
        "has_refs",
        "log_prints",
        "flow_run_name",
        "setup",
    )

    def __init__(
        self,
        task: TaskSpec,
        flow_run_id: str,
        task_run_id: str,
        flow_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        has_refs: bool,
        log_prints: bool,
        flow_run_name: str = "",
        setup: Setup | None = None,
    ) -> None:
        self.task = task
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        self.flow_name = flow_name
        self.args = args
        self.kwargs = kwargs
        self.has_refs = has_refs
        self.log_prints = log_prints
        self.flow_run_name = flow_run_name
        #: the flow's per-process setup, applied before the task runs (None: none)
        self.setup = setup

    def with_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], has_refs: bool = True
    ) -> TaskPayload:
        """A copy with other arguments (for a runner that renumbers the Refs), keeping
        every other field, present and future."""
        new = copy.copy(self)
        new.args, new.kwargs, new.has_refs = args, kwargs, has_refs
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _unpickled_payload,
            (
                code_file(self.task.fn),
                self.task,
                self.flow_run_id,
                self.task_run_id,
                self.flow_name,
                self.args,
                self.kwargs,
                self.has_refs,
                self.log_prints,
                self.flow_run_name,
                self.setup,
            ),
        )


def _unpickled_payload(file: str | None, task: TaskSpec, *fields: Any) -> TaskPayload:
    """A payload rebuilt where it runs; the task's function, when cloudpickle rebuilt it by
    value, gets back its file name (its frames in tracebacks name their notebook cell)."""
    restore_code_file(task.fn, file)
    return TaskPayload(task, *fields)


def resolve_refs(obj: Any, upstream: Sequence[Outcome]) -> Any:
    """``obj`` with its Refs replaced by the upstream values they point to (the same object
    when it holds none); raises :class:`ValueUnavailable` for an item that stayed in the
    process that computed it."""
    t = type(obj)
    if t is Ref:
        value = upstream[obj.slot].value
        if obj.item is not None:
            value = value[obj.item]
        vt = type(value)
        if vt is Unavailable:  # an item (a Dask runner hands items over as whole values)
            raise ValueUnavailable(value)
        if vt is tuple and obj.item is None and Unavailable in map(type, value):  # nout result
            raise ValueUnavailable(next(v for v in value if type(v) is Unavailable))
        return value
    if t is dict:
        if _REF_SCANNED.isdisjoint(map(type, obj.values())):
            return obj
        return {k: resolve_refs(v, upstream) for k, v in obj.items()}
    if t in CONTAINERS:
        if _REF_SCANNED.isdisjoint(map(type, obj)):
            return obj
        return t(resolve_refs(v, upstream) for v in obj)
    return obj
