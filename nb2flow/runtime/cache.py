"""Task result caching: keys, lookup, persistence, listing and clearing.

The runtime calls three functions for tasks with ``cache=True`` or a ``cache_key_fn``:

- :func:`key_for` before the task runs (so the key describes the inputs as they were,
  whatever the task does to them in place);
- :func:`lookup`: a :class:`Hit` makes the task run Cached, with ``cached_from`` the flow
  run that produced the value;
- :func:`save` after a successful run: the value is serialised to disk *then and there*, so
  a downstream task that mutates the object in place cannot change the stored entry.

The default key hashes the task's code (its source as generated, its bytecode, and the
module-level helpers it calls, transitively; see :mod:`nb2flow.runtime.hashing`) and its
input values. ``cache_key_fn(context, arguments)`` (Prefect's signature) replaces that;
returning ``None`` means "do not cache this call". ``cache_expiration`` (a ``timedelta`` or
seconds) bounds an entry's life; ``refresh_cache=True`` (or ``NB2FLOW_REFRESH_CACHE=1``)
runs the task even on a hit and stores the new value. ``NB2FLOW_CACHE=off`` turns caching
off for every task.

Storage: ``$NB2FLOW_RESULTS`` if set, else ``$NB2FLOW_HOME/results`` (``~/.nb2flow``): one
directory per key (``results/ab/ab12.../``), holding the value files (see
:mod:`nb2flow.runtime.results`) and ``meta.json`` (flow, task, size, created, source run),
which is the index ``nb2flow cache ls`` reads. Directories are 0700 and files 0600. An entry
is written into a private temporary directory and renamed into place, so readers see a
whole entry or none, and of two processes filling the same key at once, both succeed and
one entry remains. A corrupt or unreadable entry is a miss with a warning: a WARNING log
event of the task run (logger ``nb2flow.cache``) inside a run, a :class:`CacheWarning`
outside one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from nb2flow.runtime import hashing

FORMAT_VERSION = 1
META_FILE = "meta.json"
DIR_MODE = 0o700
#: the ``logger`` of the run log events cache warnings become inside a run
LOGGER = "nb2flow.cache"
_TMP = ".tmp"
_TRASH = ".trash"
#: temporary directories older than this belong to a writer that died
_STALE_TMP_SECONDS = 3600


class CacheWarning(UserWarning):
    """A cache entry could not be used or written; the task runs (or ran) normally."""


@dataclass(frozen=True)
class Hit:
    value: Any
    flow_run_id: str | None
    key: str
    created: float


@dataclass(frozen=True)
class Entry:
    """One stored result, as ``nb2flow cache ls`` lists it."""

    key: str
    path: Path
    flow: str | None
    task: str | None
    size: int
    created: float
    flow_run_id: str | None
    expires: float | None
    serializer: str

    @property
    def expired(self) -> bool:
        return self.expires is not None and time.time() >= self.expires


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


# --------------------------------------------------------------------------- paths


def results_dir() -> Path:
    """Where results live: ``$NB2FLOW_RESULTS``, else ``$NB2FLOW_HOME/results``."""
    custom = os.environ.get("NB2FLOW_RESULTS")
    if custom:
        return Path(custom).expanduser()
    from nb2flow.store.db import home  # the one definition of $NB2FLOW_HOME

    return home() / "results"


def _valid_key(key: str) -> bool:
    return bool(key) and len(key) <= 128 and all(c in "0123456789abcdef" for c in key)


def entry_dir(key: str, root: Path | None = None) -> Path:
    if not _valid_key(key):
        raise ValueError(f"not a cache key: {key!r}")
    return (root or results_dir()) / key[:2] / key


def _private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, DIR_MODE)


# --------------------------------------------------------------------------- task options


def _task_fn(task: Any) -> Callable[..., Any]:
    fn = getattr(task, "fn", None)
    return fn if callable(fn) else task


def _task_name(task: Any) -> str:
    name = getattr(task, "name", None)
    if isinstance(name, str) and name:
        return name
    fn = _task_fn(task)
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _expiration_seconds(task: Any) -> float | None:
    value = getattr(task, "cache_expiration", None)
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _refresh(task: Any) -> bool:
    return bool(getattr(task, "refresh_cache", False)) or os.environ.get(
        "NB2FLOW_REFRESH_CACHE", ""
    ).lower() in ("1", "true", "yes", "on")


def _disabled() -> bool:
    return os.environ.get("NB2FLOW_CACHE", "").lower() in ("0", "off", "false", "no")


_warned_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()


def _warn(message: str, once_for: tuple[str, str] | None = None) -> None:
    """Inside a flow or task run: a WARNING log event of that run (terminal, store, panel
    show it). Elsewhere: a :class:`CacheWarning` (``once_for`` shows it once per process)."""
    engine = sys.modules.get("nb2flow.runtime.engine")
    ctx = engine.current() if engine is not None else None
    if ctx is not None:
        from nb2flow.runtime.events import RunEvent

        data = {"level": 30, "levelname": "WARNING", "message": message, "logger": LOGGER}
        ctx.sink(RunEvent("log", time.time(), ctx.flow_run_id, ctx.task_run_id, data))
        return
    if once_for is not None:
        with _warned_lock:
            if once_for in _warned:
                return
            _warned.add(once_for)
    warnings.warn(message, CacheWarning, stacklevel=3)


# --------------------------------------------------------------------------- keys


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
    if _disabled():
        return None
    key_fn = getattr(task, "cache_key_fn", None)
    if key_fn is None and not getattr(task, "cache", False):
        return None
    name = _task_name(task)
    context = CacheContext(task=task, task_name=name, fn=_task_fn(task))
    try:
        if key_fn is not None:
            custom = key_fn(context, dict(bound_arguments))
            if custom is None:
                return None
            # namespaced by task: two tasks returning the same custom key never share a value
            return _finish_key("custom", name, str(custom))
        return _finish_key("default", name, task_input_hash(context, bound_arguments))
    except hashing.Unhashable as exc:
        _warn(f"task {name!r} runs uncached: {exc}", once_for=(name, "unhashable"))
    except Exception as exc:  # noqa: BLE001 - a bug in cache_key_fn must not stop the flow
        _warn(
            f"task {name!r} runs uncached: its cache key could not be computed "
            f"({type(exc).__name__}: {exc})",
            once_for=(name, "keyfn"),
        )
    return None


# --------------------------------------------------------------------------- entries


def _read_meta(path: Path) -> dict[str, Any]:
    with open(path / META_FILE, encoding="utf-8") as f:
        meta = json.load(f)
    if not isinstance(meta, dict):
        raise ValueError("meta.json is not an object")
    return meta


def _discard(path: Path, root: Path) -> None:
    """Remove an entry directory; first renamed aside so nobody sees half of it."""
    trash = root / _TRASH
    try:
        _private_dir(trash)
        aside = trash / f"{path.name}.{uuid.uuid4().hex}"
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else removed it
    except OSError:
        aside = path
    shutil.rmtree(aside, ignore_errors=True)


def _entry_from_meta(path: Path, meta: dict[str, Any]) -> Entry:
    return Entry(
        key=path.name,
        path=path,
        flow=meta.get("flow"),
        task=meta.get("task"),
        size=int(meta.get("size") or 0),
        created=float(meta.get("created") or 0.0),
        flow_run_id=meta.get("flow_run_id"),
        expires=meta.get("expires"),
        serializer=str(meta.get("serializer") or "?"),
    )


def _usable(path: Path, key: str, task_name: str, root: Path) -> dict[str, Any] | None:
    """The entry's metadata if it can be used; a stale or broken entry is removed."""
    if not path.is_dir():
        return None
    try:
        meta = _read_meta(path)
        if meta.get("version") != FORMAT_VERSION:  # written by another nb2flow version
            _discard(path, root)
            return None
        expires = meta.get("expires")
        if expires is not None and time.time() >= float(expires):
            _discard(path, root)
            return None
        meta["created"] = float(meta.get("created") or 0.0)
        flow_run_id = meta.get("flow_run_id")
        if flow_run_id is not None and not isinstance(flow_run_id, str):
            raise ValueError(f"flow_run_id is a {type(flow_run_id).__name__}")
    except (OSError, ValueError, TypeError) as exc:
        _warn(f"cache entry {key[:12]} of task {task_name!r} is unreadable ({exc}); running it")
        _discard(path, root)
        return None
    return meta


def lookup(key: str, task: Any = None) -> Hit | None:
    """The stored value for ``key``, or ``None`` (a miss; never raises for a bad entry)."""
    if task is not None and _refresh(task):
        return None
    root = results_dir()
    try:
        path = entry_dir(key, root)
    except ValueError:
        return None
    name = _task_name(task) if task is not None else "?"
    meta = _usable(path, key, name, root)
    if meta is None:
        return None
    from nb2flow.runtime import results

    try:
        value = results.read_value(path)
    except Exception as exc:  # noqa: BLE001 - truncated parquet, bad pickle, missing class...
        _warn(
            f"cache entry {key[:12]} of task {name!r} is unreadable "
            f"({type(exc).__name__}: {exc}); running the task"
        )
        _discard(path, root)
        return None
    return Hit(
        value=value,
        flow_run_id=meta.get("flow_run_id"),
        key=key,
        created=meta["created"],
    )


def _current_flow_name() -> str | None:
    """The flow being run in this thread, asked of the runtime when it can tell."""
    api = sys.modules.get("nb2flow.runtime.api")
    for attr in ("current_flow_name", "_current_flow_name"):
        fn = getattr(api, attr, None)
        if callable(fn):
            try:
                return fn()
            except Exception:  # noqa: BLE001
                return None
    return None


def save(
    key: str,
    value: Any,
    *,
    task: Any = None,
    flow_run_id: str | None = None,
    flow_name: str | None = None,
) -> Path | None:
    """Persist ``value`` under ``key`` now (before anyone can mutate it).

    Returns the entry directory, or ``None`` when the value could not be stored (a
    warning says why; the run itself is not affected). When another process stored the
    same key first, its entry is kept and this one dropped: both succeed. With
    ``refresh_cache`` the new value replaces the stored one.
    """
    from nb2flow.runtime import results

    root = results_dir()
    final = entry_dir(key, root)
    name = _task_name(task) if task is not None else None
    tmp_root = root / _TMP
    tmp = tmp_root / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    try:
        _private_dir(root)
        _private_dir(tmp_root)
        tmp.mkdir(mode=DIR_MODE)
        try:
            info = results.write_value(value, tmp)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result is not cached
            _warn(
                f"result of task {name!r} is not cached: cannot serialise "
                f"{_culprit(value)} ({type(exc).__name__}: {exc})",
                once_for=(name or "?", "save"),
            )
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        created = time.time()
        expiration = _expiration_seconds(task) if task is not None else None
        meta = {
            "version": FORMAT_VERSION,
            "key": key,
            "flow": flow_name or _current_flow_name(),
            "task": name,
            "flow_run_id": flow_run_id,
            "created": created,
            "expires": created + expiration if expiration is not None else None,
            "hash": hashing.HASH_NAME,
            **info,
        }
        fd = os.open(tmp / META_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, results.FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        _private_dir(final.parent)
        replace = task is not None and _refresh(task)
        return _commit(tmp, final, key, name or "?", root, replace)
    except OSError as exc:  # disk full, read-only home...: the run goes on uncached
        _warn(f"result of task {name!r} is not cached: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)
        return None


def _culprit(value: Any) -> str:
    """Which part of a result cannot be pickled: ``item 0 of the tuple (a DMatrix)``."""
    import cloudpickle

    described = f"a {type(value).__qualname__}"
    if type(value) in (tuple, list):
        items: Any = enumerate(value)
    elif type(value) is dict:
        items = value.items()
    else:
        return described
    for k, item in items:
        try:
            cloudpickle.dumps(item, protocol=5, buffer_callback=lambda b: None)
        except Exception:  # noqa: BLE001 - looking for the one that fails
            return f"{'item' if type(value) is not dict else 'key'} {k!r} of {described} " + (
                f"(a {type(item).__qualname__})"
            )
    return described


def _commit(tmp: Path, final: Path, key: str, name: str, root: Path, replace: bool) -> Path | None:
    for _ in range(5):
        try:
            os.rename(tmp, final)  # atomic; fails if another writer's entry is there
            return final
        except OSError:
            if not final.exists():
                continue  # it was just discarded: try again
            if replace:  # refresh_cache: the new value replaces the stored one
                _discard(final, root)
                replace = False  # once: a concurrent writer's fresh entry then wins
                continue
            if _usable(final, key, name, root) is not None:
                shutil.rmtree(tmp, ignore_errors=True)  # the other writer won: same value
                return final
            # the old entry was stale or broken and has been discarded: try again
    shutil.rmtree(tmp, ignore_errors=True)
    return final if final.exists() else None


def _iter_entry_dirs(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for shard in sorted(root.iterdir()):
        if shard.name.startswith(".") or not shard.is_dir():
            continue
        for path in sorted(shard.iterdir()):
            if path.is_dir() and _valid_key(path.name):
                yield path


def entries(
    flow: str | None = None,
    task: str | None = None,
    older_than: float | None = None,
    root: Path | None = None,
) -> list[Entry]:
    """Stored entries, oldest first, filtered by flow name, task name and age (seconds).

    An entry whose metadata cannot be read is listed with ``flow``/``task`` ``None`` and
    its size on disk, so that ``clear`` can reclaim it.
    """
    root = root or results_dir()
    now = time.time()
    out = []
    for path in _iter_entry_dirs(root):
        try:
            entry = _entry_from_meta(path, _read_meta(path))
        except (OSError, ValueError, TypeError):
            try:
                size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
                mtime = path.stat().st_mtime
            except OSError:  # removed meanwhile by another process
                continue
            entry = Entry(path.name, path, None, None, size, mtime, None, None, "broken")
        if flow is not None and entry.flow != flow:
            continue
        if task is not None and entry.task != task:
            continue
        if older_than is not None and now - entry.created < older_than:
            continue
        out.append(entry)
    out.sort(key=lambda e: e.created)
    return out


def clear(
    flow: str | None = None,
    task: str | None = None,
    older_than: float | None = None,
    root: Path | None = None,
) -> tuple[int, int]:
    """Remove matching entries (and leftovers of crashed writers). Returns (count, bytes)."""
    root = root or results_dir()
    removed = freed = 0
    for entry in entries(flow=flow, task=task, older_than=older_than, root=root):
        _discard(entry.path, root)
        removed += 1
        freed += entry.size
    now = time.time()
    for leftovers, min_age in ((root / _TMP, _STALE_TMP_SECONDS), (root / _TRASH, 0)):
        if not leftovers.is_dir():
            continue
        for path in leftovers.iterdir():
            try:
                if now - path.stat().st_mtime >= min_age:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
    return removed, freed
