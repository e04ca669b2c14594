"""The executing side of a task run: its attempts, wherever they run.

:func:`execute` takes a :class:`~nb2flow.runtime.engine.payload.TaskPayload` (the task and its
arguments, with upstream results replaced by ``Ref`` placeholders) and the upstream
:class:`~nb2flow.runtime.engine.futures.Outcome` objects, runs the attempts (cache lookup,
retries, timeouts, NotRun when an upstream did not complete) and returns an ``Outcome``. It
emits the attempts' events (Running, Retrying, logs) through a ``sink``; with no sink it
buffers them in ``Outcome.events``. It needs nothing from the flow process, so a worker
thread, a pool process or a Dask worker can run it. The flow side is
:mod:`nb2flow.runtime.engine.flow_run`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from nb2flow.runtime.core.context import RUN, RunContext
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.exceptions import TaskTimeout, ValueUnavailable
from nb2flow.runtime.core.states import (
    CACHED,
    COMPLETED,
    FAILED,
    NOT_RUN,
    OK_STATES,
    RETRYING,
    RUNNING,
    TIMED_OUT,
)
from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.engine.payload import TaskPayload, resolve_refs
from nb2flow.runtime.engine.timeouts import attempt_in_process, attempt_in_thread
from nb2flow.runtime.engine.tracebacks import INTERNAL_FILES, error_line, format_traceback

INTERNAL_FILES.add(__file__)  # a task's traceback starts at the user's code

_now = time.time

# Event data is read-only for subscribers: the common payloads are shared, which saves
# allocations (and garbage-collector work) on the hot path.
_RUNNING_1: dict[str, Any] = {"state": RUNNING, "attempt": 1, "message": ""}


def _retry_delay(task: Any, attempt: int) -> float:
    delay = task.retry_delay_seconds
    if isinstance(delay, (list, tuple)):
        if not delay:
            return 0.0
        return float(delay[min(attempt - 1, len(delay) - 1)])
    return float(delay or 0)


def _check_nout(task: Any, value: Any) -> None:
    try:
        n = len(value)
    except TypeError:
        raise TypeError(
            f"task {task.name!r} declares nout={task.nout} but returned a "
            f"{type(value).__name__}, which has no length"
        ) from None
    if n != task.nout:
        raise ValueError(f"task {task.name!r} declares nout={task.nout} but returned {n} values")


def execute(
    payload: TaskPayload,
    upstream: Sequence[Outcome] = (),
    sink: Callable[[RunEvent], None] | None = None,
) -> Outcome:
    """Run one task run where it is called, and return its outcome (never raises for a
    task's failure; KeyboardInterrupt propagates).

    ``upstream`` are the outcomes the payload's :class:`Ref` placeholders point to, in
    order; if one of them did not complete, the task is NotRun. ``sink`` receives the
    events of the attempts (Running, Retrying, logs); without one they are buffered in the
    returned ``Outcome.events``. The final state event is not emitted here: the flow side
    publishes it in :meth:`TaskCall.finish`, after the buffered events.
    """
    buffered: list[RunEvent] | None = None
    if sink is None:
        buffered = []
        sink = buffered.append
    for o in upstream:
        if o.state not in OK_STATES:
            return Outcome(
                NOT_RUN,
                attempt=0,
                ts=_now(),
                message=f"an upstream task run is {o.state}",
                events=buffered,
            )
    task = payload.task
    args, kwargs = payload.args, payload.kwargs
    if payload.has_refs:
        try:
            args = resolve_refs(args, upstream)
            kwargs = resolve_refs(kwargs, upstream)
        except ValueUnavailable as exc:  # an upstream item stayed in another process
            return Outcome(
                FAILED,
                exc=exc,
                error=error_line(exc),
                traceback="",
                attempt=0,
                ts=_now(),
                events=buffered,
            )
    frid, trid = payload.flow_run_id, payload.task_run_id
    if payload.log_prints and not _prints_captured:
        _capture_prints()
    token = RUN.set(
        RunContext(
            frid,
            trid,
            task.name,
            payload.flow_name,
            sink,
            payload.log_prints,
            None,
            payload.flow_run_name,
        )
    )
    try:
        key = None
        announced = False  # whether attempt 1's Running is already out
        if task.cache or task.cache_key_fn is not None:
            # Running first, so the run's start..end covers hashing the inputs and reading
            # the value back (a Cached run is not instantaneous)
            sink(RunEvent("task_state", _now(), frid, trid, _RUNNING_1))
            announced = True
            hit, key = _cache_lookup(task, args, kwargs)
            if hit is not None:
                return Outcome(
                    CACHED,
                    hit.value,
                    attempt=0,
                    ts=_now(),
                    message="result from the cache",
                    cached_from=hit.flow_run_id,
                    events=buffered,
                )
        fn, retries, timeout = task.fn, task.retries, task.timeout_seconds
        attempt = 0
        while True:
            attempt += 1
            if announced:
                announced = False
            else:
                sink(
                    RunEvent(
                        "task_state",
                        _now(),
                        frid,
                        trid,
                        _RUNNING_1
                        if attempt == 1
                        else {"state": RUNNING, "attempt": attempt, "message": ""},
                    )
                )
            try:
                if timeout is None:
                    value = fn(*args, **kwargs)
                elif task.hard_timeout:
                    value = attempt_in_process(task, args, kwargs, timeout)
                else:
                    value = attempt_in_thread(task, args, kwargs, timeout)
                if task.nout:
                    _check_nout(task, value)
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a task fails the task
                if isinstance(exc, KeyboardInterrupt) and _is_main_thread():
                    raise  # Ctrl-C: the flow cancels the run
                error, tb = error_line(exc), format_traceback(exc)
                state = TIMED_OUT if isinstance(exc, TaskTimeout) else FAILED
                if attempt <= retries:
                    delay = _retry_delay(task, attempt)
                    sink(
                        RunEvent(
                            "task_state",
                            _now(),
                            frid,
                            trid,
                            {
                                "state": RETRYING,
                                "attempt": attempt,
                                "message": f"{state} (attempt {attempt} of {retries + 1}); "
                                f"retrying in {delay:g}s",
                                "error": error,
                                "traceback": tb,
                            },
                        )
                    )
                    if delay > 0:
                        time.sleep(delay)
                    continue
                return Outcome(
                    state,
                    exc=exc,
                    error=error,
                    traceback=tb,
                    attempt=attempt,
                    ts=_now(),
                    events=buffered,
                )
            if key is not None:
                _cache_save(key, value, task, frid, payload.flow_name, sink, trid)
            return Outcome(COMPLETED, value, attempt=attempt, ts=_now(), events=buffered)
    finally:
        RUN.reset(token)


_prints_captured = False


def _is_main_thread() -> bool:
    """Ctrl-C only ever arrives in the main thread; a KeyboardInterrupt raised by a task's
    own code in a worker thread is that task's failure."""
    return threading.current_thread() is threading.main_thread()


def _capture_prints() -> None:
    """Install the ``print`` capture of ``log_prints`` runs (once per process)."""
    global _prints_captured
    from nb2flow.runtime.observation.logs import install_print_capture

    install_print_capture()
    _prints_captured = True


def _cache_lookup(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from nb2flow.runtime.cache import entries, keys

    key = keys.key_for(task, task.bind(args, kwargs))
    if key is None:
        return None, None
    return entries.lookup(key, task), key


def _cache_save(
    key: str,
    value: Any,
    task: Any,
    flow_run_id: str,
    flow_name: str,
    sink: Callable[[RunEvent], None],
    task_run_id: str,
) -> None:
    from nb2flow.runtime.cache import entries

    try:
        entries.save(key, value, task=task, flow_run_id=flow_run_id, flow_name=flow_name)
    except Exception as exc:  # noqa: BLE001 - the value was computed; the run goes on
        sink(
            RunEvent(
                "log",
                _now(),
                flow_run_id,
                task_run_id,
                {
                    "level": 30,
                    "levelname": "WARNING",
                    "message": f"result not cached: {error_line(exc)}",
                    "logger": "nb2flow.cache",
                },
            )
        )
