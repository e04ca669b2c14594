"""The executing side of a task run: its attempts, wherever they run.

:func:`execute` takes a :class:`TaskPayload` (the task and its arguments, with upstream
results replaced by :class:`Ref` placeholders) and the upstream
:class:`~nb2flow.runtime.futures.Outcome` objects, runs the attempts (cache lookup, retries,
timeouts, NotRun when an upstream did not complete) and returns an ``Outcome``. It emits the
attempts' events (Running, Retrying, logs) through a ``sink``; with no sink it buffers them
in ``Outcome.events``. It needs nothing from the flow process, so a worker thread, a pool
process or a Dask worker can run it. The flow side is :mod:`nb2flow.runtime.engine`.
"""

from __future__ import annotations

import contextvars
import copy
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nb2flow.runtime.events import RunEvent
from nb2flow.runtime.exceptions import RemoteError, TaskTimeout, ValueUnavailable
from nb2flow.runtime.futures import Outcome, Unavailable
from nb2flow.runtime.states import (
    CACHED,
    COMPLETED,
    FAILED,
    NOT_RUN,
    OK_STATES,
    RETRYING,
    RUNNING,
    TIMED_OUT,
)

if TYPE_CHECKING:
    from nb2flow.runtime.engine import FlowRun

_now = time.time

# Event data is read-only for subscribers: the common payloads are shared, which saves
# allocations (and garbage-collector work) on the hot path.
_RUNNING_1: dict[str, Any] = {"state": RUNNING, "attempt": 1, "message": ""}

#: files whose frames start a task's traceback without telling the user anything
INTERNAL_FILES = {__file__}


# ------------------------------------------------------------------------------ context


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
    )

    def __init__(
        self,
        flow_run_id: str,
        task_run_id: str | None,
        name: str,
        flow_name: str,
        sink: Callable[[RunEvent], None],
        log_prints: bool,
        flow_run: FlowRun | None = None,
        flow_run_name: str = "",
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


_RUN: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "nb2flow_run", default=None
)


def current() -> RunContext | None:
    """The run context of the calling code (None outside flows and tasks)."""
    return _RUN.get()


# ------------------------------------------------------------------------ executing side


class Ref:
    """Placeholder for an upstream result inside a payload's arguments: item ``item`` (or
    the whole value when None) of ``upstream[slot]``."""

    __slots__ = ("slot", "item")

    def __init__(self, slot: int, item: int | None) -> None:
        self.slot = slot
        self.item = item

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ref, (self.slot, self.item))


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
    )

    def __init__(
        self,
        task: Any,
        flow_run_id: str,
        task_run_id: str,
        flow_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        has_refs: bool,
        log_prints: bool,
        flow_run_name: str = "",
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
            TaskPayload,
            (
                self.task,
                self.flow_run_id,
                self.task_run_id,
                self.flow_name,
                self.args,
                self.kwargs,
                self.has_refs,
                self.log_prints,
                self.flow_run_name,
            ),
        )


_CONTAINERS = (list, tuple, dict, set, frozenset)
#: types worth looking into for Ref placeholders (the containers and Ref itself)
_REF_SCANNED = frozenset({Ref, list, tuple, dict, set, frozenset})


def _resolve_refs(obj: Any, upstream: Sequence[Outcome]) -> Any:
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
        return {k: _resolve_refs(v, upstream) for k, v in obj.items()}
    if t in _CONTAINERS:
        if _REF_SCANNED.isdisjoint(map(type, obj)):
            return obj
        return t(_resolve_refs(v, upstream) for v in obj)
    return obj


def error_line(exc: BaseException) -> str:
    """``Type: message`` on one line (at most 500 characters)."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 500 else line[:497] + "..."


def format_traceback(exc: BaseException) -> str:
    """The traceback text, without the engine's own frames at the top."""
    remote = getattr(exc, "_nb2flow_traceback", None)
    if remote:
        return remote
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in INTERNAL_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


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
            args = _resolve_refs(args, upstream)
            kwargs = _resolve_refs(kwargs, upstream)
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
    token = _RUN.set(
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
                    value = _attempt_in_process(task, args, kwargs, timeout)
                else:
                    value = _attempt_in_thread(task, args, kwargs, timeout)
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
        _RUN.reset(token)


_prints_captured = False


def _is_main_thread() -> bool:
    """Ctrl-C only ever arrives in the main thread; a KeyboardInterrupt raised by a task's
    own code in a worker thread is that task's failure."""
    return threading.current_thread() is threading.main_thread()


def _capture_prints() -> None:
    """Install the ``print`` capture of ``log_prints`` runs (once per process)."""
    global _prints_captured
    from nb2flow.runtime.logs import install_print_capture

    install_print_capture()
    _prints_captured = True


def _cache_lookup(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from nb2flow.runtime import cache

    key = cache.key_for(task, task.bind(args, kwargs))
    if key is None:
        return None, None
    return cache.lookup(key, task), key


def _cache_save(
    key: str,
    value: Any,
    task: Any,
    flow_run_id: str,
    flow_name: str,
    sink: Callable[[RunEvent], None],
    task_run_id: str,
) -> None:
    from nb2flow.runtime import cache

    try:
        cache.save(key, value, task=task, flow_run_id=flow_run_id, flow_name=flow_name)
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


def _attempt_in_thread(task: Any, args: Any, kwargs: Any, timeout: float) -> Any:
    """Run one attempt in a helper thread and stop waiting after ``timeout`` seconds.

    A Python thread cannot be killed: on timeout the thread is asked to stop by raising
    TaskTimeout in it at its next Python instruction, which ends pure-Python code; code
    blocked in C (``time.sleep``, I/O, numpy) keeps running until that call returns, and
    its result is discarded. ``hard_timeout=True`` runs the attempt in a child process
    that is killed instead.
    """
    box: list[tuple[bool, Any]] = []
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            try:
                result = (True, ctx.run(task.fn, *args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                result = (False, exc)
            box.append(result)
            done.set()
        except TaskTimeout:  # the stop request landed as the attempt was ending: no noise
            done.set()

    th = threading.Thread(target=target, name=f"nb2flow-attempt-{task.name}", daemon=True)
    th.start()
    if not done.wait(timeout):
        _interrupt_thread(th, done)
        raise TaskTimeout(f"task {task.name!r} timed out after {timeout:g}s")
    ok, value = box[0]
    if ok:
        return value
    raise value


def _interrupt_thread(th: threading.Thread, done: threading.Event) -> None:
    import ctypes

    if th.ident is None or done.is_set():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(th.ident), ctypes.py_object(TaskTimeout)
    )


def _attempt_in_process(task: Any, args: Any, kwargs: Any, timeout: float) -> Any:
    """Run one attempt in a child process (fork where the platform has it) and kill it
    when ``timeout`` expires: a hard stop, whatever the task is doing."""
    import multiprocessing as mp

    import cloudpickle

    ctx = _RUN.get()
    assert ctx is not None
    info = (
        ctx.flow_run_id,
        ctx.task_run_id,
        ctx.name,
        ctx.flow_name,
        ctx.log_prints,
        ctx.flow_run_name,
    )
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mpctx = mp.get_context(method)
    work: Any = (task.fn, args, kwargs, info)
    if method != "fork":
        work = cloudpickle.dumps(work)
    recv, send = mpctx.Pipe(duplex=False)
    proc = mpctx.Process(target=_child_attempt, args=(send, work), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            proc.kill()
            proc.join()
            raise TaskTimeout(f"task {task.name!r} timed out after {timeout:g}s (process killed)")
        try:
            data = recv.recv_bytes()
        except EOFError:
            proc.join()
            raise RemoteError(
                f"the process running task {task.name!r} died (exit code {proc.exitcode})"
            ) from None
    finally:
        recv.close()
    proc.join()
    ok, value, events = cloudpickle.loads(data)
    for ev in events:
        ctx.sink(ev)
    if ok:
        return value
    exc, error, tb = value
    if exc is None:
        exc = RemoteError(error, tb)
    exc._nb2flow_traceback = tb
    raise exc


def _child_attempt(conn: Any, work: Any) -> None:
    import cloudpickle

    if isinstance(work, bytes):
        work = cloudpickle.loads(work)
    fn, args, kwargs, (frid, trid, name, flow_name, log_prints, run_name) = work
    events: list[RunEvent] = []
    _RUN.set(RunContext(frid, trid, name, flow_name, events.append, log_prints, None, run_name))
    try:
        msg: tuple[Any, ...] = (True, fn(*args, **kwargs), events)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent
        msg = (False, (exc, error_line(exc), format_traceback(exc)), events)
    conn.send_bytes(dumps_outcome_message(msg))
    conn.close()


def dumps_outcome_message(msg: tuple[Any, ...]) -> bytes:
    """cloudpickle ``(ok, value_or_error, events)``, degrading what cannot be pickled."""
    import cloudpickle

    try:
        return cloudpickle.dumps(msg)
    except Exception as exc:  # noqa: BLE001
        ok, value, events = msg
        if ok:
            err = f"TypeError: the result cannot be sent back from the child process ({exc})"
            return cloudpickle.dumps((False, (None, err, ""), events))
        _, error, tb = value
        return cloudpickle.dumps((False, (None, error, tb), events))
