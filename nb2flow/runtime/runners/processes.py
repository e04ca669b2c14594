"""The process pool runner: CPU-bound Python tasks in parallel, in ``spawn``ed workers.

Its own small pool rather than ``concurrent.futures``, whose pool breaks as a whole when one
worker dies (``BrokenProcessPool`` fails every running and queued task). Each worker has one
pipe to the flow process and runs one task run at a time: the job goes down the pipe, the
run's events (states, logs) and then its outcome come back up, in order.

* A worker that dies (``os._exit``, a segfault, the OOM killer, ``kill -9``) takes only the
  task run it was running: Crashed, or run again from the next attempt if the task has
  retries left. The other runs go on; a new worker is started for the queued ones.
* Workers never outlive the flow process: each leads its own process group and kills it
  (itself and whatever its tasks started) when its parent is gone, however the parent
  ended (:mod:`nb2flow.runtime.engine.lifetime`).
"""

from __future__ import annotations

import collections
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from nb2flow.runtime.core import events
from nb2flow.runtime.core.states import CRASHED, RETRYING, RUNNING
from nb2flow.runtime.core.tracebacks import error_line, format_traceback
from nb2flow.runtime.engine.attempts import execute, retry_delay
from nb2flow.runtime.engine.flow_run import TaskCall
from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.engine.lifetime import allow_children, die_with_parent, kill_group, own_group
from nb2flow.runtime.engine.pipe import recv_message, send_message
from nb2flow.runtime.engine.transport import dumps, pack_outcome
from nb2flow.runtime.runners.base import TaskRunner, finish_failed, parse_width

#: seconds a worker gets to exit at the end of a flow run before it is killed
EXIT_GRACE = 5.0


def _worker_main(conn: Any) -> None:
    """A pool worker: run the jobs that come down ``conn`` until it closes.

    A job is ``(payload, upstream outcomes)``, its head the first attempt; the outcome
    goes back with its big buffers beside the pickle (:func:`send_message`), so the
    worker holds its result once while it sends it, and not at all once it is sent."""
    own_group()
    die_with_parent()
    allow_children()  # hard_timeout attempts run in a child process
    # Ctrl-C is the flow process's to handle (it stops us); ours is another process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = threading.Lock()  # a task's own threads may log while it runs

    def send(head: tuple[str, Any], data: bytes | None = None, raws: Sequence[Any] = ()) -> None:
        with lock:
            send_message(conn, head, data, raws)

    while True:
        try:
            first_attempt, job, error = recv_message(conn)
        except (EOFError, OSError):  # the flow process is gone
            return
        if first_attempt is None:  # the flow run is over
            return
        payload = None
        try:
            if error is not None:  # e.g. the task cannot be unpickled here
                raise error
            payload, upstream = job
            job = None
            outcome = execute(payload, upstream, lambda ev: send(("event", ev)), first_attempt)
            upstream = None  # what it read goes before its own result is pickled
        except BaseException as exc:  # noqa: BLE001
            # the exception object itself may not travel: its line and traceback do
            outcome = Outcome.failed(None, error=error_line(exc), traceback=format_traceback(exc))
        error = None
        raws: list[Any] = []
        data = pack_outcome(outcome, payload, raws)
        del outcome  # ``raws`` are views of the result's memory, alive until sent
        send(("outcome", None), data, raws)
        del payload, data, raws


class _Job:
    """A task run waiting for a worker, or on one."""

    __slots__ = ("call", "data", "raws", "first_attempt", "attempt")

    def __init__(
        self, call: TaskCall, data: bytes | None, raws: list[Any], first_attempt: int = 1
    ) -> None:
        self.call = call
        #: the pickled ``(payload, upstream outcomes)`` and its big buffers (views of the
        #: upstream values: they stay alive while the job does); None once sent, unless
        #: the run may start again
        self.data = data
        self.raws = raws
        self.first_attempt = first_attempt
        #: the attempt running now (from its Running events)
        self.attempt = first_attempt


class _Worker:
    __slots__ = ("proc", "conn", "job")

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.job: _Job | None = None


def _death(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ProcessRunner(TaskRunner):
    """A pool of worker processes (``spawn``): CPU-bound Python tasks run in parallel.

    Tasks and arguments are sent with cloudpickle (functions defined in a script or a
    notebook work), results come back pickled. Workers start as work arrives, up to the
    width; each streams its task's events to the flow process, in order, ahead of its
    outcome. See the module docstring for dead workers.
    """

    name = "processes"

    def __init__(self, option: str | None = None) -> None:
        super().__init__(option)
        self.width = parse_width(option, self.name, os.cpu_count() or 1)
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._closing = False
        self._wake: Any = None  # (reader end, writer end): wakes the reader thread
        self._reader: threading.Thread | None = None
        self._ctx: Any = None
        #: workers started and workers that died with a task run (for tests and reports)
        self.stats = {"started": 0, "died": 0}

    def describe(self) -> str:
        return f"processes:{self.width}"

    # -- flow side -----------------------------------------------------------------------

    def start(self) -> None:
        import multiprocessing as mp

        self._reset()
        self._ctx = mp.get_context("spawn")
        self._wake = self._ctx.Pipe(duplex=False)
        self._reader = threading.Thread(target=self._read, name="nb2flow-pool", daemon=True)
        self._reader.start()

    def submit(self, call: TaskCall) -> None:
        raws: list[Any] = []
        data = dumps((call.payload, call.upstream_outcomes()), raws)
        call.release_upstream()  # the job holds what it sends of them, until it is sent
        with self._cond:
            self._queue.append(_Job(call, data, raws))
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand queued jobs to idle workers, starting workers up to the width."""
        while True:
            with self._cond:
                if self._closing or not self._queue:
                    return
                job = self._queue[0]
                if job.call.done:  # cancelled while it waited
                    self._queue.popleft()
                    continue
                if self._idle:
                    worker = self._idle.pop()
                elif len(self._workers) < self.width:
                    try:
                        worker = self._spawn()
                    except Exception as exc:  # noqa: BLE001 - e.g. no more processes allowed
                        self._queue.popleft()
                        job.call.finish(
                            Outcome.crashed(f"cannot start a worker process: {error_line(exc)}")
                        )
                        continue
                else:
                    return
                self._queue.popleft()
                worker.job = job
            try:
                send_message(worker.conn, job.first_attempt, job.data, job.raws)
            except OSError:  # it died while idle: its sentinel tells the reader
                pass
            if not job.call.task.retries:  # only a run that may start again needs its job
                job.data, job.raws = None, []

    def _spawn(self) -> _Worker:
        """Start a worker (the condition's lock is held)."""
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, args=(theirs,), name="nb2flow-worker", daemon=True
        )
        proc.start()
        theirs.close()
        worker = _Worker(proc, ours)
        self._workers.append(worker)
        self.stats["started"] += 1
        self._wake[1].send_bytes(b"")  # the reader waits on the new worker too
        return worker

    def _read(self) -> None:
        """The reader thread: events and outcomes from every worker, and their deaths."""
        from multiprocessing.connection import wait

        wake = self._wake[0]
        while True:
            with self._cond:
                if self._closing and not self._workers:
                    return
                by_conn = {w.conn: w for w in self._workers}
                by_sentinel = {w.proc.sentinel: w for w in self._workers}
            for ready in wait([wake, *by_conn, *by_sentinel]):
                if ready is wake:
                    self._wake[0].recv_bytes()
                elif ready in by_conn:
                    worker = by_conn[ready]
                    try:
                        msg = recv_message(worker.conn)
                    except (EOFError, OSError):
                        self._lost(worker)
                    else:
                        self._handle(worker, *msg)
                        del msg  # waiting for the next one must not keep this value
                else:
                    self._lost(by_sentinel[ready])

    def _handle(
        self, worker: _Worker, head: tuple[str, Any], body: Any, error: BaseException | None
    ) -> None:
        kind, obj = head
        job = worker.job
        if job is None:
            return
        if kind == "event":
            if obj.kind == events.TASK_STATE and obj.data["state"] == RUNNING:
                job.attempt = obj.data["attempt"] or job.attempt
            job.call.flow_run.publish(obj)
            return
        worker.job = None
        with self._cond:
            if worker in self._workers:
                self._idle.append(worker)
            self._cond.notify_all()
        if error is not None:  # e.g. a class the flow process lacks
            finish_failed(job.call, error)
        else:
            job.call.finish(body)
        body = None
        self._dispatch()

    def _lost(self, worker: _Worker) -> None:
        """A worker died: what it sent first counts; its task run, if any, crashed."""
        with self._cond:
            if worker not in self._workers:
                return  # seen already (its pipe and its sentinel both say so)
        try:
            while worker.conn.poll():
                self._handle(worker, *recv_message(worker.conn))
        except (EOFError, OSError):
            pass
        with self._cond:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            job, worker.job = worker.job, None
        worker.conn.close()
        worker.proc.join(EXIT_GRACE)
        if job is not None:
            self.stats["died"] += 1
            self._crashed(job, f"the worker process died ({_death(worker.proc)})")
        with self._cond:
            self._cond.notify_all()
        self._dispatch()

    def _crashed(self, job: _Job, error: str) -> None:
        """The run's worker died: it starts again from its next attempt if the task has
        retries left, else it is Crashed."""
        call = job.call
        task = call.task
        attempt = max(job.attempt, 1)
        if call.done or self._closing or attempt > task.retries or job.data is None:
            call.finish(Outcome.crashed(error, attempt=attempt))
            return
        delay = retry_delay(task, attempt)
        fr = call.flow_run
        fr.publish(
            events.task_state(
                fr.id,
                call.payload.task_run_id,
                RETRYING,
                attempt,
                message=f"{CRASHED} (attempt {attempt} of {task.retries + 1}); "
                f"retrying in {delay:g}s",
                error=error,
                traceback="",
            )
        )
        again = _Job(call, job.data, job.raws, attempt + 1)

        def requeue() -> None:
            with self._cond:
                self._queue.appendleft(again)
            self._dispatch()

        if delay > 0:
            timer = threading.Timer(delay, requeue)
            timer.daemon = True
            timer.start()
        else:
            requeue()

    def shutdown(self, cancel: bool = False) -> None:
        if self._reader is None:
            return
        with self._cond:
            if not cancel:  # the runs still on a worker end first
                self._cond.wait_for(lambda: all(w.job is None for w in self._workers))
            self._closing = True
            self._queue.clear()
            workers = list(self._workers)
        for w in workers:
            if cancel:
                kill_group(w.proc)  # and what its task started
            else:
                try:
                    send_message(w.conn, None)  # no more work: the worker returns
                except OSError:
                    pass
        for w in workers:
            w.proc.join(EXIT_GRACE)
            if w.proc.exitcode is None:
                kill_group(w.proc)
        self._wake[1].send_bytes(b"")
        self._reader.join(EXIT_GRACE)
        self._wake[0].close()
        self._wake[1].close()
        self._reader = None
