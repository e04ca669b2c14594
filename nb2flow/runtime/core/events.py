"""Run events: the one interface through which the terminal reporter, the run store and
the Jupyter panel learn what a run does.

The runtime publishes an event for every flow/task state change and every log record, built
by the constructor of its kind (:func:`flow_run`, :func:`flow_state`, :func:`task_run`,
:func:`task_state`, :func:`log`, :func:`artifact`); each kind's ``data`` is described by its
TypedDict below.
Subscribers are plain callables taking one :class:`RunEvent`; they must be fast (append to a
queue, update a counter) because they run on the hot path of every task. Event data is
read-only: the constructors share the common payloads between events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

from nb2flow.runtime.core.states import COMPLETED, RUNNING

FLOW_RUN = "flow_run"
FLOW_STATE = "flow_state"
TASK_RUN = "task_run"
TASK_STATE = "task_state"
LOG = "log"
ARTIFACT = "artifact"
KINDS = (FLOW_RUN, FLOW_STATE, TASK_RUN, TASK_STATE, LOG, ARTIFACT)

#: a result summary (:mod:`nb2flow.runtime.observation.results`): ``type``, ``repr``, and
#: ``shape``/``dtype``/``len``/``columns``/``items`` where they apply
Summary = dict[str, Any]


class FlowRunData(TypedDict, total=False):
    """``flow_run``: a flow run was created."""

    flow_name: str
    run_name: str
    parameters: dict[str, str]  # name -> repr of the value
    pid: int | None
    task_runner: str  # the runner's description, ``threads:8``
    parent_flow_run_id: str  # only for a subflow's run
    persist: bool  # only when False: ``@flow(persist=False)``, not recorded
    script: str  # the file of the program that ran the flow (absolute), when known
    cwd: str  # its working directory
    tags: list[str]  # the run's tags (``@flow(tags=...)``, ``--tag``)


class FlowStateData(TypedDict, total=False):
    """``flow_state``: the flow run entered ``state``; failures carry ``error`` (one line)
    and ``traceback`` (None when there is none, e.g. a flow timeout)."""

    state: str
    message: str
    error: str
    traceback: str | None
    result: Summary  # Completed only: a summary of what the flow returned


class TaskRunData(TypedDict):
    """``task_run``: a task run was created."""

    task_name: str
    task_key: str  # its stable name in the flow run (``train``, ``train-2``, ``score[3]``)
    upstream: Sequence[str]  # the task run ids it waits for
    edge_names: Mapping[str, list[str]]  # upstream task run id -> variable names
    map_index: int | None


class TaskStateData(TypedDict, total=False):
    """``task_state``: the task run entered ``state`` in ``attempt`` (1-based; 0 when it
    never ran); failures add ``error`` and ``traceback``, Cached adds ``cached_from`` (the
    flow run that produced the value) where known."""

    state: str
    attempt: int | None
    message: str
    error: str
    traceback: str
    cached_from: str
    result: Summary  # Completed/Cached: a summary of what the task returned


class LogData(TypedDict):
    """``log``: a record of a run logger, a ``logging`` record or text a run wrote to
    stdout/stderr (``logger`` is then ``stdout`` or ``stderr``)."""

    level: int
    levelname: str
    message: str
    logger: str


class ArtifactData(TypedDict):
    """``artifact``: something the run displayed (:mod:`nb2flow.artifacts`): ``kind`` is
    ``value``, ``table``, ``markdown`` or ``image``; ``bundle`` maps MIME types to their
    content (``text/plain`` str always, ``text/html``/``text/markdown`` str, ``image/png``
    bytes), each within its cap; ``truncated`` when a part was cut or left out."""

    kind: str
    name: str
    bundle: dict[str, str | bytes]
    truncated: bool


class RunEvent(NamedTuple):
    kind: str
    ts: float  # time.time() when it happened
    flow_run_id: str
    task_run_id: str | None
    data: Mapping[str, Any]  # the TypedDict of its kind


# The common task states share one read-only payload each: it saves allocations (and
# garbage-collector work) on the hot path.
_RUNNING_1: TaskStateData = {"state": RUNNING, "attempt": 1, "message": ""}
_COMPLETED_1: TaskStateData = {"state": COMPLETED, "attempt": 1, "message": ""}
_LEVELNAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def flow_run(
    flow_run_id: str,
    *,
    flow_name: str,
    run_name: str,
    parameters: dict[str, str],
    pid: int | None,
    task_runner: str,
    parent_flow_run_id: str | None = None,
    persist: bool = True,
    script: str | None = None,
    cwd: str | None = None,
    tags: Sequence[str] = (),
    ts: float | None = None,
) -> RunEvent:
    data: FlowRunData = {
        "flow_name": flow_name,
        "run_name": run_name,
        "parameters": parameters,
        "pid": pid,
        "task_runner": task_runner,
    }
    if parent_flow_run_id is not None:
        data["parent_flow_run_id"] = parent_flow_run_id
    if not persist:
        data["persist"] = False
    if script:
        data["script"] = script
    if cwd:
        data["cwd"] = cwd
    if tags:
        data["tags"] = list(tags)
    return RunEvent(FLOW_RUN, time.time() if ts is None else ts, flow_run_id, None, data)


def flow_state(
    flow_run_id: str,
    state: str,
    *,
    message: str = "",
    error: str | None = None,
    traceback: str | None = None,
    result: Summary | None = None,
    ts: float | None = None,
) -> RunEvent:
    data: FlowStateData = {"state": state, "message": message}
    if error is not None:
        data["error"] = error
        data["traceback"] = traceback
    if result is not None:
        data["result"] = result
    return RunEvent(FLOW_STATE, time.time() if ts is None else ts, flow_run_id, None, data)


def task_run(
    flow_run_id: str,
    task_run_id: str,
    *,
    task_name: str,
    task_key: str,
    upstream: Sequence[str],
    edge_names: Mapping[str, list[str]],
    map_index: int | None,
    ts: float | None = None,
) -> RunEvent:
    data: TaskRunData = {
        "task_name": task_name,
        "task_key": task_key,
        "upstream": upstream,
        "edge_names": edge_names,
        "map_index": map_index,
    }
    return RunEvent(TASK_RUN, time.time() if ts is None else ts, flow_run_id, task_run_id, data)


def task_state(
    flow_run_id: str,
    task_run_id: str,
    state: str,
    attempt: int | None,
    *,
    message: str = "",
    error: str | None = None,
    traceback: str | None = None,
    cached_from: str | None = None,
    result: Summary | None = None,
    ts: float | None = None,
) -> RunEvent:
    data: TaskStateData
    if attempt == 1 and not message and error is None and cached_from is None and result is None:
        if state == RUNNING:
            data = _RUNNING_1
        elif state == COMPLETED:
            data = _COMPLETED_1
        else:
            data = {"state": state, "attempt": attempt, "message": message}
    else:
        data = {"state": state, "attempt": attempt, "message": message}
        if error is not None:
            data["error"] = error
            data["traceback"] = traceback or ""
        if cached_from is not None:
            data["cached_from"] = cached_from
        if result is not None:
            data["result"] = result
    return RunEvent(TASK_STATE, time.time() if ts is None else ts, flow_run_id, task_run_id, data)


def log(
    flow_run_id: str,
    task_run_id: str | None,
    level: int,
    message: str,
    logger: str,
    *,
    levelname: str | None = None,
    ts: float | None = None,
) -> RunEvent:
    data: LogData = {
        "level": level,
        "levelname": levelname or _LEVELNAMES.get(level, f"Level {level}"),
        "message": message,
        "logger": logger,
    }
    return RunEvent(LOG, time.time() if ts is None else ts, flow_run_id, task_run_id, data)


def artifact(
    flow_run_id: str,
    task_run_id: str | None,
    *,
    kind: str,
    name: str,
    bundle: dict[str, str | bytes],
    truncated: bool = False,
    ts: float | None = None,
) -> RunEvent:
    data: ArtifactData = {"kind": kind, "name": name, "bundle": bundle, "truncated": truncated}
    return RunEvent(ARTIFACT, time.time() if ts is None else ts, flow_run_id, task_run_id, data)


# ------------------------------------------------------------------------------ the bus

Subscriber = Callable[[RunEvent], None]

_subscribers: list[Subscriber] = []


def subscribe(fn: Subscriber) -> Subscriber:
    """Add a subscriber for every run in this process. Returns it, for :func:`unsubscribe`."""
    if fn not in _subscribers:
        _subscribers.append(fn)
    return fn


def unsubscribe(fn: Subscriber) -> None:
    try:
        _subscribers.remove(fn)
    except ValueError:
        pass


def subscribers() -> tuple[Subscriber, ...]:
    return tuple(_subscribers)


def emit(
    kind: str,
    flow_run_id: str,
    task_run_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    ts: float | None = None,
) -> RunEvent:
    """Build an event of any ``kind`` from ready ``data`` and publish it (replaying recorded
    events; the runtime itself uses the constructors above)."""
    event = RunEvent(kind, time.time() if ts is None else ts, flow_run_id, task_run_id, data or {})
    publish(event)
    return event


def publish(event: RunEvent) -> None:
    """Hand an event to every subscriber (a failing subscriber never breaks a run).

    The runtime builds events where they happen (a worker thread, a pool process) and
    publishes them in the flow process.
    """
    for fn in _subscribers:
        try:
            fn(event)
        except Exception:  # noqa: BLE001 - observers must not break the run they observe
            pass
