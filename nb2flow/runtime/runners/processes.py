"""The process pool runner: CPU-bound Python tasks in parallel, in ``spawn``ed workers."""

from __future__ import annotations

import os
import threading
from typing import Any

from nb2flow.runtime.core.tracebacks import error_line, format_traceback
from nb2flow.runtime.engine.attempts import execute
from nb2flow.runtime.engine.flow_run import TaskCall
from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.engine.transport import pack_outcome
from nb2flow.runtime.runners.base import TaskRunner, finish_failed, parse_width

_worker_queue: Any = None


def _init_worker(q: Any) -> None:
    import signal

    global _worker_queue
    _worker_queue = q
    # Ctrl-C reaches the whole process group: the flow process handles it and stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_in_worker(task_run_id: str, blob: bytes) -> None:
    import cloudpickle

    q = _worker_queue
    payload = None
    try:
        payload, upstream = cloudpickle.loads(blob)
        outcome = execute(payload, upstream, lambda ev: q.put(("event", task_run_id, ev)))
    except BaseException as exc:  # noqa: BLE001 - e.g. the task cannot be unpickled here
        # the exception object itself may not travel: its line and traceback do
        outcome = Outcome.failed(None, error=error_line(exc), traceback=format_traceback(exc))
    q.put(("outcome", task_run_id, pack_outcome(outcome, payload)))


class ProcessRunner(TaskRunner):
    """A pool of worker processes (``spawn``): CPU-bound Python tasks run in parallel.

    Tasks and arguments are sent with cloudpickle (functions defined in a script or a
    notebook work), results come back pickled. Events of a task (states, logs) are streamed
    to the flow process through one queue, in order, ahead of its outcome.
    """

    name = "processes"

    def __init__(self, option: str | None = None) -> None:
        super().__init__(option)
        self.width = parse_width(option, self.name, os.cpu_count() or 1)
        self._pool: Any = None
        self._calls: dict[str, Any] = {}
        self._drainer: threading.Thread | None = None

    def describe(self) -> str:
        return f"processes:{self.width}"

    def start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        self._events = ctx.SimpleQueue()
        self._calls = {}
        self._pool = ProcessPoolExecutor(
            self.width, mp_context=ctx, initializer=_init_worker, initargs=(self._events,)
        )
        self._drainer = threading.Thread(target=self._drain, name="nb2flow-drain", daemon=True)
        self._drainer.start()

    def submit(self, call: TaskCall) -> None:
        import cloudpickle

        trid = call.payload.task_run_id
        blob = cloudpickle.dumps((call.payload, call.upstream_outcomes()))
        self._calls[trid] = call
        fut = self._pool.submit(_run_in_worker, trid, blob)
        fut.add_done_callback(lambda f: self._pool_done(trid, f))

    def _pool_done(self, trid: str, f: Any) -> None:
        # success is reported through the event queue; here only a dead worker matters
        if f.cancelled() or f.exception() is None:
            return
        call = self._calls.pop(trid, None)
        if call is None:
            return
        exc = f.exception()
        call.finish(Outcome.crashed(f"the worker process died: {error_line(exc)}"))

    def _drain(self) -> None:
        import cloudpickle

        get = self._events.get
        while True:
            msg = get()
            if msg is None:
                return
            kind, trid, obj = msg
            call = self._calls.get(trid)
            if call is None:
                continue
            if kind == "event":
                call.flow_run.publish(obj)
                continue
            self._calls.pop(trid, None)
            try:
                outcome = cloudpickle.loads(obj)
            except BaseException as exc:  # noqa: BLE001 - e.g. a class the flow process lacks
                finish_failed(call, exc)
            else:
                call.finish(outcome)

    def shutdown(self, cancel: bool = False) -> None:
        pool = self._pool
        if pool is None:
            return
        self._pool = None
        if cancel:
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
        else:
            pool.shutdown(wait=True)
        self._events.put(None)
        if self._drainer is not None and not cancel:
            self._drainer.join(5)
