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
:mod:`nb2flow.runtime.cache.storage`) and ``meta.json``, the entry's manifest: flow, task,
size, created, source run, the SHA-256 digest of every file, and an HMAC-SHA256 of all of
that under a secret key kept in ``$NB2FLOW_HOME/cache.key`` (created 0600, per home). An
entry is written into a private temporary directory and renamed into place, so readers see
a whole entry or none, and of two processes filling the same key at once, both succeed and
one entry remains.

Trust (see ``docs/security.md``): nothing is unpickled unless

1. the entry, its files and every folder up to the results root belong to the user (or
   root), are not writable by group or others and are not symbolic links (as ssh checks
   ``~/.ssh``) -- otherwise the cache there is not used, with one warning;
2. its manifest's HMAC is right (only a process holding the key wrote it) -- otherwise the
   folder is moved aside to ``results/.quarantine/`` (never deleted) and the task runs;
3. every file has the digest the manifest records -- otherwise the entry, which nb2flow
   wrote but which was damaged since, is removed, the task runs and the entry is rewritten.

A corrupt or unusable entry is a miss with a warning: a WARNING log event of the task run
(logger ``nb2flow.cache``) inside a run, a :class:`CacheWarning` outside one.
``clear`` removes only entries whose manifest proves nb2flow wrote them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2flow import files, settings
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
KEY_FILE = "cache.key"
DIR_MODE = files.DIR_MODE
_TMP = ".tmp"
_TRASH = ".trash"
#: where folders that are not entries nb2flow can prove it wrote are moved (never deleted)
QUARANTINE = ".quarantine"
_TMP_NAME = re.compile(r"^[0-9a-f]{1,128}\.\d+\.[0-9a-f]{12}$")
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
    #: whether its manifest proves nb2flow wrote it (else ``clear`` leaves it alone)
    proven: bool = True

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
    files.private_dir(path)


# --------------------------------------------------------------------------- trust


class NotOurs(ValueError):
    """A folder at an entry's place whose manifest does not prove nb2flow wrote it."""


_keys: dict[Path, bytes] = {}
_keys_lock = threading.Lock()
_refused: set[str] = set()


def _refuse(reason: str, where: Path | None = None) -> None:
    """One warning per process and place (a results root, a key file): the cache is not
    used there."""
    with _keys_lock:
        once = str(where) if where is not None else reason
        if once in _refused:
            return
        _refused.add(once)
    warn(f"the task result cache is not used: {reason}")


def _root_refused(root: Path) -> bool:
    """Whether the results root itself cannot be trusted (warned once)."""
    reason = files.untrusted(root, root)
    if reason:
        _refuse(reason, root)
    return bool(reason)


def secret_key() -> bytes | None:
    """The home's cache key (created on first use, 0600), or ``None`` with one warning when
    it cannot be trusted (another account's file, writable by others, a link)."""
    path = settings.ensure_home() / KEY_FILE
    with _keys_lock:
        found = _keys.get(path)
    if found is not None:
        return found
    try:
        try:
            data = bytes(files.read_trusted(path))
        except FileNotFoundError:
            tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{uuid.uuid4().hex[:12]}")
            with files.open_private(tmp) as f:
                f.write(os.urandom(32))
            try:
                os.link(tmp, path)  # exclusive: of two processes creating it, one key wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
            data = bytes(files.read_trusted(path))
    except OSError as exc:
        _refuse(f"its key {path} cannot be used: {exc.strerror or exc}", path)
        return None
    if len(data) < 32:
        _refuse(f"its key {path} is damaged (remove it: the cache then starts afresh)", path)
        return None
    with _keys_lock:
        _keys[path] = data
    return data


def _mac(secret: bytes, meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "mac"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def _read_meta(path: Path, root: Path | None = None) -> dict[str, Any]:
    data = files.read_trusted(path / META_FILE, root) if root is not None else None
    if data is None:
        with open(path / META_FILE, "rb") as f:
            data = bytearray(f.read())
    meta = json.loads(data.decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("meta.json is not an object")
    return meta


def _proven_meta(path: Path, key: str, root: Path, secret: bytes) -> dict[str, Any]:
    """The manifest of the entry at ``path`` once its HMAC proves nb2flow wrote it.

    ``PermissionError``: something there is not trusted (owner, mode, link); :class:`NotOurs`:
    nothing proves nb2flow wrote it."""
    try:
        meta = _read_meta(path, root)
    except PermissionError:
        raise
    except FileNotFoundError:
        raise NotOurs("it has no manifest") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise NotOurs(f"its manifest is unreadable ({exc})") from None
    mac = meta.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(secret, meta)):
        raise NotOurs("its manifest is not signed with this home's cache key")
    if meta.get("key") != key:
        raise NotOurs("its manifest belongs to another key")
    return meta


def _quarantine(path: Path, root: Path, key: str, name: str, why: str) -> None:
    """Move a folder (or file) nb2flow cannot prove it wrote out of an entry's place."""
    target = root / QUARANTINE / f"{path.name}.{int(time.time())}.{uuid.uuid4().hex[:6]}"
    try:
        _private_dir(target.parent)
        os.rename(path, target)
    except FileNotFoundError:
        return
    except OSError as exc:
        warn(
            f"cache entry {key[:12]} of task {name!r} is not used: {why}, and it cannot be "
            f"moved aside ({exc.strerror or exc}); running the task"
        )
        return
    warn(
        f"cache entry {key[:12]} of task {name!r} is not used: {why}; moved to {target} "
        "(nb2flow never deletes what it cannot prove it wrote); running the task"
    )


# --------------------------------------------------------------------------- entries


def _discard(path: Path, root: Path) -> None:
    """Remove an entry directory nb2flow proved it wrote; first renamed aside so nobody
    sees half of it."""
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
    expires = meta.get("expires")
    return Entry(
        key=path.name,
        path=path,
        flow=meta.get("flow"),
        task=meta.get("task"),
        size=int(meta.get("size") or 0),
        created=float(meta.get("created") or 0.0),
        flow_run_id=meta.get("flow_run_id"),
        expires=float(expires) if expires is not None else None,
        serializer=str(meta.get("serializer") or "?"),
    )


def _check(path: Path, key: str, name: str, root: Path) -> dict[str, Any] | None:
    """The manifest of the entry at ``path`` if it can be used. An entry nb2flow wrote that
    expired or is of another format is removed; anything else is moved aside or refused."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _refuse(f"{path} cannot be checked ({exc.strerror or exc})", root)
        return None
    if _root_refused(root):
        return None
    reason = files.untrusted(path, root)
    if reason:
        _refuse(reason, root)
        return None
    if not os.path.isdir(path) or os.path.islink(path):
        kind = "a symbolic link" if os.path.islink(path) else "a file"
        _quarantine(path, root, key, name, f"{path} is {kind}, not an entry folder")
        return None
    secret = secret_key()
    if secret is None:
        return None
    try:
        meta = _proven_meta(path, key, root, secret)
    except PermissionError as exc:
        _refuse(str(exc), root)
        return None
    except NotOurs as exc:
        _quarantine(path, root, key, name, f"nothing proves nb2flow wrote it ({exc})")
        return None
    try:
        if meta.get("version") != FORMAT_VERSION:
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
        if not isinstance(meta.get("digests"), dict):
            raise ValueError("no file digests")
    except (ValueError, TypeError) as exc:
        warn(f"cache entry {key[:12]} of task {name!r} is unreadable ({exc}); running it")
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
    if not os.path.lexists(path):
        return None
    meta = _check(path, key, name, root)
    if meta is None:
        return None
    try:
        value = storage.read_value(path, meta["digests"], root)
    except PermissionError as exc:
        _refuse(str(exc), root)
        return None
    except storage.DamagedEntry as exc:
        warn(
            f"cache entry {key[:12]} of task {name!r} is damaged ({exc}); running the task "
            "and writing the entry again"
        )
        _discard(path, root)
        return None
    except Exception as exc:  # noqa: BLE001 - truncated parquet, missing class...
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
        secret = secret_key()
        if secret is None:
            return None
        _private_dir(tmp_root)
        if _root_refused(root):
            return None
        reason = files.untrusted(tmp_root, root)
        if reason:
            _refuse(reason, root)
            return None
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
            "digest": storage.DIGEST,
            **info,
        }
        meta["mac"] = _mac(secret, meta)
        with files.open_private(tmp / META_FILE, text=True) as f:
            json.dump(meta, f)
        _private_dir(final.parent)
        reason = files.untrusted(final.parent, root)
        if reason:
            _refuse(reason, root)
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        replace = task is not None and refresh(task)
        return _commit(tmp, final, key, name or "?", root, replace)
    except (OSError, ValueError) as exc:  # disk full, read-only home, a NaN expiration...
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
            if not os.path.lexists(final):
                continue  # it was just discarded: try again
            if replace and os.path.isdir(final) and not os.path.islink(final):
                replace = False  # once: a concurrent writer's fresh entry then wins
                if _check(final, key, name, root) is not None:
                    _discard(final, root)  # refresh_cache: the new value replaces it
                continue
            if _check(final, key, name, root) is not None:
                shutil.rmtree(tmp, ignore_errors=True)  # the other writer won: same value
                return final
            if os.path.lexists(final) and files.untrusted(final, root):
                break  # refused (warned): not ours to replace
            # the old entry was stale, broken or moved aside: try again
    shutil.rmtree(tmp, ignore_errors=True)
    return final if os.path.isdir(final) else None


def _iter_entry_dirs(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for shard in sorted(root.iterdir()):
        if shard.name.startswith(".") or not shard.is_dir() or shard.is_symlink():
            continue
        for path in sorted(shard.iterdir()):
            if _valid_key(path.name) and path.name.startswith(shard.name):
                yield path


def _entry(path: Path, root: Path, secret: bytes | None) -> Entry | None:
    """What ``list_entries`` shows of one folder at an entry's place."""
    try:
        if secret is None or files.untrusted(path, root) or not path.is_dir():
            raise NotOurs("not checked")
        return _entry_from_meta(path, _proven_meta(path, path.name, root, secret))
    except (OSError, NotOurs, ValueError, TypeError):
        try:
            st = os.lstat(path)
            size = (
                sum(p.lstat().st_size for p in path.iterdir() if p.is_file())
                if path.is_dir() and not path.is_symlink()
                else st.st_size
            )
        except OSError:  # removed meanwhile by another process
            return None
        return Entry(path.name, path, None, None, size, st.st_mtime, None, None, "?", False)


def list_entries(
    flow: str | None = None,
    task: str | None = None,
    older_than: float | None = None,
    root: Path | None = None,
) -> list[Entry]:
    """Stored entries, oldest first, filtered by flow name, task name and age (seconds,
    by the time the entry records it was created).

    A folder whose manifest does not prove nb2flow wrote it (damaged, another version's,
    someone else's) is listed with ``proven=False`` and ``flow``/``task`` ``None``, only
    when no filter is given: ``clear`` never removes those.
    """
    root = root or results_dir()
    secret = secret_key() if root.is_dir() else None
    now = time.time()
    filtered = flow is not None or task is not None or older_than is not None
    out = []
    for path in _iter_entry_dirs(root):
        entry = _entry(path, root, secret)
        if entry is None or (filtered and not entry.proven):
            continue
        if flow is not None and entry.flow != flow:
            continue
        if task is not None and entry.task != task:
            continue
        if older_than is not None and now - entry.created < older_than:
            continue
        out.append(entry)
    out.sort(key=lambda e: e.created)
    return out


def left_alone(root: Path | None = None) -> list[Path]:
    """What ``clear`` does not remove because nothing proves nb2flow wrote it: folders at an
    entry's place without a valid manifest, and what was moved to ``.quarantine``."""
    root = root or results_dir()
    found = [e.path for e in list_entries(root=root) if not e.proven]
    quarantine = root / QUARANTINE
    if quarantine.is_dir():
        found += sorted(quarantine.iterdir())
    return found


def clear(
    flow: str | None = None,
    task: str | None = None,
    older_than: float | None = None,
    root: Path | None = None,
) -> tuple[int, int]:
    """Remove matching entries nb2flow can prove it wrote (and leftovers of its crashed
    writers). Returns (count, bytes). :func:`left_alone` lists what it did not touch."""
    root = root or results_dir()
    removed = freed = 0
    for entry in list_entries(flow=flow, task=task, older_than=older_than, root=root):
        if not entry.proven:
            continue
        _discard(entry.path, root)
        removed += 1
        freed += entry.size
    now = time.time()
    for leftovers, min_age in ((root / _TMP, _STALE_TMP_SECONDS), (root / _TRASH, 0)):
        if not leftovers.is_dir() or files.untrusted(leftovers, root):
            continue
        for path in leftovers.iterdir():
            try:
                st = os.lstat(path)
                ours = st.st_uid == os.geteuid() and (
                    leftovers.name == _TRASH or _TMP_NAME.match(path.name)
                )
                if ours and now - st.st_mtime >= min_age:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
    return removed, freed
