"""Attempts with a ``timeout_seconds``: in a helper thread asked to stop at the deadline, or
(``hard_timeout=True``) in a child process killed at the deadline, with everything it
started (:mod:`.lifetime`)."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from nb2flow.runtime.core.context import RUN, RunContext
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.exceptions import RemoteError, TaskTimeout
from nb2flow.runtime.core.tracebacks import INTERNAL_FILES, error_line, format_traceback
from nb2flow.runtime.engine.lifetime import die_with_parent, kill_group, own_group
from nb2flow.runtime.engine.pipe import recv_message, send_message
from nb2flow.runtime.engine.transport import dumps_outcome_message

INTERNAL_FILES.add(__file__)


def attempt_in_thread(task: Any, args: Any, kwargs: Any, timeout: float) -> Any:
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


def attempt_in_process(task: Any, args: Any, kwargs: Any, timeout: float) -> Any:
    """Run one attempt in a child process (fork where the platform has it) and kill it
    when ``timeout`` expires: a hard stop, whatever the task is doing."""
    import multiprocessing as mp

    import cloudpickle

    ctx = RUN.get()
    assert ctx is not None
    info = (
        ctx.flow_run_id,
        ctx.task_run_id,
        ctx.name,
        ctx.flow_name,
        ctx.log_prints,
        ctx.flow_run_name,
    )
    fork = "fork" in mp.get_all_start_methods()
    mpctx = mp.get_context("fork") if fork else mp.get_context("spawn")
    work: Any = (task.fn, args, kwargs, info)
    if not fork:
        work = cloudpickle.dumps(work)
    recv, send = mpctx.Pipe(duplex=False)
    proc = mpctx.Process(target=_child_attempt, args=(send, work), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise TaskTimeout(f"task {task.name!r} timed out after {timeout:g}s (process killed)")
        try:
            _, body, error = recv_message(recv)  # its value once, never beside its pickle
        except EOFError:
            proc.join()
            raise RemoteError(
                f"the process running task {task.name!r} died (exit code {proc.exitcode})"
            ) from None
    except BaseException:
        # a timeout, a dead child, Ctrl-C while waiting: the child and whatever it started
        # (its process group) are killed, nothing is left behind
        kill_group(proc)
        raise
    finally:
        recv.close()
    proc.join()
    if error is not None:  # e.g. a class this process lacks
        raise error
    ok, value, events = body
    body = None
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

    own_group()
    die_with_parent()
    if isinstance(work, bytes):
        work = cloudpickle.loads(work)
    fn, args, kwargs, (frid, trid, name, flow_name, log_prints, run_name) = work
    events: list[RunEvent] = []
    output = None
    if log_prints:
        from nb2flow.runtime.observation import capture

        capture.ensure_installed()
        output = capture.CAPTURING
    ctx = RunContext(frid, trid, name, flow_name, events.append, log_prints, None, run_name, output)
    RUN.set(ctx)
    try:
        msg: tuple[Any, ...] = (True, fn(*args, **kwargs), events)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent
        msg = (False, (exc, error_line(exc), format_traceback(exc)), events)
    if output is not None:
        capture.flush(ctx)
    raws: list[Any] = []
    data = dumps_outcome_message(msg, raws)
    send_message(conn, None, data, raws)  # ``raws`` are views of the value: it is alive
    conn.close()
