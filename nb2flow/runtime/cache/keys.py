"""Cache keys: what one call of a cached task is keyed on.

The runtime calls :func:`key_for` before the task runs (so the key describes the inputs as
they were, whatever the task does to them in place). The default key hashes the task's code
(its source as generated, its bytecode, and the module-level helpers it calls, transitively;
see :mod:`nb2flow.runtime.cache.hashing`) and its input values.
``cache_key_fn(context, arguments)`` (Prefect's signature) replaces that; returning ``None``
means "do not cache this call". ``NB2FLOW_CACHE=off`` turns caching off for every task.

A key that cannot be computed is a warning, never an error: a WARNING log event of the task
run (logger ``nb2flow.cache``) inside a run, a :class:`CacheWarning` outside one.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nb2flow import settings
from nb2flow.runtime.cache import hashing
from nb2flow.runtime.core import events
from nb2flow.runtime.core.context import current

#: bumped when the layout of keys or entries changes (old entries are then never looked up)
FORMAT_VERSION = 2
#: the ``logger`` of the run log events cache warnings become inside a run
LOGGER = "nb2flow.cache"


class CacheWarning(UserWarning):
    """A cache entry could not be used or written; the task runs (or ran) normally."""


@dataclass(frozen=True)
class CacheContext:
    """What a ``cache_key_fn(context, arguments)`` receives besides the arguments."""

    task: Any
    task_name: str
    fn: Callable[..., Any]

    @property
    def code_digest(self) -> str:
        """Digest of the task's code and the module-level helpers it calls."""
        return hashing.code_closure_digest(self.fn)


def task_fn(task: Any) -> Callable[..., Any]:
    fn = getattr(task, "fn", None)
    return fn if callable(fn) else task


def task_name(task: Any) -> str:
    name = getattr(task, "name", None)
    if isinstance(name, str) and name:
        return name
    fn = task_fn(task)
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def expiration_seconds(task: Any) -> float | None:
    value = getattr(task, "cache_expiration", None)
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def refresh(task: Any) -> bool:
    return bool(getattr(task, "refresh_cache", False)) or settings.refresh_cache()


_warned_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()


def warn(message: str, once_for: tuple[str, str] | None = None) -> None:
    """Inside a flow or task run: a WARNING log event of that run (terminal, store, panel
    show it). Elsewhere: a :class:`CacheWarning` (``once_for`` shows it once per process)."""
    ctx = current()
    if ctx is not None:
        ctx.sink(events.log(ctx.flow_run_id, ctx.task_run_id, logging.WARNING, message, LOGGER))
        return
    if once_for is not None:
        with _warned_lock:
            if once_for in _warned:
                return
            _warned.add(once_for)
    warnings.warn(message, CacheWarning, stacklevel=3)


def _finish_key(*parts: str) -> str:
    h = hashing.new_hasher()
    hashing.feed(h, (f"nb2flow-cache/{FORMAT_VERSION}/{hashing.HASH_NAME}", *parts))
    return h.hexdigest()


def task_input_hash(context: CacheContext, arguments: Mapping[str, Any]) -> str:
    """The default key: the task's code (with its helpers) and its input values.

    Usable from a custom ``cache_key_fn`` that wants to add something to the default.
    """
    h = hashing.new_hasher()
    hashing.feed(h, context.code_digest)
    for name, value in arguments.items():
        hashing.feed(h, name)
        try:
            hashing.feed(h, value)
        except hashing.Unhashable as exc:
            raise hashing.Unhashable(f"argument {name!r}: {exc}") from exc
        stamp = file_stamp(value)
        if stamp is not None:
            hashing.feed(h, stamp)
    return h.hexdigest()


def file_stamp(value: Any) -> tuple[str, int, int] | None:
    """``("file", size, mtime_ns)`` when ``value`` (a str or path) names an existing file.

    Notebook tasks take file paths as parameters (``read_dataframe(train_path)``): keyed on
    the name alone, a task would return the old data after the file was regenerated.
    """
    if isinstance(value, str):
        if not value or len(value) > 4096 or "\n" in value or "\0" in value:
            return None
    elif not isinstance(value, os.PathLike):
        return None
    try:
        st = os.stat(value)
    except (OSError, ValueError, TypeError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return ("file", st.st_size, st.st_mtime_ns)


def key_for(task: Any, bound_arguments: Mapping[str, Any]) -> str | None:
    """The cache key of one call of ``task``, or ``None`` when this call is not cached.

    Must be called before the task runs. Inputs that cannot be hashed (neither pickle nor
    cloudpickle can serialise them), and errors raised by a custom ``cache_key_fn``, give
    ``None`` with a :class:`CacheWarning`: the task runs uncached, the flow goes on.
    """
    if not settings.cache_enabled():
        return None
    key_fn = getattr(task, "cache_key_fn", None)
    if key_fn is None and not getattr(task, "cache", False):
        return None
    name = task_name(task)
    context = CacheContext(task=task, task_name=name, fn=task_fn(task))
    try:
        if key_fn is not None:
            custom = key_fn(context, dict(bound_arguments))
            if custom is None:
                return None
            # namespaced by task: two tasks returning the same custom key never share a value
            return _finish_key("custom", name, str(custom))
        return _finish_key("default", name, task_input_hash(context, bound_arguments))
    except hashing.Unhashable as exc:
        warn(f"task {name!r} runs uncached: {exc}", once_for=(name, "unhashable"))
    except Exception as exc:  # noqa: BLE001 - a bug in cache_key_fn must not stop the flow
        warn(
            f"task {name!r} runs uncached: its cache key could not be computed "
            f"({type(exc).__name__}: {exc})",
            once_for=(name, "keyfn"),
        )
    return None
