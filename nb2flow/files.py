"""Owner-only files and folders: the one place nb2flow creates and checks the files it keeps.

Everything nb2flow writes under its home (``$NB2FLOW_HOME``, default ``~/.nb2flow``) goes
through these helpers: the run store (``runs.db`` and SQLite's ``-wal``/``-shm`` beside it),
cache entries, the cache key, the pending-records spool, run artifacts. The rules (see
``docs/security.md``):

- folders nb2flow creates are ``0700`` and files ``0600``, whatever the umask;
- an existing folder is never chmod-ed: a home the user made group-shared (a ``2775`` team
  folder) is left as it is, with one warning saying what that means;
- before trusting what it reads back (a pickle above all), nb2flow checks, as ssh does for
  ``~/.ssh``, that the file and every folder up to the root it belongs to are owned by the
  user (or root), are not writable by group or others, and are not symbolic links.

Only the standard library; nothing here imports another part of nb2flow.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from pathlib import Path

#: what nb2flow gives the files and folders it creates
FILE_MODE = 0o600
DIR_MODE = 0o700

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# -- creating --------------------------------------------------------------------------------


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its missing parents) ``0700``; an existing folder keeps its mode.

    Returns ``path``. ``mkdir(mode=)`` alone would give the parents the umask's mode and the
    folder itself ``0700 & ~umask``; here every folder created is exactly ``0700``.
    """
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(p, DIR_MODE)  # the umask may have taken bits away: never adds any
    return path


def open_private(path: Path, text: bool = False, append: bool = False):  # noqa: ANN201
    """A new file ``0600``, opened for writing (``O_EXCL``: never an existing file, never
    through a symbolic link). ``append=True`` opens an existing one for appending instead."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC
    flags |= os.O_APPEND if append else os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    if text:
        return os.fdopen(fd, "w", encoding="utf-8")
    return os.fdopen(fd, "wb")


def touch_private(path: Path) -> bool:
    """Create ``path`` as an empty ``0600`` file unless it exists. True if it created it.

    SQLite creates a database with the umask's mode (often ``0644``) and gives its ``-wal``
    and ``-shm`` files the database's mode: creating the file first makes all three private.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (``0600``) atomically: a temporary file beside it, then a
    rename, so readers see the old content or the new, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open_private(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_trusted(path: Path, root: Path | None = None) -> bytearray:
    """The bytes of ``path``, after :func:`untrusted` found nothing wrong with it and every
    folder up to ``root`` (``None``: the file alone is checked), else ``PermissionError``
    saying what. The file is opened without following a symbolic link and checked again
    through the open descriptor, so it cannot be swapped in between."""
    reason = untrusted(path, root) if root is not None else None
    if reason:
        raise PermissionError(reason)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(f"{path} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        reason = _bad_file(st, path) or (
            None if stat.S_ISREG(st.st_mode) else f"{path} is not a file"
        )
        if reason:
            raise PermissionError(reason)
        data = bytearray(st.st_size)
        view = memoryview(data)
        got = 0
        while got < len(data):
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
        del view
        if got < len(data):
            del data[got:]
        return data


# -- checking --------------------------------------------------------------------------------


def _owner_ok(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def _bad_file(st: os.stat_result, path: Path) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not _owner_ok(st.st_uid):
        return f"{path} belongs to {_user(st.st_uid)}, not to you"
    if st.st_mode & 0o022:
        return f"{path} is writable by {_who(st.st_mode)} (mode {_mode(st.st_mode)})"
    return None


def untrusted(path: Path, root: Path) -> str | None:
    """Why ``path`` (inside ``root``) may hold something nb2flow did not write, or ``None``.

    ``path`` and every folder from it up to ``root`` (included) must be owned by the user
    (or root), not writable by group or others, and not symbolic links (``root`` itself may
    be a link: where it points is checked). A missing path is not untrusted (nothing to read).
    """
    try:
        rel = path.relative_to(root)
    except ValueError:
        return f"{path} is outside {root}"
    chain = [root]
    for part in rel.parts:
        chain.append(chain[-1] / part)
    for i, p in enumerate(reversed(chain)):
        try:
            st = os.stat(p) if p == root else os.lstat(p)
        except FileNotFoundError:
            if i == 0:
                continue
            return None
        except OSError as exc:
            return f"{p} cannot be checked ({exc.strerror or exc})"
        reason = _bad_file(st, p)
        if reason:
            return reason
    return None


def sharing(path: Path) -> str | None:
    """How an existing folder is shared beyond its owner, in words, or ``None`` if private:
    ``"shared with group staff (mode 2775)"``, ``"writable by everyone (mode 0777)"``."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = st.st_mode
    if not mode & 0o077:
        return None
    if mode & 0o002:
        return f"writable by everyone (mode {_mode(mode)})"
    if mode & (0o020 | stat.S_ISGID):
        return f"shared with group {_group(st.st_gid)} (mode {_mode(mode)})"
    return f"readable by {'everyone' if mode & 0o007 else 'its group'} (mode {_mode(mode)})"


def shared_on_purpose(path: Path) -> bool:
    """Whether someone made the existing folder ``path`` writable by its group or others, or
    set its setgid bit: what a team folder looks like, never what a umask gives by itself."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_ISGID | 0o022))


def tighten(path: Path) -> str:
    """Take the group's and others' permissions away from a file or folder the user owns
    (never through a link; the owner's own bits are kept, so a read-only folder stays
    read-only). Returns the old mode as text; ``PermissionError`` when it is not the
    user's."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not yours to change")
    os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    return _mode(st.st_mode)


def _mode(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


def _who(mode: int) -> str:
    both = mode & 0o020 and mode & 0o002
    return "group and others" if both else "its group" if mode & 0o020 else "others"


def _user(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


# -- one warning per thing -------------------------------------------------------------------

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str, key: str | None = None) -> bool:
    """Print ``nb2flow: message`` on stderr once per process (per ``key``, default the
    message). Returns whether it printed."""
    with _warned_lock:
        k = key or message
        if k in _warned:
            return False
        _warned.add(k)
    print(f"nb2flow: {message}", file=sys.stderr, flush=True)
    return True
