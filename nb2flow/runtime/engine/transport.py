"""What crosses a process boundary with a task run's outcome, and what to do when it cannot.

An outcome is pickled (cloudpickle) to go back from a pool process or a Dask worker. A value
that cannot be pickled fails the run, except the items of a ``nout`` task: each item that
cannot travel is replaced by an :class:`Unavailable` marker, and a WARNING log event names it.
"""

from __future__ import annotations

import logging
from typing import Any

from nb2flow.runtime.core import events
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.states import FAILED
from nb2flow.runtime.core.tracebacks import error_line
from nb2flow.runtime.engine.futures import Outcome


class Unavailable:
    """Stands for an item of a task's result that could not be sent to another process.

    A task declared with ``nout=N`` that returns an item which cannot be pickled (an open
    file, a lock, an xgboost ``DMatrix``) on a process pool or a Dask cluster still
    completes: the other items travel, this one is replaced by an ``Unavailable`` marker
    (and a WARNING names it). A downstream task that receives the marker fails with an
    error naming the item; the flow's returned value holds the marker.
    """

    __slots__ = ("type_name", "reason", "task", "index")

    def __init__(self, type_name: str, reason: str, task: str = "", index: int | None = None):
        self.type_name = type_name
        self.reason = reason
        self.task = task
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unavailable, (self.type_name, self.reason, self.task, self.index))

    def describe(self) -> str:
        """``item 0 of task 'train' (xgboost.core.DMatrix)``."""
        where = f"task {self.task!r}" if self.task else "a task"
        if self.index is not None:
            where = f"item {self.index} of {where}"
        return f"{where} ({self.type_name})"

    def __repr__(self) -> str:
        return f"Unavailable({self.describe()}: {self.reason})"


def type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class _Discard:
    """A file that forgets what is written: pickling into it tests picklability without
    holding the pickle in memory (the pickler writes in frames)."""

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes  # bytes, or a PickleBuffer (protocol 5)


def sendable(item: Any, task: str, index: int | None) -> Any:
    """``item`` itself if it can be pickled, else an :class:`Unavailable` marker for it."""
    reason = _unsendable_reason(item)
    return item if reason is None else Unavailable(type_name(item), reason, task, index)


def sendable_items(value: Any, task: str) -> tuple[Any, list[Unavailable]]:
    """A ``nout`` task's tuple (or list) ``value`` with each item that cannot be pickled
    replaced by an :class:`Unavailable` marker, and the markers (for the path where
    pickling the whole value already failed)."""
    items = [sendable(item, task, i) for i, item in enumerate(value)]
    markers = [m for m in items if type(m) is Unavailable]
    return type(value)(items) if type(value) in (tuple, list) else tuple(items), markers


def unavailable_warning(marker: Unavailable, flow_run_id: str, task_run_id: str | None) -> RunEvent:
    """The WARNING log event naming an item replaced by a marker."""
    return events.log(
        flow_run_id,
        task_run_id,
        logging.WARNING,
        f"{marker.describe()} cannot be sent to another process ({marker.reason}); it is "
        "replaced by an Unavailable marker",
        "nb2flow.runtime",
    )


def _unsendable_reason(value: Any) -> str | None:
    """Why ``value`` cannot be pickled (None if it can), without keeping the pickle."""
    import cloudpickle

    try:
        cloudpickle.dump(value, _Discard())
    except Exception as exc:  # noqa: BLE001 - any reason pickling fails
        return error_line(exc)
    return None


def sendable_outcome(outcome: Outcome, payload: Any, reason: str | None = None) -> Outcome:
    """``outcome`` as it may leave the process that computed it (the same rule on every
    runner that runs tasks elsewhere).

    A completed run's value that cannot be pickled (``reason`` says why when the caller
    already knows it cannot; otherwise it is probed, at the cost of a pickling pass that
    keeps nothing): the items of a ``nout`` task's tuple or list that cannot are replaced
    by :class:`Unavailable` markers, with a WARNING log event each appended to
    ``outcome.events``; any other value fails the run with an error naming the task."""
    if not outcome.ok:
        return outcome
    if reason is None:
        reason = _unsendable_reason(outcome.value)
        if reason is None:
            return outcome
    task = getattr(payload, "task", None)
    name = getattr(task, "name", "?")
    if getattr(task, "nout", None) and type(outcome.value) in (tuple, list):
        value, markers = sendable_items(outcome.value, name)
        if markers:
            events = list(outcome.events or ())
            events += [
                unavailable_warning(m, payload.flow_run_id, payload.task_run_id) for m in markers
            ]
            return Outcome(
                outcome.state,
                value,
                attempt=outcome.attempt,
                ts=outcome.ts,
                message=outcome.message,
                cached_from=outcome.cached_from,
                events=events,
                result=outcome.result,
            )
    return _unsendable(outcome, name, reason)


def _unsendable(outcome: Outcome, name: str, reason: str) -> Outcome:
    return Outcome(
        FAILED,
        error=f"TypeError: the result of task {name!r} cannot be sent back to the "
        f"flow process ({type_name(outcome.value)}: {reason})",
        traceback="",
        attempt=outcome.attempt,
        ts=outcome.ts,
        events=outcome.events,
    )


def pack_outcome(
    outcome: Outcome, payload: Any = None, raws: list[memoryview] | None = None
) -> bytes:
    """cloudpickle an Outcome to send it back, degrading what cannot be pickled
    (:func:`sendable_outcome`): an exception that cannot be pickled is dropped (its error
    line and traceback travel). With ``raws``, the big buffers are left out of the pickle
    and put in ``raws`` (:func:`dumps`): send them with it."""
    try:
        return dumps(outcome, raws)
    except Exception as exc:  # noqa: BLE001
        reason = error_line(exc)
    if not outcome.ok:
        outcome.exc = None
        return dumps(outcome, raws)
    degraded = sendable_outcome(outcome, payload, reason)
    try:
        return dumps(degraded, raws)
    except Exception as exc:  # noqa: BLE001 - e.g. an event that cannot travel
        name = getattr(getattr(payload, "task", None), "name", "?")
        return dumps(_unsendable(outcome, name, error_line(exc)), raws)


def dumps_outcome_message(msg: tuple[Any, ...], raws: list[memoryview] | None = None) -> bytes:
    """cloudpickle ``(ok, value_or_error, events)``, degrading what cannot be pickled (with
    ``raws``: its big buffers beside the pickle, as :func:`dumps`)."""
    try:
        return dumps(msg, raws)
    except Exception as exc:  # noqa: BLE001
        ok, value, events = msg
        if ok:
            err = f"TypeError: the result cannot be sent back from the child process ({exc})"
            return dumps((False, (None, err, ""), events), raws)
        _, error, tb = value
        return dumps((False, (None, error, tb), events), raws)


# -- a value crosses a pipe once, without a copy of its big buffers (engine.pipe)

#: a buffer at least this big (a numpy array's data, ...) travels beside the pickle, not in it
OUT_OF_BAND_MIN = 1 << 16


def dumps(obj: Any, raws: list[memoryview] | None = None) -> bytes:
    """cloudpickle ``obj``. With ``raws`` (a list, emptied first), pickle protocol 5: every
    contiguous buffer of at least :data:`OUT_OF_BAND_MIN` bytes is left out of the pickle
    and appended to ``raws`` as a view of the object's own memory (no copy); the object
    must stay alive until they are sent."""
    import cloudpickle

    if raws is None:
        return cloudpickle.dumps(obj)
    raws.clear()

    def out_of_band(buf: Any) -> bool:  # a pickle.PickleBuffer
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: in the pickle
            return True
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        raws.append(raw)
        return False

    return cloudpickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
