"""A flow's per-process setup: ``@flow(setup=fn)``.

Process-wide configuration (an mlflow tracking URI and experiment, a plotting style, a random
seed, environment variables, warning filters) lives in each process, not in any value a task
passes on. A flow's ``setup`` function holds it (for a generated script: the notebook's
``setup`` cells and the configuration its task cells make); the runtime applies it once per
flow run in every process that runs the flow's code: in the flow process before the body
starts (so the threads and sequential runners have it, and anything it creates on disk exists
before a worker starts), and in each pool or Dask worker before the first task run of that
flow run there. Importing the script (``--help``, ``nb2flow run``, a Dask worker loading it)
never runs it.

``fn``'s parameters are flow parameters, passed by name (``def setup(tracking_uri: str)``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nb2flow.runtime.core.tracebacks import (
    INTERNAL_FILES,
    cell_of,
    code_file,
    error_line,
    restore_code_file,
)

INTERNAL_FILES.add(__file__)  # a setup error's traceback starts at the user's code

#: the flow runs whose setup this process applied
_applied: set[str] = set()
_lock = threading.Lock()


class Setup:
    """``fn(**kwargs)``, applied once per process for the flow run ``key`` (picklable with
    cloudpickle, so it travels with each task payload)."""

    __slots__ = ("fn", "kwargs", "key")

    def __init__(
        self, fn: Callable[..., Any], kwargs: dict[str, Any], key: str, file: str | None = None
    ) -> None:
        restore_code_file(fn, file)  # (unpickled in a worker: its frames name their cell)
        self.fn = fn
        self.kwargs = kwargs
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        fn = self.fn
        return (Setup, (_without_own_globals(fn), self.kwargs, self.key, code_file(fn)))

    def apply(self) -> None:
        """Run ``fn`` unless this process already did for this flow run; its error
        propagates, and a later call tries again."""
        if self.key in _applied:
            return
        with _lock:  # one thread runs it; the others wait for it, then skip it
            if self.key in _applied:
                return
            self.fn(**self.kwargs)
            _applied.add(self.key)


def setup_failure(exc: BaseException) -> str:
    """The one-line error of a setup that raised ``exc``, naming the notebook cell and line
    it failed at when the setup is a generated script's (as a failed task's traceback does):
    ``the flow's setup failed at nb.ipynb, cell 2, line 3: ValueError: ...``."""
    where = cell_of(exc)
    at = f" at {where[0][0]}, cell {where[0][1]}, line {where[0][2]}" if where else ""
    return f"the flow's setup failed{at}: {error_line(exc)}"


def _without_own_globals(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` for pickling by value: without the values, in this process, of the globals it
    binds itself (a file it opened and closed, a client): it binds them again where it runs,
    and they may not pickle. The copy keeps the module's name, so it is pickled like ``fn``."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return fn
    import dis
    import types

    own = {i.argval for i in dis.get_instructions(code) if i.opname == "STORE_GLOBAL"}
    if not own:
        return fn
    namespace = {k: v for k, v in fn.__globals__.items() if k not in own}
    copy = types.FunctionType(code, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    copy.__module__ = fn.__module__
    return copy


def setup_arguments(
    fn: Callable[..., Any], parameters: dict[str, Any], flow_name: str
) -> dict[str, Any]:
    """The flow parameters ``fn`` takes, by name (its other parameters keep their defaults)."""
    import inspect

    kwargs = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in parameters:
            kwargs[name] = parameters[name]
        elif p.default is inspect.Parameter.empty and p.kind not in (
            p.VAR_POSITIONAL,
            p.VAR_KEYWORD,
        ):
            raise TypeError(
                f"@flow {flow_name!r}: setup function {getattr(fn, '__name__', fn)!r} takes "
                f"{name!r}, which is not a parameter of the flow"
            )
    return kwargs
