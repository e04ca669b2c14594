"""The flow side: how a flow run drives its task runs.

:class:`FlowRun` creates task runs (:class:`TaskCall`, whose future the user holds),
records graph edges, hands ready calls to the task runner, and on :meth:`TaskCall.finish`
publishes the final state event and completes the future, which schedules the downstream
calls. Subscribers only ever live in the flow process. The attempts themselves run in
:func:`nb2flow.runtime.engine.attempts.execute`, wherever the runner puts them.

Hot path (one task run): a counter-based id, one scan of the arguments for futures (no
copy unless a future is found), three event tuples (task_run, Running, final state), one
contextvar set/reset. No thread is created per task, nothing is deep-copied.
"""

from __future__ import annotations

import contextvars
import gc
import os
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, cast

from nb2flow import settings
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core import events, ids
from nb2flow.runtime.core.context import RUN, RunContext
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.events import publish as _publish
from nb2flow.runtime.core.exceptions import FlowTimeout, TaskRunError, Terminated
from nb2flow.runtime.core.model import RunView, TaskRunView
from nb2flow.runtime.core.observers import RunStart
from nb2flow.runtime.core.states import (
    CANCELLED,
    COMPLETED,
    CRASHED,
    FAILED,
    NOT_RUN,
    OK_STATES,
    PENDING,
    RETRYING,
    RUNNING,
    TIMED_OUT,
)
from nb2flow.runtime.core.tracebacks import (
    INTERNAL_FILES,
    error_line,
    for_the_user,
    format_traceback,
)
from nb2flow.runtime.engine.attempts import (
    _is_main_thread,
    execute,
    retry_delay,
    tag_mlflow_runs,
)
from nb2flow.runtime.engine.futures import ItemFuture, Outcome, TaskFuture
from nb2flow.runtime.engine.payload import CONTAINERS, Ref, TaskPayload, TaskSpec
from nb2flow.runtime.engine.setup import Setup, setup_arguments, setup_failure
from nb2flow.runtime.observation import capture, hooks
from nb2flow.runtime.observation.results import summarize_return

INTERNAL_FILES.add(__file__)  # a flow body's traceback starts at the user's code

_NO_EDGES: dict[str, list[str]] = {}

#: Freeze the objects that exist when a top-level flow run starts (see run_flow).
FREEZE_GC = True


# ---------------------------------------------------------------------------- flow side


class Runner(Protocol):
    """What the engine needs of a task runner (:class:`~nb2flow.runtime.runners.base.TaskRunner`
    documents the contract)."""

    resolves_upstream: bool

    def start(self) -> None: ...

    def submit(self, call: TaskCall) -> None: ...

    def shutdown(self, cancel: bool = False) -> None: ...

    def describe(self) -> str: ...


class TaskCall:
    """One task run on the flow side: what a task runner is handed.

    Runner-facing attributes: ``payload`` (:class:`TaskPayload`), ``upstream`` (the
    distinct :class:`TaskFuture` objects it waits for, data and ``wait_for``; the payload's
    ``Ref(slot)`` indexes this list), ``future`` (its own future), :meth:`run` (execute
    here, now) and :meth:`finish` (report an outcome).

    Memory: a call holds its future (and so its value) only until it is final, and its
    upstream futures only until it no longer needs their values (:meth:`release_upstream`,
    at the latest when it is final). Afterwards ``final`` keeps the outcome without the
    value: a result lives exactly as long as a reader, the user's future, the flow's
    return value or a cache write still refers to it (see docs/runtime.md, "Memory").
    """

    __slots__ = (
        "flow_run",
        "payload",
        "upstream",
        "started",
        "final",
        "key",
        "_future",
        "_future_ref",
        "_pending",
    )

    def __init__(
        self, flow_run: FlowRun, payload: TaskPayload, upstream: list[TaskFuture], key: str = ""
    ):
        self.flow_run = flow_run
        self.payload = payload
        self.upstream = upstream
        self.started = False
        #: the outcome once final, without its value (``None`` before)
        self.final: Outcome | None = None
        #: the task key (``name``, ``name-2``, ``name[3]``...)
        self.key = key
        self._pending = 0
        self._future_ref: Any = None
        task = payload.task
        self._future: TaskFuture | None = TaskFuture(
            payload.task_run_id, task.name, task.nout, self
        )

    @property
    def task(self) -> TaskSpec:
        return self.payload.task

    @property
    def future(self) -> TaskFuture | None:
        """The run's future: always there until the run is final; afterwards only while
        someone (the user, a downstream call) still holds it, else None."""
        fut = self._future
        if fut is None and self._future_ref is not None:
            return self._future_ref()
        return fut

    @property
    def done(self) -> bool:
        return self.final is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run is final; return whether it is."""
        fut = self._future
        if fut is None:
            return True
        return fut.wait(timeout)

    def release_upstream(self) -> None:
        """Drop the references to the upstream futures (a runner that has sent their values
        elsewhere calls it; :meth:`finish` does it too), so their values can be freed as
        soon as nothing else needs them."""
        self.upstream = ()  # type: ignore[assignment]

    def upstream_outcomes(self) -> Sequence[Outcome]:
        """The upstream outcomes, in slot order (all upstream futures must be done)."""
        if not self.upstream:
            return ()
        outcomes = [u._outcome for u in self.upstream]
        if None in outcomes:
            raise RuntimeError(f"task {self.task.name!r}: an upstream run is not final yet")
        return cast("list[Outcome]", outcomes)

    def run(self) -> None:
        """Execute the task run in the calling thread and finish it (for local runners)."""
        if self.flow_run.cancelled:
            self.finish(Outcome.cancelled("flow run cancelled"))
            return
        self.started = True
        try:
            outcome = execute(self.payload, self.upstream_outcomes(), self.flow_run.publish)
        except BaseException as exc:  # noqa: BLE001 - e.g. bad arguments for a cache key: the
            # run must end, or the flow would wait for it forever
            if isinstance(exc, KeyboardInterrupt) and _is_main_thread():
                raise  # Ctrl-C: the flow marks this run Cancelled
            outcome = Outcome.failed(exc)
        self.finish(outcome)

    def finish(self, outcome: Outcome) -> bool:
        """Publish the outcome's buffered events and final state, then complete the future.

        Returns False if the run was already final (e.g. cancelled while it ran).
        """
        fut = self._future
        if fut is None or not fut._claim():
            return False
        fr = self.flow_run
        publish = fr.publish
        if outcome.events:
            for ev in outcome.events:
                publish(ev)
            outcome.events = None
        publish(
            events.task_state(
                fr.id,
                self.payload.task_run_id,
                outcome.state,
                outcome.attempt,
                message=outcome.message,
                error=outcome.error,
                traceback=outcome.traceback,
                cached_from=outcome.cached_from,
                result=outcome.result,
                ts=outcome.ts,
            )
        )
        # The engine lets go of the value before waking anyone (downstream calls are
        # dispatched from _complete): what this run read, what the user passed it, and
        # its own future, which now lives only as long as someone holds it.
        if outcome.ok:
            if fr.outputs is not None:
                fr.outputs[self.key] = outcome.value
            self.final = _OK_FINAL[outcome.state]
        else:
            self.final = outcome
        self.upstream = ()  # type: ignore[assignment]
        payload = self.payload
        if payload.args or payload.kwargs:
            payload.args, payload.kwargs, payload.has_refs = (), {}, False
        self._future_ref = weakref.ref(fut)
        self._future = None
        fut._complete(outcome)
        return True

    def _upstream_done(self, _fut: Any) -> None:
        with _sched_lock:
            self._pending -= 1
            ready = self._pending == 0
        if ready:
            self.flow_run._dispatch(self)


_sched_lock = threading.Lock()


#: what a finished Completed/Cached call keeps: its state (the engine reads no more of it)
_OK_FINAL = {state: Outcome(state) for state in OK_STATES}


class _Scan:
    """Collects the futures found in a call's arguments (the run's graph edges)."""

    __slots__ = ("ups", "slots", "edges", "name")

    def __init__(self) -> None:
        self.ups: list[TaskFuture] = []
        self.slots: dict[int, int] = {}
        self.edges: dict[str, list[str]] = {}
        self.name: str | None = None

    def ref(self, fut: TaskFuture, item: int | None) -> Ref:
        slot = self.slots.get(id(fut))
        if slot is None:
            slot = self.slots[id(fut)] = len(self.ups)
            self.ups.append(fut)
        if self.name is not None:
            names = self.edges.setdefault(fut.task_run_id, [])
            if self.name not in names:
                names.append(self.name)
        return Ref(slot, item)

    def template(self, obj: Any) -> Any:
        """``obj`` with futures replaced by Refs (the same object when it holds none)."""
        t = type(obj)
        if t is TaskFuture:
            return self.ref(obj, None)
        if t is ItemFuture:
            return self.ref(obj.parent, obj.index)
        if t is dict:
            if _SCANNED.isdisjoint(map(type, obj.values())):  # a C loop: big data stays cheap
                return obj
            return {k: self.template(v) for k, v in obj.items()}
        if t in CONTAINERS:
            if _SCANNED.isdisjoint(map(type, obj)):
                return obj
            return t(self.template(v) for v in obj)
        return obj


class FlowRun:
    """One run of a flow: what ``my_flow(..., return_state=True)`` returns.

    ``id``, ``name`` (adjective-animal), ``flow_name``, ``state``, ``parameters`` (values),
    ``error``/``traceback``, ``start``/``end``/``duration``, ``task_runs`` (task run views
    with states, timings, attempts and errors), :meth:`graph` and :meth:`result`. Its
    ``events`` are the run events it published, in order.
    """

    def __init__(
        self, flow: Any, parameters: dict[str, Any], runner: Runner, parent: RunContext | None
    ) -> None:
        self.id = ids.flow_run_id()
        self.name = ids.run_name()
        self.flow = flow
        self.flow_name: str = flow.name
        self.parameters = parameters
        self.runner = runner
        self.parent_id: str | None = parent.flow_run_id if parent is not None else None
        self.state = PENDING
        self.value: Any = None
        self.exc: BaseException | None = None
        self.error: str | None = None
        self.traceback: str | None = None
        self.cancelled = False
        self.events: list[RunEvent] = []
        self.calls: list[TaskCall] = []
        self._keys: dict[str, int] = {}
        self._runner_started = False
        #: the Nb2flowError the task runner raised when starting (a usage error: the
        #: command line reports it as ``error: ...``, exit 2)
        self.runner_error: Nb2flowError | None = None
        #: whether an observer records this run in the run store (``nb2flow show`` finds it)
        self.recorded = False
        self._view: RunView | None = None
        self._view_len = -1
        #: with ``keep_outputs`` (``@flow(keep_outputs=True)``, ``NB2FLOW_KEEP_OUTPUTS=1``):
        #: every completed task run's value by task key, kept until the FlowRun goes away;
        #: otherwise None (a value lives only while something still needs it)
        self.outputs: dict[str, Any] | None = {} if _keeps_outputs(flow) else None
        #: output capture of the flow body and of tasks that do not choose (``log_prints``)
        self.capture = bool(flow.log_prints) if flow.log_prints is not None else _capture_default()
        #: the flow's per-process setup for this run (each task payload carries it)
        setup_fn = getattr(flow, "setup", None)
        self.setup: Setup | None = None
        if setup_fn is not None:
            kwargs = setup_arguments(setup_fn, parameters, flow.name)
            self.setup = Setup(setup_fn, kwargs, self.id)
        #: the error of the setup in this process, when it failed (the run reports it as such)
        self.setup_error: BaseException | None = None

    # -- events --------------------------------------------------------------------------

    def publish(self, ev: RunEvent) -> None:
        self.events.append(ev)
        _publish(ev)

    # -- what users read -----------------------------------------------------------------

    @property
    def view(self) -> RunView:
        """The run as observers see it (a :class:`~nb2flow.runtime.core.model.RunView`)."""
        if self._view is None or self._view_len != len(self.events):
            self._view_len = len(self.events)
            self._view = RunView.from_events(self.id, list(self.events))
        return self._view

    @property
    def task_runs(self) -> list[TaskRunView]:
        """Task runs in creation order (``TaskRunView``: name, state, attempts, start, end,
        duration, error, traceback, upstream, history)."""
        return list(self.view.tasks.values())

    def task_run(self, name: str) -> TaskRunView:
        """The task run whose key (or else name) is ``name``."""
        runs = self.task_runs
        for t in runs:
            if t.task_key == name:
                return t
        for t in runs:
            if t.name == name:
                return t
        raise KeyError(f"no task run {name!r} in flow run {self.name}")

    def graph(self) -> Any:
        """The task-run graph (networkx DiGraph; edges carry variable ``names``)."""
        return self.view.graph()

    @property
    def start(self) -> float | None:
        return self.view.start

    @property
    def end(self) -> float | None:
        return self.view.end

    @property
    def duration(self) -> float | None:
        return self.view.duration

    def output(self, name: str) -> Any:
        """The value of the task run whose key (or else name) is ``name``; only with
        ``keep_outputs`` (a run without it keeps no task values, only their summaries)."""
        if self.outputs is None:
            raise ValueError(
                f"flow run {self.name} kept no task outputs: run the flow with "
                "keep_outputs=True (or NB2FLOW_KEEP_OUTPUTS=1) to keep them"
            )
        key = self.task_run(name).task_key
        if key not in self.outputs:
            raise KeyError(f"task run {key!r} of flow run {self.name} has no output")
        return self.outputs[key]

    def result(self, raise_on_failure: bool = True) -> Any:
        if self.state in OK_STATES:
            return self.value
        if raise_on_failure and self.exc is not None:
            raise self.exc
        return self.exc

    def __repr__(self) -> str:
        return f"<FlowRun {self.flow_name} {self.name} {self.state}>"

    # -- task runs -----------------------------------------------------------------------

    def next_key(self, name: str) -> str:
        """The stable key of the next run of task ``name`` in this flow run (``name``, then
        ``name-2``, ...; a ``.map()`` takes one for all its runs)."""
        n = self._keys.get(name, 0) + 1
        self._keys[name] = n
        return name if n == 1 else f"{name}-{n}"

    def _new_call(
        self,
        task: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Any,
        map_index: int | None = None,
        key_base: str | None = None,
    ) -> TaskCall:
        scan: _Scan | None = None
        has_refs = False
        # futures among the arguments: rare containers aside, a flat type check per argument
        for a in args:
            if type(a) in _SCANNED:
                scan = _Scan()
                break
        else:
            for a in kwargs.values():
                if type(a) in _SCANNED:
                    scan = _Scan()
                    break
        if scan is not None:
            argnames = task.argnames
            new_args = []
            for i, a in enumerate(args):
                scan.name = argnames[i] if i < len(argnames) else None
                new_args.append(scan.template(a))
            new_kwargs = {}
            for k, a in kwargs.items():
                scan.name = k
                new_kwargs[k] = scan.template(a)
            has_refs = bool(scan.ups)
            if has_refs:
                args, kwargs = tuple(new_args), new_kwargs
        if wait_for:
            if scan is None:
                scan = _Scan()
            scan.name = None
            for f in wait_for:
                if type(f) is ItemFuture:
                    f = f.parent
                if type(f) is TaskFuture and id(f) not in scan.slots:
                    scan.slots[id(f)] = len(scan.ups)
                    scan.ups.append(f)
        trid = ids.task_run_id()
        name = task.name
        if key_base is None:  # next_key(name), inline: the hot path
            n = self._keys.get(name, 0) + 1
            self._keys[name] = n
            key_base = name if n == 1 else f"{name}-{n}"
        task_key = key_base if map_index is None else f"{key_base}[{map_index}]"
        log_prints = task.log_prints if task.log_prints is not None else self.capture
        payload = TaskPayload(
            task,
            self.id,
            trid,
            self.flow_name,
            args,
            kwargs,
            has_refs,
            bool(log_prints),
            self.name,
            self.setup,
        )
        if scan is not None and scan.ups:
            ups: Any = scan.ups
            upstream_ids: Any = [u.task_run_id for u in ups]
            edges = scan.edges
        else:
            ups = upstream_ids = ()
            edges = _NO_EDGES
        call = TaskCall(self, payload, ups, task_key)
        self.calls.append(call)
        self.publish(
            events.task_run(
                self.id,
                trid,
                task_name=name,
                task_key=task_key,
                upstream=upstream_ids,
                edge_names=edges,
                map_index=map_index,
            )
        )
        return call

    def call_task(
        self, task: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any
    ) -> Any:
        """A task called in the flow body: run it here, now; return its value or raise."""
        call = self._new_call(task, args, kwargs, wait_for)
        fut = call.future
        assert fut is not None
        for u in call.upstream:
            u.wait()
        bad = _first_bad(call.upstream)
        if bad is not None:
            call.finish(_not_run(bad))
        else:
            call.run()
        return fut.result()

    def submit_task(
        self,
        task: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Any,
        map_index: int | None = None,
        key_base: str | None = None,
    ) -> TaskFuture:
        if not self._runner_started:
            # before the call exists: a runner that cannot start leaves no run unfinished
            try:
                self.runner.start()
            except Nb2flowError as exc:
                self.runner_error = exc
                raise
            self._runner_started = True
        call = self._new_call(task, args, kwargs, wait_for, map_index, key_base)
        fut = call.future  # the engine lets go of it when the run is final: the user holds it
        assert fut is not None
        ups = call.upstream
        if not ups or self.runner.resolves_upstream:
            self._dispatch(call)
            return fut
        pending = [u for u in ups if u._outcome is None]
        if not pending:
            self._dispatch(call)
            return fut
        call._pending = len(pending)
        for u in pending:
            u.add_done_callback(call._upstream_done)
        return fut

    def _dispatch(self, call: TaskCall) -> None:
        """Hand a call whose upstream runs are final (or a runner resolving them) over."""
        if self.cancelled:
            call.finish(Outcome.cancelled("flow run cancelled"))
            return
        runner = self.runner
        if not runner.resolves_upstream:
            bad = _first_bad(call.upstream)
            if bad is not None:
                call.finish(_not_run(bad))
                return
        call.started = True
        try:
            runner.submit(call)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. arguments that cannot be pickled
            message = f"the {runner.describe()} task runner could not run it"
            call.finish(Outcome.failed(exc, attempt=0, message=message))

    # -- the run -------------------------------------------------------------------------

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Run the flow body (with retries) and settle the run's final state."""
        attempt = 1
        while True:
            self.publish(events.flow_state(self.id, RUNNING))
            first = len(self.calls)
            try:
                value, body_exc, timed_out = self._attempt(args, kwargs, first)
            except KeyboardInterrupt as exc:
                self.cancel(_cancel_message(exc))
                raise
            state, failure, error, tb = self._settle(first, body_exc, timed_out)
            if state == COMPLETED:
                self.state, self.value = COMPLETED, value
                self.publish(events.flow_state(self.id, COMPLETED, result=summarize_return(value)))
                return
            # a timed-out body may still be running: it is not started again
            if attempt <= self.flow.retries and state != TIMED_OUT:
                self._retry(state, attempt, error, tb)
                attempt += 1
                continue
            self.state, self.exc, self.error, self.traceback = state, failure, error, tb
            self.publish(events.flow_state(self.id, state, error=error, traceback=tb))
            return

    def _retry(self, state: str, attempt: int, error: str | None, tb: str | None) -> None:
        """Announce Retrying after failed ``attempt`` and wait the flow's retry delay."""
        delay = retry_delay(self.flow, attempt)
        message = f"{state} (attempt {attempt} of {self.flow.retries + 1}); retrying in {delay:g}s"
        self.publish(
            events.flow_state(self.id, RETRYING, message=message, error=error, traceback=tb)
        )
        try:
            time.sleep(delay)
        except KeyboardInterrupt as exc:
            self.cancel(_cancel_message(exc))
            raise

    def _context(self) -> RunContext:
        tag_mlflow_runs()
        output = None
        if self.capture:
            capture.ensure_installed()
            output = capture.CAPTURING
        return RunContext(
            self.id,
            None,
            self.flow_name,
            self.flow_name,
            self.publish,
            self.capture,
            self,
            self.name,
            output,
        )

    def _body(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ctx = self._context()
        token = RUN.set(ctx)
        try:
            if self.setup is not None:  # here first: before any task, wherever tasks run
                try:
                    self.setup.apply()
                except Exception as exc:
                    self.setup_error = exc
                    raise
            return resolve_futures(self.flow.fn(*args, **kwargs))
        finally:
            if ctx.output is not None:
                capture.flush(ctx)
            RUN.reset(token)

    def _attempt(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], first: int
    ) -> tuple[Any, BaseException | None, bool]:
        """Run the body, then wait for every task run it started. Returns (value, error of
        the body or None, whether the flow's timeout expired)."""
        timeout = self.flow.timeout_seconds
        value: Any = None
        body_exc: BaseException | None = None
        if timeout is None:
            try:
                value = self._body(args, kwargs)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a flow fails the flow
                body_exc = exc
            self._wait_calls(first, None)
            return value, body_exc, False
        deadline = time.monotonic() + timeout
        box: list[tuple[bool, Any]] = []
        done = threading.Event()
        ctx = contextvars.copy_context()

        def target() -> None:
            try:
                box.append((True, ctx.run(self._body, args, kwargs)))
            except BaseException as exc:  # noqa: BLE001
                box.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=target, name=f"nb2flow-flow-{self.name}", daemon=True).start()
        if not done.wait(timeout):
            return None, None, True
        ok, result = box[0]
        if ok:
            value = result
        else:
            body_exc = result
        return value, body_exc, not self._wait_calls(first, deadline)

    def _wait_calls(self, first: int, deadline: float | None) -> bool:
        i = first
        while i < len(self.calls):  # the list may grow while a timed-out body still runs
            call = self.calls[i]
            if deadline is None:
                call.wait()
            elif not call.wait(max(0.0, deadline - time.monotonic())):
                return False
            i += 1
        return True

    def _settle(
        self, first: int, body_exc: BaseException | None, timed_out: bool
    ) -> tuple[str, BaseException | None, str | None, str | None]:
        """Final (state, exception, error line, traceback) of one attempt of the flow."""
        if timed_out:
            t = self.flow.timeout_seconds
            exc = FlowTimeout(f"flow {self.flow_name!r} timed out after {t:g}s")
            # the body may still be running in its thread: what it submits now is cancelled
            self.cancelled = True
            self._cancel_calls(f"flow timed out after {t:g}s")
            return TIMED_OUT, exc, error_line(exc), None
        failed: tuple[TaskCall, Outcome] | None = None
        not_run: tuple[TaskCall, Outcome] | None = None
        for call in self.calls[first:]:
            o = call.final
            if o is None or o.state in OK_STATES:
                continue
            if o.state == NOT_RUN:
                not_run = not_run or (call, o)
            elif failed is None:
                failed = (call, o)
        if body_exc is None and failed is None and not_run is None:
            return COMPLETED, None, None, None
        own_error = (
            body_exc is not None
            and not isinstance(body_exc, TaskRunError)
            and (failed is None or body_exc is not failed[1].exc)
        )
        if own_error or (failed is None and not_run is None):
            assert body_exc is not None
            said = setup_failure if body_exc is self.setup_error else error_line
            return FAILED, body_exc, said(body_exc), format_traceback(body_exc)
        culprit = failed or not_run
        assert culprit is not None
        call, o = culprit
        what = {
            TIMED_OUT: "timed out",
            NOT_RUN: "did not run",
            CRASHED: "crashed",
            CANCELLED: "was cancelled",
        }.get(o.state, "failed")
        error = f"task {self._key_of(call)!r} {what}: {o.error or o.message}"
        return FAILED, o.exception(), error, o.traceback

    def _key_of(self, call: TaskCall) -> str:
        trid = call.payload.task_run_id
        for ev in self.events:
            if ev.kind == "task_run" and ev.task_run_id == trid:
                return ev.data.get("task_key", call.task.name)
        return call.task.name

    def _cancel_calls(self, message: str) -> None:
        for call in list(self.calls):
            if call.final is None:
                call.finish(Outcome.cancelled(message))

    def cancel(self, message: str) -> None:
        """Cancel the run: task runs not final become Cancelled (running threads cannot be
        stopped: their results are dropped), then the flow is Cancelled."""
        self.cancelled = True
        self._cancel_calls(message)
        self.state = CANCELLED
        self.error = message
        self.exc = KeyboardInterrupt()
        self.publish(events.flow_state(self.id, CANCELLED, message=message))


_SCANNED = frozenset({TaskFuture, ItemFuture, list, tuple, dict, set, frozenset})


def _keeps_outputs(flow: Any) -> bool:
    keep = getattr(flow, "keep_outputs", None)
    return settings.keep_outputs() if keep is None else bool(keep)


def _cancel_message(exc: KeyboardInterrupt) -> str:
    if isinstance(exc, Terminated):
        return "cancelled: the process received SIGTERM"
    return "cancelled by the user (Ctrl-C)"


def _first_bad(upstream: list[TaskFuture]) -> TaskFuture | None:
    for u in upstream:
        o = u._outcome
        if o is not None and o.state not in OK_STATES:
            return u
    return None


def _not_run(bad: TaskFuture) -> Outcome:
    o = bad._outcome
    state = o.state if o is not None else "?"
    return Outcome.not_run(f"upstream task {bad.name!r} is {state}")


def resolve_futures(value: Any) -> Any:
    """``value`` with the futures in it (at any depth of dict/list/tuple/set) replaced by
    their results; raises the first failed one's error."""
    t = type(value)
    if t is TaskFuture or t is ItemFuture:
        return value.result()
    if t is dict:
        if _SCANNED.isdisjoint(map(type, value.values())):
            return value
        return {k: resolve_futures(v) for k, v in value.items()}
    if t in CONTAINERS:
        if _SCANNED.isdisjoint(map(type, value)):
            return value
        return t(resolve_futures(v) for v in value)
    return value


# ------------------------------------------------------------------------- flow entry


def run_flow(
    flow: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    parameters: dict[str, Any],
    runner: Runner,
    return_state: bool,
) -> Any:
    """Call a flow (``parameters``: the call's arguments bound by name): create the run,
    attach the hooks, run it on ``runner``, return its value (or the :class:`FlowRun` with
    ``return_state=True``); raise its error when it failed."""
    parent = RUN.get()
    top = parent is None
    fr = FlowRun(flow, parameters, runner, parent)
    attached = hooks.attach(RunStart(fr.id, fr.name, fr.flow_name, flow.persist)) if top else []
    fr.recorded = any(a.records for a in attached)
    fr.publish(
        events.flow_run(
            fr.id,
            flow_name=flow.name,
            run_name=fr.name,
            parameters={k: _short_repr(v) for k, v in parameters.items()},
            pid=os.getpid(),
            task_runner=runner.describe(),
            parent_flow_run_id=fr.parent_id,
            persist=flow.persist,
            script=_script_of(flow),
            cwd=_cwd(),
            tags=getattr(flow, "tags", ()),
        )
    )
    # The objects alive before the run (modules, the user's data) need no garbage-collector
    # passes while it runs: freezing them makes each collection scan only the run's own
    # objects. Skipped when the program froze objects itself (we would unfreeze them).
    frozen = top and FREEZE_GC and gc.get_freeze_count() == 0
    if frozen:
        gc.freeze()
    try:
        fr.run(args, kwargs)
    finally:
        if frozen:
            gc.unfreeze()
        try:
            if fr._runner_started:
                runner.shutdown(cancel=fr.cancelled or fr.state == TIMED_OUT)
        finally:
            hooks.detach(attached)
    if return_state:
        return fr
    if fr.state in OK_STATES:
        return fr.value
    assert fr.exc is not None
    __tracebackhide__ = True  # noqa: F841 - IPython and pytest hide this frame
    raise for_the_user(fr.exc)


def _capture_default() -> bool:
    """Output capture for a flow that does not choose: ``NB2FLOW_CAPTURE``, else on inside a
    Jupyter kernel (the panel shows what the notebook would have) and off elsewhere (a plain
    Python program keeps its prints on stdout; ``run_cli`` turns it on for its scripts)."""
    chosen = settings.capture()
    if chosen is not None:
        return chosen
    if "ipykernel" not in sys.modules:
        return False
    ip = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return getattr(ip, "kernel", None) is not None


def _script_of(flow: Any) -> str:
    """The file the flow is defined in (absolute), or in a notebook the notebook's path
    (Jupyter tells the kernel as ``JPY_SESSION_NAME``)."""
    code = getattr(flow.fn, "__code__", None)
    filename = code.co_filename if code is not None else ""
    if not filename or filename.startswith("<") or "ipykernel_" in filename:
        return os.environ.get("JPY_SESSION_NAME", "")
    return os.path.abspath(filename)


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed under the process
        return ""


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
