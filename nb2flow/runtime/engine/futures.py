"""Futures and outcomes: what a submitted task run gives back, on every task runner.

An :class:`Outcome` is the result of one task run as the executing side reports it (state,
value or error, attempts, end time); it is small and picklable, so a process pool or a Dask
worker can send it back. A :class:`TaskFuture` is the flow-side handle users hold: it is
completed once with an outcome and wakes whoever waits on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.exceptions import RemoteError, TaskCancelled, TaskTimeout, UpstreamFailed
from nb2flow.runtime.core.states import (
    CACHED,
    CANCELLED,
    COMPLETED,
    CRASHED,
    FAILED,
    NOT_RUN,
    OK_STATES,
    PENDING,
    RUNNING,
    TIMED_OUT,
)
from nb2flow.runtime.core.tracebacks import error_line, format_traceback

# One lock for the completion fields of every future: held for a few attribute writes only.
_lock = threading.Lock()


class Outcome:
    """How a task run ended: ``state``, and ``value`` or ``error``/``traceback``/``exc``.

    Made by the constructor of its ending (:meth:`completed`, :meth:`cached`,
    :meth:`failed`, :meth:`crashed`, :meth:`not_run`, :meth:`cancelled`). ``events`` holds
    the run events of the attempt when the executing side buffered them (see
    :func:`nb2flow.runtime.engine.attempts.execute`); the flow side publishes them before the
    final state.
    """

    __slots__ = (
        "state",
        "value",
        "exc",
        "error",
        "traceback",
        "attempt",
        "ts",
        "message",
        "cached_from",
        "events",
        "result",
    )

    def __init__(
        self,
        state: str,
        value: Any = None,
        *,
        exc: BaseException | None = None,
        error: str | None = None,
        traceback: str | None = None,
        attempt: int = 1,
        ts: float | None = None,
        message: str = "",
        cached_from: str | None = None,
        events: list[RunEvent] | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        self.state = state
        self.value = value
        self.exc = exc
        self.error = error
        self.traceback = traceback
        self.attempt = attempt
        self.ts = ts
        self.message = message
        self.cached_from = cached_from
        self.events = events
        #: a summary of the value (:mod:`nb2flow.runtime.observation.results`), made where
        #: the value is
        self.result = result

    # -- one constructor per ending -----------------------------------------------------

    @classmethod
    def completed(cls, value: Any, attempt: int = 1) -> Outcome:
        return cls(COMPLETED, value, attempt=attempt, ts=time.time())

    @classmethod
    def cached(cls, value: Any, cached_from: str | None) -> Outcome:
        """The value came from the cache (``cached_from``: the flow run that computed it)."""
        return cls(
            CACHED,
            value,
            attempt=0,
            ts=time.time(),
            message="result from the cache",
            cached_from=cached_from,
        )

    @classmethod
    def failed(
        cls,
        exc: BaseException | None,
        *,
        attempt: int = 1,
        state: str = FAILED,
        error: str | None = None,
        traceback: str | None = None,
        message: str = "",
    ) -> Outcome:
        """Failed (or TimedOut, ``state``) with ``exc``; ``error`` and ``traceback`` default
        to the exception's line and traceback."""
        if error is None and exc is not None:
            error = error_line(exc)
        if traceback is None and exc is not None:
            traceback = format_traceback(exc)
        return cls(
            state,
            exc=exc,
            error=error,
            traceback=traceback,
            attempt=attempt,
            ts=time.time(),
            message=message,
        )

    @classmethod
    def crashed(cls, error: str, *, traceback: str = "", attempt: int = 1) -> Outcome:
        """The run's process or worker went away (or its outcome could not be read)."""
        return cls(CRASHED, error=error, traceback=traceback, attempt=attempt, ts=time.time())

    @classmethod
    def not_run(cls, message: str) -> Outcome:
        """Not run: an upstream run did not complete."""
        return cls(NOT_RUN, attempt=0, ts=time.time(), message=message)

    @classmethod
    def cancelled(cls, message: str) -> Outcome:
        return cls(CANCELLED, attempt=0, ts=time.time(), message=message)

    # -- reading -------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.state in OK_STATES

    def exception(self) -> BaseException:
        """The exception to raise for a run that did not complete."""
        if self.exc is not None:
            return self.exc
        text = self.error or self.message or self.state
        if self.state == NOT_RUN:
            return UpstreamFailed(text)
        if self.state == CANCELLED:
            return TaskCancelled(text)
        if self.state == TIMED_OUT:
            return TaskTimeout(text)
        return RemoteError(text, self.traceback or "")

    def __repr__(self) -> str:
        return f"Outcome({self.state!r}, attempt={self.attempt})"


class Future(Protocol):
    """What every future of a task run offers, on every runner (Prefect's ``PrefectFuture``):
    :class:`TaskFuture` (a run) and :class:`ItemFuture` (one item of a ``nout`` run)."""

    @property
    def task_run_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any: ...

    def exception(self, timeout: float | None = None) -> BaseException | None: ...

    def add_done_callback(self, fn: Callable[[Any], None]) -> None: ...


class RunHandle(Protocol):
    """What a future knows of its flow-side run (the engine's ``TaskCall``)."""

    started: bool
    flow_run: Any


class TaskFuture:
    """The handle of a submitted task run (Prefect's ``PrefectFuture`` interface).

    ``result()`` waits and returns the value (or raises the task's error), ``wait()``
    waits, ``state`` is the state name now. A task declared with ``nout=N`` gives N item
    futures when unpacked (``a, b = t.submit(x)``) without waiting; otherwise iterating
    waits for the value and iterates it.
    """

    __slots__ = (
        "task_run_id",
        "name",
        "nout",
        "call",
        "handle",
        "_outcome",
        "_claimed",
        "_waiter",
        "_callbacks",
        "__weakref__",
    )

    def __init__(
        self, task_run_id: str, name: str, nout: int | None = None, call: RunHandle | None = None
    ) -> None:
        self.task_run_id = task_run_id
        self.name = name
        self.nout = nout
        #: the flow-side :class:`~nb2flow.runtime.engine.flow_run.TaskCall` (None for a
        #: future made outside a flow)
        self.call = call
        #: free for the task runner (a Dask runner keeps its own future here)
        self.handle: Any = None
        self._outcome: Outcome | None = None
        self._claimed = False
        self._waiter: threading.Event | None = None
        self._callbacks: list[Callable[[TaskFuture], None]] | None = None

    # -- waiting -------------------------------------------------------------------------

    def done(self) -> bool:
        return self._outcome is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run is final; return whether it is."""
        if self._outcome is not None:
            return True
        with _lock:
            if self._outcome is not None:
                return True
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = threading.Event()
        return waiter.wait(timeout)

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    @property
    def state(self) -> str:
        o = self._outcome
        if o is not None:
            return o.state
        call = self.call
        return RUNNING if call is not None and call.started else PENDING

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's value; raises its error (or :class:`UpstreamFailed`, ...) on failure.

        With ``raise_on_failure=False`` a failed run returns its exception instead.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.name!r} did not finish within {timeout}s")
        o = self._outcome
        assert o is not None
        if o.state in OK_STATES:
            return o.value
        if raise_on_failure:
            raise o.exception()
        return o.exception()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.wait(timeout)
        o = self._outcome
        return None if o is None or o.ok else o.exception()

    def add_done_callback(self, fn: Callable[[TaskFuture], None]) -> None:
        """Call ``fn(self)`` when the run is final (at once if it already is)."""
        with _lock:
            if self._outcome is None:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        fn(self)

    # -- completion (flow side) ----------------------------------------------------------

    def _claim(self) -> bool:
        """Reserve the right to complete this future (the first finisher wins)."""
        with _lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _complete(self, outcome: Outcome) -> None:
        with _lock:
            self._outcome = outcome
            waiter, callbacks = self._waiter, self._callbacks
            self._callbacks = None
        if waiter is not None:
            waiter.set()
        if callbacks:
            for fn in callbacks:
                try:
                    fn(self)
                except Exception:  # noqa: BLE001 - one bad callback must not starve the others
                    import traceback

                    traceback.print_exc()

    # -- unpacking -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self.nout:
            return iter([ItemFuture(self, i) for i in range(self.nout)])
        return iter(self.result())

    def __getitem__(self, index: int) -> Any:
        if self.nout:
            if not isinstance(index, int) or not -self.nout <= index < self.nout:
                raise IndexError(f"task {self.name!r} has nout={self.nout}; no item {index!r}")
            return ItemFuture(self, index % self.nout)
        return self.result()[index]

    def __len__(self) -> int:
        return self.nout if self.nout else len(self.result())

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<TaskFuture {self.name} {self.state}>"


class ItemFuture:
    """Item ``index`` of a task run's result (from unpacking a ``nout=N`` future)."""

    __slots__ = ("parent", "index")

    def __init__(self, parent: TaskFuture, index: int) -> None:
        self.parent = parent
        self.index = index

    @property
    def task_run_id(self) -> str:
        return self.parent.task_run_id

    @property
    def name(self) -> str:
        return f"{self.parent.name}[{self.index}]"

    @property
    def state(self) -> str:
        return self.parent.state

    def done(self) -> bool:
        return self.parent.done()

    def wait(self, timeout: float | None = None) -> bool:
        return self.parent.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        parent = self.parent
        if parent.wait(timeout):
            o = parent._outcome
            # an outcome whose value is elsewhere (a Dask worker) fetches this item alone
            if type(o) is not Outcome and o is not None and o.ok:
                item = getattr(o, "item", None)
                if callable(item):
                    return item(self.index)
        value = parent.result(timeout, raise_on_failure)
        o = parent.outcome
        if o is not None and not o.ok:  # raise_on_failure=False: the exception, not an item
            return value
        return value[self.index]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self.parent.exception(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self.parent.add_done_callback(lambda _f: fn(self))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.result())

    def __getitem__(self, index: Any) -> Any:
        return self.result()[index]

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<ItemFuture {self.name} {self.state}>"


def completed_future(name: str, outcome: Outcome, nout: int | None = None) -> TaskFuture:
    """A future that is already final (``.submit()`` outside a flow runs at once)."""
    fut = TaskFuture("", name, nout)
    fut._claimed = True
    fut._outcome = outcome
    return fut


#: the future classes (for isinstance checks; :class:`Future` is their interface)
FUTURE_TYPES = (TaskFuture, ItemFuture)
