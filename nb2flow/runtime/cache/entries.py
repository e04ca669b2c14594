"""Cache entries on disk: lookup, save, listing and clearing.

For tasks with ``cache=True`` or a ``cache_key_fn``, once :func:`~.keys.key_for` gave a key:

- :func:`lookup`: a :class:`Hit` makes the task run Cached, with ``cached_from`` the flow
  run that produced the value;
- :func:`save` after a successful run: the value is serialised to disk *then and there*, so
  a downstream task that mutates the object in place cannot change the stored entry.

``cache_expiration`` (a ``timedelta`` or seconds) bounds an entry's life;
``refresh_cache=True`` (or ``NB2FLOW_REFRESH_CACHE=1``) runs the task even on a hit and
stores the new value.

Storage: ``$NB2FLOW_RESULTS`` if set, else ``$NB2FLOW_HOME/results`` (``~/.nb2flow``): one
directory per key (``results/ab/ab12.../``), holding the value files (see
:mod:`nb2flow.runtime.cache.storage`) and ``meta.json`` (flow, task, size, created, source run),
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
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2flow import settings
from nb2flow.runtime.cache import hashing, storage
from nb2flow.runtime.cache.keys import (
    FORMAT_VERSION,
    expiration_seconds,
    refresh,
    task_name,
    warn,
)
from nb2flow.runtime.core.context import current

META_FILE = "meta.json"
DIR_MODE = 0o700
_TMP = ".tmp"
_TRASH = ".trash"
#: temporary directories older than this belong to a writer that died
_STALE_TMP_SECONDS = 3600


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


# --------------------------------------------------------------------------- paths


def results_dir() -> Path:
    """Where results live: ``$NB2FLOW_RESULTS``, else ``$NB2FLOW_HOME/results``."""
    return settings.results_dir()


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
        warn(f"cache entry {key[:12]} of task {task_name!r} is unreadable ({exc}); running it")
        _discard(path, root)
        return None
    return meta


def lookup(key: str, task: Any = None) -> Hit | None:
    """The stored value for ``key``, or ``None`` (a miss; never raises for a bad entry)."""
    if task is not None and refresh(task):
        return None
    root = results_dir()
    try:
        path = entry_dir(key, root)
    except ValueError:
        return None
    name = task_name(task) if task is not None else "?"
    meta = _usable(path, key, name, root)
    if meta is None:
        return None
    try:
        value = storage.read_value(path)
    except Exception as exc:  # noqa: BLE001 - truncated parquet, bad pickle, missing class...
        warn(
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
    """The flow being run in this thread (None outside runs)."""
    ctx = current()
    return ctx.flow_name if ctx is not None else None


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
    root = results_dir()
    final = entry_dir(key, root)
    name = task_name(task) if task is not None else None
    tmp_root = root / _TMP
    tmp = tmp_root / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    try:
        _private_dir(root)
        _private_dir(tmp_root)
        tmp.mkdir(mode=DIR_MODE)
        try:
            info = storage.write_value(value, tmp)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result is not cached
            warn(
                f"result of task {name!r} is not cached: cannot serialise "
                f"{_culprit(value)} ({type(exc).__name__}: {exc})",
                once_for=(name or "?", "save"),
            )
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        created = time.time()
        expiration = expiration_seconds(task) if task is not None else None
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
        fd = os.open(tmp / META_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, storage.FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        _private_dir(final.parent)
        replace = task is not None and refresh(task)
        return _commit(tmp, final, key, name or "?", root, replace)
    except OSError as exc:  # disk full, read-only home...: the run goes on uncached
        warn(f"result of task {name!r} is not cached: {exc}")
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


def list_entries(
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
    for entry in list_entries(flow=flow, task=task, older_than=older_than, root=root):
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
