"""Task runners: where submitted task runs execute. Registered by name, papermill-style.

The interface (all a new runner implements; subclass :class:`TaskRunner`):

``__init__(self, option: str | None = None)``
    ``option`` is what follows the name in a spec: ``"threads:8"`` gives ``"8"``,
    ``"dask://host:8786"`` gives ``"host:8786"``.
``start()``
    Called once per flow run, before the first submission (open pools here).
``submit(call)``
    Run ``call`` (an :class:`nb2flow.runtime.engine.TaskCall`) and eventually report its
    :class:`~nb2flow.runtime.futures.Outcome` with ``call.finish(outcome)``, from any
    thread. Do not block the caller. What a call offers:

    - ``call.payload``: the picklable :class:`~nb2flow.runtime.attempts.TaskPayload`
      (``payload.with_args(args, kwargs)`` copies it with other arguments, e.g. Refs
      renumbered, keeping every other field);
    - ``call.upstream``: the distinct upstream :class:`~nb2flow.runtime.futures.TaskFuture`
      objects (data and ``wait_for``), in the order the payload's placeholders index;
      ``fut.handle`` is free for the runner (e.g. its own future for that run),
      ``fut.outcome`` is the outcome once final (None before);
    - ``call.upstream_outcomes()``: their outcomes, once they are all final;
    - ``call.run()``: execute here and finish (what local runners do);
    - ``call.future``: the run's own future (set ``call.future.handle`` here).

    Executing elsewhere: call ``nb2flow.runtime.attempts.execute(payload, outcomes, sink)``
    on the executing side. It runs the attempts there (cache, retries, timeouts, NotRun if
    an upstream outcome is not Completed/Cached) and returns an ``Outcome`` that must be
    sent back (it is picklable; :func:`pack_outcome` degrades what cannot be pickled).
    Pass ``sink=None`` to buffer the attempt's events (Running, Retrying, logs) in
    ``outcome.events``; ``call.finish`` publishes them in the flow process in order, then
    the final state. Or stream them live with a sink that forwards each ``RunEvent`` to
    the flow process, where ``call.flow_run.publish(event)`` emits it; in that case every
    streamed event must be published before ``call.finish``.
``shutdown(cancel=False)``
    Called once when the flow run ends (``cancel=True`` on Ctrl-C or a flow timeout:
    drop queued work, do not wait).
``resolves_upstream`` (class attribute, default False)
    False: the engine submits a call only when its upstream runs are final (and marks it
    NotRun itself when one failed). True: the engine submits every call at once, and the
    runner passes the upstream results to the executing side itself (a Dask runner hands
    ``[u.handle for u in call.upstream]`` to ``client.submit`` so results never travel
    through the flow process); ``execute`` then decides NotRun from the outcomes.
``describe()``
    Text recorded as the run's ``task_runner`` (``"threads:8"``).

Register a runner with :func:`register` (a class, a factory, or ``"module:attr"`` imported
on first use); :func:`create` turns a spec (name, ``"name:option"``, instance) into a runner.
"""

from __future__ import annotations

import abc
import importlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from nb2flow.errors import Nb2flowError

DEFAULT = "threads"


class TaskRunner(abc.ABC):
    """Base class of task runners; see the module docstring for the contract."""

    name = "base"
    resolves_upstream = False

    def __init__(self, option: str | None = None) -> None:
        self.option = option

    def start(self) -> None:  # noqa: B027 - optional hook: most runners need no set-up
        """Called once per flow run, before the first submission."""

    @abc.abstractmethod
    def submit(self, call: Any) -> None:
        """Run ``call`` somewhere and report its outcome with ``call.finish`` (never block)."""

    def shutdown(self, cancel: bool = False) -> None:  # noqa: B027 - optional hook
        """Called once when the flow run ends (``cancel``: drop queued work, do not wait)."""

    def describe(self) -> str:
        return self.name if self.option is None else f"{self.name}:{self.option}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def _width(option: str | None, name: str, default: int) -> int:
    if option is None or option == "":
        return default
    try:
        width = int(option)
    except ValueError:
        raise Nb2flowError(f"task runner {name}:{option}: the width must be an integer") from None
    if width < 1:
        raise Nb2flowError(f"task runner {name}:{option}: the width must be at least 1")
    return width


def _finish_failed(call: Any, exc: BaseException) -> None:
    import time

    from nb2flow.runtime.attempts import error_line, format_traceback
    from nb2flow.runtime.futures import Outcome
    from nb2flow.runtime.states import FAILED

    call.finish(
        Outcome(
            FAILED, exc=exc, error=error_line(exc), traceback=format_traceback(exc), ts=time.time()
        )
    )


class SequentialRunner(TaskRunner):
    """Runs each submitted task at once, in the flow's thread (debugging, tiny flows)."""

    name = "sequential"

    def submit(self, call: Any) -> None:
        call.run()


class ThreadRunner(TaskRunner):
    """A pool of daemon worker threads, started as work arrives (up to ``width``).

    Tasks blocked in I/O, numpy, pandas, xgboost... release the GIL and overlap. Workers
    are daemon threads, so a run cancelled with Ctrl-C exits at once even when a task
    cannot be interrupted.
    """

    name = "threads"

    def __init__(self, option: str | None = None) -> None:
        super().__init__(option)
        self.width = _width(option, self.name, min(32, (os.cpu_count() or 1) + 4))
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0

    def describe(self) -> str:
        return f"threads:{self.width}"

    def start(self) -> None:
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._idle = 0

    def submit(self, call: Any) -> None:
        with self._lock:
            # a worker that is idle takes it; otherwise start one while below the width
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = len(self._threads) < self.width
                if spawn:
                    th = threading.Thread(
                        target=self._work, name=f"nb2flow-worker-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(th)
        self._queue.put(call)
        if spawn:
            th.start()

    def _work(self) -> None:
        get, lock = self._queue.get, self._lock
        while True:
            call = get()
            if call is None:
                return
            try:
                call.run()
            except BaseException as exc:  # noqa: BLE001 - a worker must never die with a call
                _finish_failed(call, exc)
            with lock:
                self._idle += 1

    def shutdown(self, cancel: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []


# ---------------------------------------------------------------------------- processes

_worker_queue: Any = None


def _init_worker(q: Any) -> None:
    import signal

    global _worker_queue
    _worker_queue = q
    # Ctrl-C reaches the whole process group: the flow process handles it and stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pack_outcome(outcome: Any, payload: Any = None) -> bytes:
    """cloudpickle an Outcome to send it back, degrading what cannot be pickled.

    The result of a ``nout`` task (``payload.task.nout``) is pickled item by item: an item
    that cannot be is replaced by an :class:`~nb2flow.runtime.futures.Unavailable` marker
    and a WARNING log event naming it rides with the outcome (published before its final
    state). Any other value that cannot be pickled fails the run; an exception that cannot
    be is dropped (its error line and traceback travel)."""
    import cloudpickle

    from nb2flow.runtime.attempts import error_line
    from nb2flow.runtime.futures import Outcome, _type_name, sendable_items, unavailable_warning
    from nb2flow.runtime.states import FAILED

    try:
        return cloudpickle.dumps(outcome)
    except Exception as exc:  # noqa: BLE001
        reason = error_line(exc)
        if not outcome.ok:
            outcome.exc = None
            return cloudpickle.dumps(outcome)
        task = getattr(payload, "task", None)
        name = getattr(task, "name", "?")
        if getattr(task, "nout", None) and type(outcome.value) in (tuple, list):
            value, markers = sendable_items(outcome.value, name)
            if markers:
                events = list(outcome.events or ())
                events += [
                    unavailable_warning(m, payload.flow_run_id, payload.task_run_id)
                    for m in markers
                ]
                degraded = Outcome(
                    outcome.state,
                    value,
                    attempt=outcome.attempt,
                    ts=outcome.ts,
                    message=outcome.message,
                    cached_from=outcome.cached_from,
                    events=events,
                )
                try:
                    return cloudpickle.dumps(degraded)
                except Exception as again:  # noqa: BLE001 - e.g. an event that cannot travel
                    reason = error_line(again)
        return cloudpickle.dumps(
            Outcome(
                FAILED,
                error=f"TypeError: the result of task {name!r} cannot be sent back to the "
                f"flow process ({_type_name(outcome.value)}: {reason})",
                traceback="",
                attempt=outcome.attempt,
                ts=outcome.ts,
                events=outcome.events,
            )
        )


def _run_in_worker(task_run_id: str, blob: bytes) -> None:
    import time

    import cloudpickle

    from nb2flow.runtime.attempts import error_line, execute, format_traceback
    from nb2flow.runtime.futures import Outcome
    from nb2flow.runtime.states import FAILED

    q = _worker_queue
    payload = None
    try:
        payload, upstream = cloudpickle.loads(blob)
        outcome = execute(payload, upstream, lambda ev: q.put(("event", task_run_id, ev)))
    except BaseException as exc:  # noqa: BLE001 - e.g. the task cannot be unpickled here
        outcome = Outcome(
            FAILED, error=error_line(exc), traceback=format_traceback(exc), ts=time.time()
        )
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
        self.width = _width(option, self.name, os.cpu_count() or 1)
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

    def submit(self, call: Any) -> None:
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
        import time

        from nb2flow.runtime.attempts import error_line
        from nb2flow.runtime.futures import Outcome
        from nb2flow.runtime.states import CRASHED

        exc = f.exception()
        call.finish(
            Outcome(
                CRASHED,
                error=f"the worker process died: {error_line(exc)}",
                traceback="",
                ts=time.time(),
            )
        )

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
                _finish_failed(call, exc)
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


# ----------------------------------------------------------------------------- registry

Factory = Callable[[str | None], TaskRunner]

_REGISTRY: dict[str, Factory | str] = {
    "sequential": SequentialRunner,
    "threads": ThreadRunner,
    "processes": ProcessRunner,
    # built by the Dask engineer; imported on first use
    "dask": "nb2flow.runtime.dask_runner:DaskRunner",
}
_ALIASES = {"thread": "threads", "process": "processes", "sync": "sequential", "tcp": "dask"}


def register(name: str, factory: Factory | str) -> None:
    """Register a runner under ``name``: a class or factory taking the option string, or
    ``"module:attr"`` to import on first use."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def _lookup(name: str) -> Factory:
    factory = _REGISTRY.get(_ALIASES.get(name, name))
    if factory is None:
        raise Nb2flowError(
            f"unknown task runner {name!r}; choose one of: {', '.join(names())} "
            "(optionally with a width, e.g. threads:8)"
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise Nb2flowError(f"task runner {name!r} is not available: {exc}") from None
    return factory  # type: ignore[return-value]


def parse(spec: str) -> tuple[str, str | None]:
    """``"threads:8"`` -> ("threads", "8"); ``"dask://h:1"`` -> ("dask", "h:1");
    ``"tcp://h:1"`` -> ("dask", "tcp://h:1")."""
    spec = spec.strip()
    name, sep, option = spec.partition(":")
    name = name.strip().lower()
    if not sep:
        return name, None
    if name == "tcp":
        return "dask", spec
    if option.startswith("//"):
        option = option[2:]
    return name, option or None


def create(spec: Any = None) -> TaskRunner:
    """A runner for one flow run, from a spec: None (``$NB2FLOW_TASK_RUNNER``, else
    threads), a name with an optional option, a TaskRunner class, or an instance (used as
    it is: started and shut down by each run, so not for flows running at the same time)."""
    if spec is None:
        spec = os.environ.get("NB2FLOW_TASK_RUNNER") or DEFAULT
    if isinstance(spec, TaskRunner):
        return spec
    if isinstance(spec, type) and issubclass(spec, TaskRunner):
        return spec()
    if not isinstance(spec, str):
        raise Nb2flowError(f"task_runner must be a name such as 'threads:8', not {spec!r}")
    name, option = parse(spec)
    return _lookup(name)(option)
