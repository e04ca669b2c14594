"""The public API: ``@flow``, ``@task``, ``get_run_logger``, ``run_cli`` (Prefect's names).

>>> @task(nout=2)
... def split(xs):
...     return xs[::2], xs[1::2]
>>> @flow
... def main(n: int = 6):
...     a, b = split.submit(list(range(n)))   # two item futures, no waiting
...     return {"a": a, "b": b}               # futures in the result are resolved
>>> main()
{'a': [0, 2, 4], 'b': [1, 3, 5]}
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from nb2flow.errors import Nb2flowError
from nb2flow.generated import RESERVED_PARAMETERS
from nb2flow.runtime.core.context import RUN, RunContext
from nb2flow.runtime.engine.flow_run import FlowRun, resolve_futures, run_flow
from nb2flow.runtime.engine.futures import (
    FUTURE_TYPES,
    ItemFuture,
    Outcome,
    TaskFuture,
    completed_future,
)
from nb2flow.runtime.engine.setup import setup_arguments
from nb2flow.runtime.observation.logs import get_run_logger
from nb2flow.runtime.runners import registry

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "Flow",
    "FlowRun",
    "Task",
    "TaskFuture",
    "current_flow_name",
    "flow",
    "get_run_context",
    "get_run_logger",
    "run_cli",
    "run_in_folder",
    "task",
    "unmapped",
]


class Task:
    """A function the flow runs as a task run (states, retries, timeouts, cache, logs).

    Called outside a flow (or inside another task), it is the plain function.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float | list[float] = 0,
        timeout_seconds: float | None = None,
        hard_timeout: bool = False,
        cache: bool = False,
        cache_key_fn: Callable[..., Any] | None = None,
        cache_expiration: Any = None,
        refresh_cache: bool = False,
        tags: Iterable[str] | None = None,
        log_prints: bool | None = None,
        nout: int | None = None,
        description: str | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function, not {fn!r}")
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"@task {fn.__name__}: async functions are not supported; use def")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "task"))
        self.retries = int(retries or 0)
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = float(timeout_seconds) if timeout_seconds else None
        #: run each attempt in a child process killed at the timeout (a hard stop)
        self.hard_timeout = bool(hard_timeout)
        self.cache = bool(cache)
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = bool(refresh_cache)
        self.tags = frozenset(tags or ())
        self.log_prints = log_prints
        if nout is not None and (not isinstance(nout, int) or nout < 2):
            raise ValueError(f"task {self.name!r}: nout must be an integer >= 2, not {nout!r}")
        self.nout = nout
        self.description = description or inspect.getdoc(fn)
        code = getattr(fn, "__code__", None)
        #: names of the positional parameters (edge names of futures passed positionally)
        self.argnames: tuple[str, ...] = code.co_varnames[: code.co_argcount] if code else ()
        self._takes_wait_for = (
            code is not None
            and "wait_for" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        )
        self._signature: inspect.Signature | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def with_options(self, **options: Any) -> Task:
        """A copy of the task with some options changed (Prefect's ``with_options``)."""
        current = {
            "name": self.name,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "hard_timeout": self.hard_timeout,
            "cache": self.cache,
            "cache_key_fn": self.cache_key_fn,
            "cache_expiration": self.cache_expiration,
            "refresh_cache": self.refresh_cache,
            "tags": self.tags,
            "log_prints": self.log_prints,
            "nout": self.nout,
            "description": self.description,
        }
        current.update(options)
        return Task(self.fn, **current)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied (for cache keys)."""
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    # -- calling -------------------------------------------------------------------------

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        ctx = RUN.get()
        if ctx is None or ctx.flow_run is None:
            return self.fn(*args, **kwargs)
        wait_for = None
        if "wait_for" in kwargs and not self._takes_wait_for:
            wait_for = kwargs.pop("wait_for")
        return ctx.flow_run.call_task(self, args, kwargs, wait_for)

    def submit(
        self, /, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> TaskFuture:
        """Start a task run and return its future at once. Futures among the arguments
        are resolved first and become edges of the run graph; ``wait_for`` adds ordering
        edges without data. Outside a flow the function runs at once."""
        ctx = RUN.get()
        if ctx is None or ctx.flow_run is None:
            return self._run_now(args, kwargs, wait_for)
        return ctx.flow_run.submit_task(self, args, kwargs, wait_for)

    def map(
        self, /, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> list[TaskFuture]:
        """One task run per item of the iterable arguments (all of the same length; wrap
        an iterable in :func:`unmapped` to pass it whole to every run)."""
        args_l = [_map_source(a) for a in args]
        kwargs_l = {k: _map_source(v) for k, v in kwargs.items()}
        lengths = {len(v) for v in [*args_l, *kwargs_l.values()] if isinstance(v, (list, _Items))}
        if not lengths:
            raise TypeError(f"{self.name}.map() needs at least one iterable argument")
        if len(lengths) > 1:
            raise ValueError(
                f"{self.name}.map(): the iterable arguments have different lengths "
                f"{sorted(lengths)}"
            )
        n = lengths.pop()
        wait = list(wait_for) if wait_for is not None else None
        ctx = RUN.get()
        futures: list[TaskFuture] = []
        key_base = None
        if ctx is not None and ctx.flow_run is not None:
            key_base = ctx.flow_run.next_key(self.name)
        for i in range(n):
            a = tuple(_item(v, i) for v in args_l)
            kw = {k: _item(v, i) for k, v in kwargs_l.items()}
            if ctx is None or ctx.flow_run is None:
                futures.append(self._run_now(a, kw, wait))
            else:
                futures.append(ctx.flow_run.submit_task(self, a, kw, wait, i, key_base))
        return futures

    def _run_now(self, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any) -> TaskFuture:
        for f in wait_for or ():
            if isinstance(f, FUTURE_TYPES):
                f.wait()
        try:
            args = resolve_futures(args)
            kwargs = resolve_futures(kwargs)
            outcome = Outcome.completed(self.fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - reported through the future
            outcome = Outcome.failed(exc)
        return completed_future(self.name, outcome, self.nout)


class unmapped:  # noqa: N801 - Prefect's name
    """Pass a value whole to every run of ``task.map()``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Items:
    """The items of a future's value, as item futures (so each mapped run keeps the edge
    to the run that produced the sequence)."""

    __slots__ = ("future", "n")

    def __init__(self, future: TaskFuture, n: int) -> None:
        self.future, self.n = future, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ItemFuture:
        return ItemFuture(self.future, i)


def _map_source(value: Any) -> Any:
    if isinstance(value, unmapped):
        return value
    if isinstance(value, FUTURE_TYPES):
        result = value.result()  # the number of runs depends on it
        if isinstance(value, TaskFuture) and isinstance(result, (list, tuple, range)):
            return _Items(value, len(result))
        value = result
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        return unmapped(value)
    return list(value)


def _item(source: Any, i: int) -> Any:
    return source.value if isinstance(source, unmapped) else source[i]


class Flow:
    """A function whose calls are flow runs (run name, id, states, task runs, events)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        task_runner: Any = None,
        retries: int = 0,
        retry_delay_seconds: float | list[float] = 0,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
        persist: bool = True,
        keep_outputs: bool | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        setup: Callable[..., Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow needs a function, not {fn!r}")
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"@flow {fn.__name__}: async functions are not supported; use def")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "flow")).replace("_", "-")
        self.task_runner = task_runner
        self.retries = int(retries or 0)
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = float(timeout_seconds) if timeout_seconds else None
        self.log_prints = log_prints
        self.persist = bool(persist)
        #: keep every task run's value in ``FlowRun.outputs`` (None: ``NB2FLOW_KEEP_OUTPUTS``)
        self.keep_outputs = keep_outputs
        self.description = description or inspect.getdoc(fn)
        #: tags of its runs (shown and filtered by ``nb2flow runs``), in order, no repeats
        self.tags: tuple[str, ...] = tuple(dict.fromkeys(str(t) for t in tags or ()))
        self.signature = inspect.signature(fn)
        for reserved in RESERVED_PARAMETERS.intersection(self.signature.parameters):
            raise Nb2flowError(
                f"@flow {fn.__name__}: the parameter name {reserved!r} is taken by the flow "
                f"call ({fn.__name__}(..., return_state=True) returns the run); rename the "
                "parameter"
            )
        if setup is not None and not callable(setup):
            raise TypeError(f"@flow {fn.__name__}: setup must be a function, not {setup!r}")
        #: per-process configuration, run once per flow run in every process running its
        #: code, before it (:mod:`nb2flow.runtime.engine.setup`); its parameters are flow
        #: parameters
        self.setup = setup
        if setup is not None:
            setup_arguments(setup, dict.fromkeys(self.signature.parameters), self.name)

    def __repr__(self) -> str:
        return f"<Flow {self.name}>"

    def with_options(self, **options: Any) -> Flow:
        """A copy of the flow with some options changed (e.g. ``task_runner="processes"``)."""
        current = {
            "name": self.name,
            "task_runner": self.task_runner,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "log_prints": self.log_prints,
            "persist": self.persist,
            "keep_outputs": self.keep_outputs,
            "description": self.description,
            "tags": self.tags,
            "setup": self.setup,
        }
        current.update(options)
        return Flow(self.fn, **current)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's parameters by name, defaults applied (raises TypeError like a call)."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def __call__(self, /, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the flow. Returns its value (futures in a returned dict/list/tuple resolved)
        or, with ``return_state=True``, the :class:`FlowRun`. A failed run raises the
        error of its first failed task (or of the flow body) unless ``return_state``."""
        __tracebackhide__ = True  # noqa: F841 - IPython and pytest hide this frame
        parameters = self.bind(args, kwargs)
        runner = registry.create(self.task_runner)
        return run_flow(self, args, kwargs, parameters, runner, return_state)


@overload
def task(fn: F, /) -> Task: ...
@overload
def task(fn: None = None, /, **options: Any) -> Callable[[F], Task]: ...
def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Decorator making a function a task: ``@task`` or ``@task(name=..., retries=...,
    retry_delay_seconds=..., timeout_seconds=..., hard_timeout=..., cache=...,
    cache_key_fn=..., cache_expiration=..., refresh_cache=..., tags=..., log_prints=...,
    nout=...)``."""
    if fn is None:
        return lambda f: Task(f, **options)
    return Task(fn, **options)


@overload
def flow(fn: F, /) -> Flow: ...
@overload
def flow(fn: None = None, /, **options: Any) -> Callable[[F], Flow]: ...
def flow(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Decorator making a function a flow: ``@flow`` or ``@flow(name=..., task_runner=...,
    retries=..., retry_delay_seconds=..., timeout_seconds=..., log_prints=...,
    persist=..., keep_outputs=..., tags=..., setup=...)``. ``setup``: a function run once per
    flow run in every process that runs the flow's code, before it (process-wide
    configuration); its parameters are flow parameters, passed by name."""
    if fn is None:
        return lambda f: Flow(f, **options)
    return Flow(fn, **options)


def run_cli(
    flow: Flow,
    argv: list[str] | None = None,
    *,
    exit: bool = True,
    prog: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """The command line of a flow script: one ``--option`` per flow parameter, plus
    ``--task-runner/--executor``, ``--quiet``, ``--no-store``, ``--json``, ``--cwd``. Exits
    (or returns, with ``exit=False``) 0 on success, 1 when the flow fails, 130 on Ctrl-C.
    ``cwd``: the folder the flow runs in (default: the current one; ``--cwd DIR`` wins)."""
    from nb2flow.runtime.cli.run import run_cli as _run_cli

    return _run_cli(flow, argv, exit=exit, prog=prog, cwd=cwd)


def run_in_folder(script: str, folder: str) -> str:
    """First call of a generated script's ``__main__`` block: go to the notebook's
    ``folder`` (relative to ``script``, the script's ``__file__``), or to ``--cwd DIR``, so
    the flow resolves relative paths as the notebook does in Jupyter."""
    from nb2flow.runtime.cli.folder import run_in_folder as _run_in_folder

    return _run_in_folder(script, folder)


def get_run_context() -> RunContext | None:
    """The run the calling code belongs to (``flow_run_id``, ``flow_run_name``,
    ``flow_name``, ``task_run_id`` (None in a flow body), ``name``), or None outside runs."""
    return RUN.get()


def current_flow_name() -> str | None:
    """The name of the flow whose run the calling code belongs to (None outside runs)."""
    ctx = RUN.get()
    return ctx.flow_name if ctx is not None else None
