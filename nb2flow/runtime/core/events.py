"""Run events: the one interface through which the terminal reporter, the run store and
the Jupyter panel learn what a run does.

The runtime calls :func:`emit` for every flow/task state change and every log record.
Subscribers are plain callables taking one :class:`RunEvent`; they must be fast (append
to a queue, update a counter) because they run on the hot path of every task. Event data
is read-only: the runtime shares the common payloads between events.

Event kinds and their ``data`` keys:

``flow_run``   a flow run was created:
               ``flow_name``, ``run_name``, ``parameters`` (dict of repr strings),
               ``pid``, ``task_runner`` (str).
``flow_state`` ``state`` (a name from :mod:`nb2flow.runtime.core.states`), ``message``,
               and for failures ``error`` (one line) and ``traceback``.
``task_run``   a task run was created: ``task_name``, ``task_key`` (stable name in the
               flow), ``upstream`` (sequence of task run ids it waits for), ``edge_names``
               (dict upstream task run id -> list of variable names, may be empty),
               ``map_index`` (int or None).
``task_state`` ``state``, ``attempt`` (1-based), ``message``; failures add ``error``
               and ``traceback``; Cached adds ``cached_from`` (the flow run id that
               produced the result) where known.
``log``        ``level`` (int), ``levelname``, ``message``, ``logger``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple


class RunEvent(NamedTuple):
    kind: str
    ts: float  # time.time() when it happened
    flow_run_id: str
    task_run_id: str | None
    data: dict[str, Any]


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
    data: dict[str, Any] | None = None,
    ts: float | None = None,
) -> RunEvent:
    """Build an event and hand it to every subscriber (a failing subscriber never breaks a run)."""
    event = RunEvent(kind, time.time() if ts is None else ts, flow_run_id, task_run_id, data or {})
    publish(event)
    return event


def publish(event: RunEvent) -> None:
    """Hand an already built event to every subscriber.

    The runtime builds events where they happen (a worker thread, a pool process) and
    publishes them in the flow process; a failing subscriber never breaks a run.
    """
    for fn in _subscribers:
        try:
            fn(event)
        except Exception:  # noqa: BLE001 - observers must not break the run they observe
            pass
