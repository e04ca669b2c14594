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

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from nb2flow.runtime.core import events
from nb2flow.runtime.core.context import RUN, RunContext
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.exceptions import TaskTimeout, ValueUnavailable
from nb2flow.runtime.core.states import FAILED, OK_STATES, RETRYING, RUNNING, TIMED_OUT
from nb2flow.runtime.core.tracebacks import INTERNAL_FILES, error_line, format_traceback
from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.engine.payload import TaskPayload, TaskSpec, resolve_refs
from nb2flow.runtime.engine.setup import setup_failure
from nb2flow.runtime.engine.timeouts import attempt_in_process, attempt_in_thread
from nb2flow.runtime.observation import artifacts, capture
from nb2flow.runtime.observation.results import summarize_items

INTERNAL_FILES.add(__file__)  # a task's traceback starts at the user's code

Sink = Callable[[RunEvent], None]


def retry_delay(options: Any, attempt: int) -> float:
    """Seconds to wait after failed ``attempt`` (``retry_delay_seconds``: a number, or a
    list whose last entry repeats) of a task or a flow."""
    delay = options.retry_delay_seconds
    if isinstance(delay, (list, tuple)):
        if not delay:
            return 0.0
        return float(delay[min(attempt - 1, len(delay) - 1)])
    return float(delay or 0)


def _check_nout(task: TaskSpec, value: Any) -> None:
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
    sink: Sink | None = None,
    first_attempt: int = 1,
) -> Outcome:
    """Run one task run where it is called, and return its outcome (never raises for a
    task's failure; KeyboardInterrupt propagates).

    ``upstream`` are the outcomes the payload's ``Ref`` placeholders point to, in order; if
    one of them did not complete, the task is NotRun. ``sink`` receives the events of the
    attempts (Running, Retrying, logs); without one they are buffered in the returned
    ``Outcome.events``. The final state event is not emitted here: the flow side publishes
    it in :meth:`TaskCall.finish`, after the buffered events. ``first_attempt`` > 1 goes
    on with a run whose earlier attempts ended elsewhere (a pool worker that died), within
    the same ``retries``.
    """
    buffered: list[RunEvent] | None = None
    if sink is None:
        buffered = []
        sink = buffered.append
    outcome = _TaskRun(payload, sink, first_attempt).run(upstream)
    outcome.events = buffered
    return outcome


class _TaskRun:
    """One task run on the executing side, step by step (as Prefect's task engine): check
    the upstream runs, resolve the inputs, enter the run context, announce Running, look
    the cache up, then attempt, handling each failure (retry, or the final state) and the
    success (save to the cache)."""

    __slots__ = ("payload", "task", "sink", "flow_run_id", "task_run_id", "first_attempt")

    def __init__(self, payload: TaskPayload, sink: Sink, first_attempt: int = 1) -> None:
        self.payload = payload
        self.first_attempt = first_attempt
        self.task = payload.task
        self.sink = sink
        self.flow_run_id = payload.flow_run_id
        self.task_run_id = payload.task_run_id

    # The common path (no upstream values, no cache, one attempt that succeeds) makes as few
    # Python calls as it can: steps it does not need are not entered.

    def run(self, upstream: Sequence[Outcome]) -> Outcome:
        for o in upstream:
            if o.state not in OK_STATES:
                return Outcome.not_run(f"an upstream task run is {o.state}")
        payload = self.payload
        args, kwargs = payload.args, payload.kwargs
        if payload.has_refs:
            try:
                args, kwargs = self.inputs(upstream)
            except ValueUnavailable as exc:  # an upstream item stayed in another process
                return Outcome.failed(exc, attempt=0, traceback="")
        ctx = self.context()
        token = RUN.set(ctx)
        try:
            if payload.setup is not None:
                try:
                    payload.setup.apply()
                except Exception as exc:  # noqa: BLE001 - the run fails, the worker goes on
                    return Outcome.failed(exc, attempt=0, error=setup_failure(exc))
            return self.attempts(args, kwargs)
        finally:
            if ctx.output is not None:
                capture.flush(ctx)  # before the final state, which the flow side publishes
            RUN.reset(token)

    def inputs(self, upstream: Sequence[Outcome]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments, upstream values in place of the payload's Refs."""
        payload = self.payload
        return resolve_refs(payload.args, upstream), resolve_refs(payload.kwargs, upstream)

    def context(self) -> RunContext:
        payload = self.payload
        if not _mlflow_tagging:
            tag_mlflow_runs()
        output = None
        if payload.log_prints:
            capture.ensure_installed()
            output = capture.CAPTURING
        return RunContext(
            self.flow_run_id,
            self.task_run_id,
            self.task.name,
            payload.flow_name,
            self.sink,
            payload.log_prints,
            None,
            payload.flow_run_name,
            output,
        )

    def set_running(self, attempt: int) -> None:
        self.sink(events.task_state(self.flow_run_id, self.task_run_id, RUNNING, attempt))

    def attempts(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        task = self.task
        # Running before the cache lookup, so that a Cached run's start..end covers hashing
        # the inputs and reading the value back
        attempt = self.first_attempt
        self.sink(events.task_state(self.flow_run_id, self.task_run_id, RUNNING, attempt))
        key = None
        if task.cache or task.cache_key_fn is not None:
            hit, key = _cache_lookup(task, args, kwargs)
            if hit is not None:
                outcome = Outcome.cached(hit.value, hit.flow_run_id)
                outcome.result = summarize_items(hit.value, task.nout)
                return outcome
        while True:
            try:
                value = self.call(args, kwargs)
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a task fails the task
                if isinstance(exc, KeyboardInterrupt) and _is_main_thread():
                    raise  # Ctrl-C: the flow cancels the run
                final = self.handle_failure(exc, attempt)
                if final is not None:
                    return final
                attempt += 1
                self.set_running(attempt)
                continue
            if key is not None:  # success: into the cache, then Completed
                self.save_to_cache(key, value)
            outcome = Outcome.completed(value, attempt)
            outcome.result = summarize_items(value, task.nout)
            return outcome

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One attempt: the task's function, within its timeout; its value. With output
        capture, the figures it leaves open are recorded as artifacts and closed."""
        task = self.task
        timeout = task.timeout_seconds
        figures = artifacts.open_figures()
        context = RUN.get()
        if context is not None:  # (the figures a cell boundary in the task records)
            context.figures = figures
        try:
            if timeout is None:
                value = task.fn(*args, **kwargs)
            elif task.hard_timeout:
                value = attempt_in_process(task, args, kwargs, timeout)
            else:
                value = attempt_in_thread(task, args, kwargs, timeout)
        finally:
            if self.payload.log_prints:
                artifacts.capture_figures(figures)
        if task.nout:
            _check_nout(task, value)
        return value

    def handle_failure(self, exc: BaseException, attempt: int) -> Outcome | None:
        """Retrying (announced, then the delay slept; None) or the final Failed/TimedOut."""
        task = self.task
        error, tb = error_line(exc), format_traceback(exc)
        state = TIMED_OUT if isinstance(exc, TaskTimeout) else FAILED
        if attempt > task.retries:
            return Outcome.failed(exc, attempt=attempt, state=state, error=error, traceback=tb)
        delay = retry_delay(task, attempt)
        message = f"{state} (attempt {attempt} of {task.retries + 1}); retrying in {delay:g}s"
        self.sink(
            events.task_state(
                self.flow_run_id,
                self.task_run_id,
                RETRYING,
                attempt,
                message=message,
                error=error,
                traceback=tb,
            )
        )
        if delay > 0:
            time.sleep(delay)
        return None

    def save_to_cache(self, key: str, value: Any) -> None:
        from nb2flow.runtime.cache import entries

        try:
            entries.save(
                key,
                value,
                task=self.task,
                flow_run_id=self.flow_run_id,
                flow_name=self.payload.flow_name,
            )
        except Exception as exc:  # noqa: BLE001 - the value was computed; the run goes on
            message = f"result not cached: {error_line(exc)}"
            self.sink(
                events.log(
                    self.flow_run_id, self.task_run_id, logging.WARNING, message, "nb2flow.cache"
                )
            )


_mlflow_tagging = False


def tag_mlflow_runs() -> None:
    """Once mlflow is imported in this process, make sure it tags the runs started inside
    nb2flow runs (its entry point may be missing: a source checkout, a Dask worker)."""
    global _mlflow_tagging
    if "mlflow.tracking.context.registry" in sys.modules:
        from nb2flow.runtime.observation import mlflow_context

        _mlflow_tagging = mlflow_context.ensure_registered()


def _is_main_thread() -> bool:
    """Ctrl-C only ever arrives in the main thread; a KeyboardInterrupt raised by a task's
    own code in a worker thread is that task's failure."""
    return threading.current_thread() is threading.main_thread()


def _cache_lookup(
    task: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, str | None]:
    from nb2flow.runtime.cache import entries, keys

    key = keys.key_for(task, task.bind(args, kwargs))
    if key is None:
        return None, None
    return entries.lookup(key, task), key
