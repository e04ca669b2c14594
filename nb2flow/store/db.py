"""The run store: SQLite under ``$NB2FLOW_HOME`` (default ``~/.nb2flow``), file ``runs.db``.

One database holds every flow run of every process on the machine. It is written by the
recorder (:mod:`nb2flow.store.recording`: a background thread fed by run events, or for big
flows its helper process) and read by
``nb2flow runs``, ``nb2flow show``, the report and the Jupyter run browser through
:class:`Store`.

Concurrency: WAL mode (readers never block the writer), every write transaction is
``BEGIN IMMEDIATE`` (takes the write lock up front, so SQLite's busy handler applies and no
transaction has to be upgraded), ``busy_timeout`` and a retry loop with backoff around it.

Crash detection: each flow run records the pid, hostname and identity (boot id, pid namespace,
start time) of the process that records it. Whoever opens the store next marks ``Crashed``
the runs left unfinished by a process it can prove dead -- same host, same boot, same pid
namespace, and that pid gone or now another process -- with their unfinished task runs. A run
of a process in another container or pid namespace is never marked: nothing proves it dead.
If the process was alive after all and records its final state, that state wins.

Files: the home is created 0700 and ``runs.db`` 0600 before SQLite opens it (its ``-wal`` and
``-shm`` get the same mode); see :mod:`nb2flow.files`. Readers need no write access: a store
in a read-only folder is opened read-only. A damaged file is one error line.

A run is rebuilt as a :class:`~nb2flow.runtime.core.model.RunView` by replaying its rows as the
run events they came from, in the order they were recorded: the store and a live observer
read events the same way (``RunView.apply``). See ``docs/store.md``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nb2flow import files, settings
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core import events
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.model import RunView, StoredPart
from nb2flow.runtime.core.states import (
    CACHED,
    COMPLETED,
    CRASHED,
    FAILED_STATES,
    FINAL_STATES,
    OK_STATES,
    OPEN_STATES,
)
from nb2flow.store import history

DB_NAME = "runs.db"
#: the folder beside the database holding artifact parts, one sub-folder per flow run
ARTIFACTS_DIR = "artifacts"
#: seconds SQLite itself waits for a lock before reporting "database is locked"
BUSY_TIMEOUT = 10.0
#: readers (``runs``, ``show``...) wait at most this long for a lock (the crash sweep and a
#: migration need one); past it they read without sweeping
READER_BUSY_TIMEOUT = 2.0
#: ``seq`` of rows written by the crash sweep: after anything the dead process wrote
CRASH_SEQ = 1 << 60

T = TypeVar("T")

# Schema migrations, in order: migration i brings the schema from version i to i + 1
# (``PRAGMA user_version`` holds the version). Never edit a released migration; append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE flow_runs (
        id          TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL,        -- recording order (see load_run)
        run_name    TEXT NOT NULL DEFAULT '',
        flow_name   TEXT NOT NULL DEFAULT '',
        state       TEXT NOT NULL DEFAULT 'Pending',
        created     REAL,
        start       REAL,
        "end"       REAL,
        parameters  TEXT NOT NULL DEFAULT '{}',   -- JSON
        task_runner TEXT NOT NULL DEFAULT '',
        pid         INTEGER,                 -- as reported by the runtime
        host        TEXT,                    -- the recording process, for crash detection
        proc_pid    INTEGER,
        proc_start  TEXT,
        error       TEXT,
        traceback   TEXT,
        extra       TEXT                     -- other flow_run event data, JSON
    );
    CREATE INDEX flow_runs_created ON flow_runs (created);
    CREATE INDEX flow_runs_flow ON flow_runs (flow_name, created);
    CREATE INDEX flow_runs_name ON flow_runs (run_name);
    CREATE INDEX flow_runs_state ON flow_runs (state);

    -- one row per task run; its state transitions are kept in `history` (one row per task
    -- instead of one per transition keeps the recorder cheap), those with a message, an
    -- error or a cache source also get a row in `states`
    CREATE TABLE task_runs (
        flow_run_id TEXT NOT NULL,
        id          TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        name        TEXT NOT NULL,
        created     REAL,
        state       TEXT NOT NULL,           -- the latest state
        history     TEXT NOT NULL DEFAULT '',  -- ";ts,state,attempt[,seq]" per transition
        task_key    TEXT,                    -- NULL when equal to name
        upstream    TEXT,                    -- JSON list, NULL when empty
        edge_names  TEXT,                    -- JSON dict, NULL when empty
        map_index   INTEGER,
        error       TEXT,                    -- the latest error (one line)
        PRIMARY KEY (flow_run_id, id)
    ) WITHOUT ROWID;

    -- flow run transitions (task_run_id NULL) and task run transitions with details
    CREATE TABLE states (
        flow_run_id TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        task_run_id TEXT,
        ts          REAL NOT NULL,
        state       TEXT NOT NULL,
        attempt     INTEGER,
        message     TEXT,
        error       TEXT,
        traceback   TEXT,
        cached_from TEXT
    );
    CREATE INDEX states_run ON states (flow_run_id, seq);

    CREATE TABLE logs (
        flow_run_id TEXT NOT NULL,
        task_run_id TEXT,
        seq         INTEGER NOT NULL,
        ts          REAL NOT NULL,
        level       INTEGER NOT NULL,
        levelname   TEXT NOT NULL,
        message     TEXT NOT NULL,
        logger      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX logs_run ON logs (flow_run_id, seq);
    """,
    """
    -- what runs returned (a JSON summary: type, shape, repr head) and what they displayed
    ALTER TABLE flow_runs ADD COLUMN result TEXT;
    ALTER TABLE task_runs ADD COLUMN result TEXT;
    CREATE TABLE artifacts (
        flow_run_id TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        task_run_id TEXT,
        ts          REAL NOT NULL,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL DEFAULT '',
        text        TEXT NOT NULL DEFAULT '',   -- the text/plain part
        parts       TEXT,                     -- JSON {mime: [file name, bytes]} of the others
        truncated   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX artifacts_run ON artifacts (flow_run_id, seq);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """Where the run store lives: ``$NB2FLOW_HOME/runs.db``."""
    return settings.home() / DB_NAME


# -- processes -------------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()


def _pid_namespace() -> str:
    """This process's pid namespace (``pid[4026531836]``): pids mean something only inside
    one. Two containers may share a host name and a boot, never a pid namespace."""
    try:
        return os.readlink("/proc/self/ns/pid").replace(":", "")
    except OSError:
        return ""


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                return f.read().strip().replace(":", "")
        except OSError:
            continue
    return ""


_PID_NS = _pid_namespace()
_MACHINE = _machine_id()


def process_start(pid: int) -> str | None:
    """An identity token for the process ``pid`` of this pid namespace (Linux):
    ``BOOT:PIDNS:START:MACHINE`` -- boot id, pid namespace, start time in clock ticks,
    machine id.

    Two processes that share a pid (one dead, its pid reused) have different tokens.
    ``None`` where it cannot be known (no ``/proc``, process gone or a zombie).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # zombie / dead: the process is gone, only its entry is left
        return None
    return f"{_BOOT_ID}:{_PID_NS}:{fields[19].decode()}:{_MACHINE}"  # stat field 22: starttime


def process_alive(pid: int | None, token: str | None) -> bool:
    """Whether the process that recorded ``(pid, token)`` on this host may still run.

    False only when that is proven: the token is of this machine and either of an earlier
    boot (the machine restarted since) or of this boot and pid namespace with the pid gone
    or now another process. Another machine of the same host name, another container or pid
    namespace: True (nothing proves it dead). Tokens of older versions (``BOOT:START``)
    are compared as they were.
    """
    if not pid:
        return False
    start = None
    if token:
        parts = token.split(":")
        if len(parts) == 4:
            boot, ns, start, machine = parts
            if machine != _MACHINE:
                return True
            if boot != _BOOT_ID:
                return False
            if ns != _PID_NS:
                return True
        elif len(parts) == 2:
            if parts[0] != _BOOT_ID:
                return False
            start = parts[1]
    if os.path.isdir("/proc"):
        current = process_start(pid)
        if current is None:
            return False
        return start is None or current.split(":")[2] == start
    try:  # no /proc: trust the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


HOST = socket.gethostname()


# -- connections -----------------------------------------------------------------------------


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def retry_busy(fn: Callable[[], T], *, deadline: float | None = 120.0) -> T:
    """Call ``fn`` until it stops failing with "database is locked"/"busy", backing off
    exponentially with jitter (SQLite's own busy_timeout already waited inside each try)."""
    delay = 0.01
    give_up = None if deadline is None else time.monotonic() + deadline
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or (give_up is not None and time.monotonic() > give_up):
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


def prepare_files(path: Path) -> None:
    """The store's folder (the home: :func:`nb2flow.settings.ensure_home`) and ``runs.db``
    itself, owner-only before SQLite opens it. A database an older version left readable by
    others is made 0600, with its ``-wal``/``-shm``, unless its folder is one the user shared
    on purpose."""
    if path.parent == settings.home():
        settings.ensure_home()
    else:
        files.private_dir(path.parent)
    if files.touch_private(path) or files.shared_on_purpose(path.parent):
        return
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if os.lstat(p).st_mode & 0o077:
                files.tighten(p)
        except OSError:  # missing, or not ours to change
            pass


def connect(
    path: Path, *, busy_timeout: float = BUSY_TIMEOUT, deadline: float | None = 120.0
) -> sqlite3.Connection:
    """Open the store (creating it), in WAL mode, migrated to :data:`SCHEMA_VERSION`."""
    prepare_files(path)
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")

        def wal() -> None:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")

        retry_busy(wal, deadline=deadline)
        # NORMAL in WAL: a committed transaction survives the process dying (kill -9);
        # only an OS crash/power loss may drop the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        retry_busy(lambda: _migrate(conn, path), deadline=deadline)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open the store for reading only (a folder or file this process may not write): no
    sweep, no migration. ``immutable`` when even SQLite's ``-shm`` cannot be made there."""
    from urllib.parse import quote

    last: sqlite3.Error | None = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?{flags}",
            uri=True,
            timeout=READER_BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError as exc:
            conn.close()
            last = exc
            continue
        if version != SCHEMA_VERSION:
            conn.close()
            raise Nb2flowError(
                f"{path}: the run store has schema version {version} and cannot be upgraded "
                f"to {SCHEMA_VERSION} here (it is read-only to you); open it once with write "
                "access, or set NB2FLOW_HOME elsewhere"
            )
        return conn
    assert last is not None
    raise last


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise Nb2flowError(
            f"{path}: the run store has schema version {version}, newer than this nb2flow "
            f"understands ({SCHEMA_VERSION}); upgrade nb2flow or set NB2FLOW_HOME elsewhere"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may won
        for i in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[i]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip() and not all(
        ln.strip().startswith("--") for ln in pending.splitlines() if ln.strip()
    ):
        raise ValueError(f"incomplete SQL statement: {pending!r}")


def transaction(
    conn: sqlite3.Connection,
    body: Callable[[sqlite3.Connection], T],
    deadline: float | None = None,
) -> T:
    """Run ``body(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retried while the database
    is locked by other processes (until ``deadline`` seconds, if given)."""

    def once() -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    return retry_busy(once, deadline=deadline)


# -- crash sweep -----------------------------------------------------------------------------


def sweep_crashed(conn: sqlite3.Connection, deadline: float | None = None) -> list[str]:
    """Mark ``Crashed`` every unfinished run on this host whose recording process is proven
    gone (:func:`process_alive`), with its unfinished task runs, unless it has records still
    pending (:func:`pending_runs`). Returns the ids of the runs marked."""
    marks = "?,?,?"
    rows = conn.execute(
        f"SELECT id, proc_pid, proc_start FROM flow_runs WHERE state IN ({marks}) AND host = ?",
        (*OPEN_STATES, HOST),
    ).fetchall()
    dead = [r[0] for r in rows if not process_alive(r[1], r[2])]
    if dead:
        pending = pending_runs(_conn_path(conn))
        dead = [run_id for run_id in dead if run_id not in pending]
    if not dead:
        return []

    def mark(c: sqlite3.Connection) -> list[str]:
        marked = []
        for run_id in dead:
            row = c.execute(
                f"SELECT proc_pid, created FROM flow_runs WHERE id = ? AND state IN ({marks})",
                (run_id, *OPEN_STATES),
            ).fetchone()
            if row is None:  # another process swept it first
                continue
            # the run ends where the dead process was last heard of
            last = [row[1]] + [
                r[0]
                for r in c.execute(
                    "SELECT max(ts) FROM states WHERE flow_run_id = ?1 UNION ALL"
                    " SELECT max(ts) FROM logs WHERE flow_run_id = ?1 UNION ALL"
                    " SELECT max(created) FROM task_runs WHERE flow_run_id = ?1",
                    (run_id,),
                )
            ]
            tasks = c.execute(
                "SELECT id, history, state FROM task_runs WHERE flow_run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            last += [h.ts for _, text, _ in tasks for h in history.decode(text)[-1:]]
            ts = max((t for t in last if t is not None), default=None) or time.time()
            message = (
                f"the process running this flow (pid {row[0]} on {HOST}) died without finishing it"
            )
            seq = CRASH_SEQ
            states, updates = [], []
            for task_id, _, state in tasks:
                if state in OPEN_STATES:
                    states.append((run_id, seq, task_id, ts, CRASHED, None, message, message))
                    updates.append(
                        (
                            CRASHED,
                            history.encode(ts, CRASHED, None, seq),
                            message,
                            run_id,
                            task_id,
                        )
                    )
                    seq += 1
            states.append((run_id, seq, None, ts, CRASHED, None, message, message))
            c.executemany(
                "INSERT INTO states (flow_run_id, seq, task_run_id, ts, state, attempt,"
                " message, error) VALUES (?,?,?,?,?,?,?,?)",
                states,
            )
            c.executemany(
                "UPDATE task_runs SET state = ?, history = history || ?, error = ?"
                " WHERE flow_run_id = ? AND id = ?",
                updates,
            )
            c.execute(
                'UPDATE flow_runs SET state = ?, "end" = ?, start = coalesce(start, ?),'
                " error = ? WHERE id = ?",
                (CRASHED, ts, ts, message, run_id),
            )
            marked.append(run_id)
        return marked

    return transaction(conn, mark, deadline)


def _conn_path(conn: sqlite3.Connection) -> Path | None:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    return None


#: where a process that could not write its last records (the store locked or full until
#: its exit) leaves them, for the next process that opens the store (see ``recording``)
PENDING_DIR = "pending"


def pending_dir(path: Path | None = None) -> Path:
    return (path or default_path()).parent / PENDING_DIR


def pending_runs(path: Path | None = None) -> set[str]:
    """The ids of the runs with records waiting in :func:`pending_dir` (never swept)."""
    folder = pending_dir(path)
    found: set[str] = set()
    try:
        names = sorted(folder.iterdir())
    except OSError:
        return found
    for p in names:
        if p.suffix == ".json":
            try:
                head = json.loads(bytes(files.read_trusted(p)).decode("utf-8"))
                found.update(str(r) for r in head.get("runs", []))
            except (OSError, ValueError, AttributeError):
                continue
    return found


def close_crashed_tasks(conn: sqlite3.Connection, run_ids: Iterable[str]) -> int:
    """Mark ``Crashed`` the task runs still open in runs already marked ``Crashed``.

    It happens when a helper process commits the last batch of a flow process that died
    after another process swept the run; the helper calls this before it exits.
    Returns the number of task runs marked."""
    ids = list(run_ids)

    def body(c: sqlite3.Connection) -> int:
        marked = 0
        for run_id in ids:
            row = c.execute(
                'SELECT "end", error FROM flow_runs WHERE id = ? AND state = ?', (run_id, CRASHED)
            ).fetchone()
            if row is None:
                continue
            tasks = c.execute(
                "SELECT id FROM task_runs WHERE flow_run_id = ? AND state IN (?,?,?) ORDER BY seq",
                (run_id, *OPEN_STATES),
            ).fetchall()
            if not tasks:
                continue
            last = c.execute(
                "SELECT max(seq) FROM states WHERE flow_run_id = ?", (run_id,)
            ).fetchone()[0]
            seq = max(CRASH_SEQ, (last or 0) + 1)
            ts, message = row[0] or time.time(), row[1] or "the flow process died"
            for (task_id,) in tasks:
                c.execute(
                    "INSERT INTO states (flow_run_id, seq, task_run_id, ts, state, message,"
                    " error) VALUES (?,?,?,?,?,?,?)",
                    (run_id, seq, task_id, ts, CRASHED, message, message),
                )
                c.execute(
                    "UPDATE task_runs SET state = ?, history = history || ?, error = ?"
                    " WHERE flow_run_id = ? AND id = ?",
                    (CRASHED, history.encode(ts, CRASHED, None, seq), message, run_id, task_id),
                )
                seq += 1
                marked += 1
        return marked

    return transaction(conn, body) if ids else 0


# -- reading ---------------------------------------------------------------------------------


def load_recorded_run(ref: str, path: Path | None = None) -> RunView:
    """The :class:`RunView` of one recorded run, for the commands that show a run (``show``,
    ``report``): a clear error when nothing was recorded yet or ``ref`` matches no run."""
    path = path or default_path()
    if not path.exists():
        raise Nb2flowError(f"no runs recorded yet ({path} does not exist)")
    with Store(path) as store:
        return store.load_run(ref)


@dataclass
class RunSummary:
    """One line of ``nb2flow runs`` / the run browser, without loading the run's tasks."""

    id: str
    run_name: str
    flow_name: str
    state: str
    created: float | None
    start: float | None
    end: float | None
    error: str | None
    parameters: dict[str, Any]
    #: task run count per state
    counts: dict[str, int] = field(default_factory=dict)
    task_runner: str = ""
    #: the program that ran the flow and its working directory, the run's tags
    script: str = ""
    cwd: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end if self.end is not None else time.time()) - self.start

    @property
    def tasks(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(n for s, n in self.counts.items() if s in OK_STATES)

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.counts.items() if s in FAILED_STATES)

    @property
    def cached(self) -> int:
        return self.counts.get(CACHED, 0)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_name": self.run_name,
            "flow_name": self.flow_name,
            "state": self.state,
            "created": self.created,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "error": self.error,
            "parameters": self.parameters,
            "tasks": self.tasks,
            "done": self.done,
            "failed": self.failed,
            "cached": self.cached,
            "counts": self.counts,
            "task_runner": self.task_runner,
            "script": self.script,
            "cwd": self.cwd,
            "tags": self.tags,
        }


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """A :class:`Store` reading method whose store errors are one error line."""
    import functools

    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> T:
        with self._reading():
            return method(self, *args, **kwargs)

    return guarded


_SUMMARY_COLUMNS = (
    'id, run_name, flow_name, state, created, start, "end", error, parameters, task_runner, extra'
)


class Store:
    """Read access to the run store (and the crash sweep, run when it is opened).

    ``Store()`` opens ``$NB2FLOW_HOME/runs.db``; ``Store(path)`` another file. Use as a
    context manager or call :meth:`close`. Safe to keep open while flows run in this or
    other processes: reads see every committed batch.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, sweep: bool = True):
        self.path = Path(path) if path is not None else default_path()
        #: ids of the runs this open marked Crashed
        self.crashed: list[str] = []
        #: whether the store was opened read-only (a folder or file this process cannot write)
        self.readonly = False
        with self._reading():
            try:
                self.conn = connect(
                    self.path, busy_timeout=READER_BUSY_TIMEOUT, deadline=READER_BUSY_TIMEOUT
                )
            except (sqlite3.OperationalError, PermissionError) as exc:
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    raise
                if not self.path.exists():
                    raise
                self.conn = connect_readonly(self.path)
                self.readonly = True
            if sweep and not self.readonly:
                try:
                    self.crashed = sweep_crashed(self.conn, deadline=READER_BUSY_TIMEOUT)
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise  # locked by a writer: the next opener sweeps

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Every way a store file can be unreadable, as one error line naming it."""
        try:
            yield
        except Nb2flowError:
            raise
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise Nb2flowError(
                    f"{self.path}: the run store is locked by another process ({exc}); "
                    "try again in a moment"
                ) from None
            raise self._unreadable(exc) from None
        except (sqlite3.DatabaseError, OSError, ValueError, TypeError, struct.error) as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: BaseException) -> Nb2flowError:
        what = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return Nb2flowError(
            f"{self.path}: cannot read the run store ({what}); move the file away or set "
            "NB2FLOW_HOME to another directory"
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # listings

    @_guarded
    def list_runs(
        self,
        flow: str | None = None,
        limit: int | None = 20,
        state: str | None = None,
        tag: str | None = None,
    ) -> list[RunSummary]:
        """Most recent runs first, optionally of one flow, in one state, with one tag."""
        where, params = [], []
        if flow is not None:
            where.append("flow_name = ?")
            params.append(flow)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if tag is not None:
            where.append(
                "extra IS NOT NULL AND json_valid(extra) AND EXISTS"
                " (SELECT 1 FROM json_each(extra, '$.tags') WHERE value = ?)"
            )
            params.append(tag)
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM flow_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, seq DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._summaries(self.conn.execute(sql, params).fetchall())

    @_guarded
    def summary(self, ref: str) -> RunSummary:
        """The listing line of one run (``ref`` as for :meth:`load_run`)."""
        run_id = self.resolve(ref)
        rows = self.conn.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM flow_runs WHERE id = ?", (run_id,)
        ).fetchall()
        return self._summaries(rows)[0]

    def _summaries(self, rows: list[tuple[Any, ...]]) -> list[RunSummary]:
        out = []
        for r in rows:
            extra = json.loads(r[10]) if r[10] else {}
            out.append(
                RunSummary(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    json.loads(r[8] or "{}"),
                    task_runner=r[9] or "",
                    script=extra.get("script", ""),
                    cwd=extra.get("cwd", ""),
                    tags=list(extra.get("tags") or ()),
                )
            )
        by_id = {s.id: s for s in out}
        if by_id:
            marks = ",".join("?" * len(by_id))
            for run_id, state, n in self.conn.execute(
                f"SELECT flow_run_id, state, count(*) FROM task_runs"
                f" WHERE flow_run_id IN ({marks}) GROUP BY flow_run_id, state",
                list(by_id),
            ):
                by_id[run_id].counts[state] = n
        return out

    @_guarded
    def flows(self) -> list[tuple[str, int, float | None]]:
        """``(flow_name, number of runs, last created)`` for every flow, most recent first."""
        return [
            (r[0], r[1], r[2])
            for r in self.conn.execute(
                "SELECT flow_name, count(*), max(created) FROM flow_runs"
                " GROUP BY flow_name ORDER BY max(created) DESC"
            )
        ]

    def run_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Run names of the flow runs ``ids`` that are in the store."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                self.conn.execute(
                    f"SELECT id, run_name FROM flow_runs WHERE id IN ({marks})", chunk
                ).fetchall()
            )
        return out

    def data_version(self) -> int:
        """Changes whenever another connection commits: poll it to refresh a view cheaply."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # one run

    @_guarded
    def resolve(self, ref: str) -> str:
        """The id of the run ``ref`` names: a run id, a unique id prefix or a run name."""
        ref = ref.strip()
        if not ref:
            raise Nb2flowError("no run given: pass a run name or id (see `nb2flow runs`)")
        if self.conn.execute("SELECT 1 FROM flow_runs WHERE id = ?", (ref,)).fetchone():
            return ref
        by_name = self.conn.execute(
            "SELECT id, created FROM flow_runs WHERE run_name = ? ORDER BY created DESC", (ref,)
        ).fetchall()
        if len(by_name) == 1:
            return by_name[0][0]
        if len(by_name) > 1:
            ids = ", ".join(r[0] for r in by_name[:5])
            raise Nb2flowError(
                f"{len(by_name)} runs are named {ref!r} in {self.path} ({ids}); "
                "pass the id (or a unique prefix) of the one you mean"
            )
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        by_prefix = self.conn.execute(
            "SELECT id FROM flow_runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created DESC LIMIT 6",
            (escaped + "%",),
        ).fetchall()
        # LIKE is case-insensitive; ids are compared exactly
        by_prefix = [r for r in by_prefix if r[0].startswith(ref)]
        if len(by_prefix) == 1:
            return by_prefix[0][0]
        if len(by_prefix) > 1:
            ids = ", ".join(r[0] for r in by_prefix[:5])
            raise Nb2flowError(
                f"run id prefix {ref!r} is ambiguous in {self.path}: it matches {ids}"
                f"{', ...' if len(by_prefix) > 5 else ''}; type more of the id"
            )
        raise Nb2flowError(
            f"no run named {ref!r} and no run id starting with it in {self.path} "
            "(`nb2flow runs` lists the recorded runs)"
        )

    @_guarded
    def load_run(self, ref: str) -> RunView:
        """Rebuild the :class:`RunView` of one run (``ref``: id, unique id prefix or name)."""
        run_id = self.resolve(ref)
        return RunView.from_events(run_id, list(self.events(run_id)))

    @_guarded
    def events(self, run_id: str) -> Iterator[RunEvent]:
        """The run events of one run, rebuilt from its rows, in recording order (except that
        a task run's transitions follow its ``task_run`` event)."""
        c = self.conn
        tagged: list[tuple[int, int, RunEvent]] = []
        row = c.execute(
            "SELECT seq, created, run_name, flow_name, parameters, task_runner, pid, extra, result"
            " FROM flow_runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise Nb2flowError(f"no run with id {run_id!r} in {self.path}")
        data: dict[str, Any] = json.loads(row[7]) if row[7] else {}
        data.update(
            flow_name=row[3],
            run_name=row[2],
            parameters=json.loads(row[4] or "{}"),
            pid=row[6],
            task_runner=row[5],
        )
        tagged.append((row[0], 0, RunEvent("flow_run", row[1], run_id, None, data)))
        flow_result = json.loads(row[8]) if row[8] else None
        details: dict[int, tuple[Any, ...]] = {}
        for seq, tid, ts, state, _attempt, message, error, tb, cached_from in c.execute(
            "SELECT seq, task_run_id, ts, state, attempt, message, error, traceback,"
            " cached_from FROM states WHERE flow_run_id = ?",
            (run_id,),
        ):
            if tid is not None:  # a task transition: its details, merged below
                details[seq] = (message, error, tb, cached_from)
                continue
            # states are given back with the keys they were recorded with (the constructor
            # would add a traceback key to an error recorded without one)
            data = {"state": state, "message": message or ""}
            if error is not None:
                data["error"] = error
            if tb is not None:
                data["traceback"] = tb
            if flow_result is not None and state == COMPLETED:
                data["result"] = flow_result
            tagged.append((seq, 0, RunEvent(events.FLOW_STATE, ts, run_id, None, data)))
        for seq, tid, created, name, key, upstream, edges, map_index, past, result in c.execute(
            "SELECT seq, id, created, name, task_key, upstream, edge_names, map_index, history,"
            " result FROM task_runs WHERE flow_run_id = ?",
            (run_id,),
        ):
            task_run = events.task_run(
                run_id,
                tid,
                task_name=name,
                task_key=name if key is None else key,
                upstream=json.loads(upstream) if upstream else [],
                edge_names=json.loads(edges) if edges else {},
                map_index=map_index,
                ts=created,
            )
            tagged.append((seq, 0, task_run))
            # a task's transitions follow its creation, in their order; their exact
            # interleaving with other tasks' events does not change the view
            transitions = history.decode(past)
            for i, h in enumerate(transitions, 1):
                data = {"state": h.state, "attempt": h.attempt}
                if i == len(transitions) and result is not None:
                    data["result"] = json.loads(result)
                extra = details.get(h.seq) if h.seq is not None else None
                if extra is not None:
                    message, error, tb, cached_from = extra
                    data["message"] = message or ""
                    if error is not None:
                        data["error"] = error
                    if tb is not None:
                        data["traceback"] = tb
                    if cached_from is not None:
                        data["cached_from"] = cached_from
                tagged.append((seq, i, RunEvent(events.TASK_STATE, h.ts, run_id, tid, data)))
        for seq, tid, ts, level, levelname, message, logger in c.execute(
            "SELECT seq, task_run_id, ts, level, levelname, message, logger FROM logs"
            " WHERE flow_run_id = ?",
            (run_id,),
        ):
            log = events.log(run_id, tid, level, message, logger, levelname=levelname, ts=ts)
            tagged.append((seq, 0, log))
        folder = self.path.parent / ARTIFACTS_DIR / run_id
        for seq, tid, ts, kind, name, text, parts, truncated in c.execute(
            "SELECT seq, task_run_id, ts, kind, name, text, parts, truncated FROM artifacts"
            " WHERE flow_run_id = ?",
            (run_id,),
        ):
            bundle: dict[str, Any] = {"text/plain": text}
            for mime, (file, size) in (json.loads(parts) if parts else {}).items():
                bundle[mime] = StoredPart(str(folder / file), size, mime.startswith("image/"))
            tagged.append(
                (
                    seq,
                    0,
                    events.artifact(
                        run_id,
                        tid,
                        kind=kind,
                        name=name,
                        bundle=bundle,
                        truncated=bool(truncated),
                        ts=ts,
                    ),
                )
            )
        tagged.sort(key=lambda p: (p[0], p[1]))
        return (ev for _, _, ev in tagged)

    @_guarded
    def messages(self, run_id: str) -> dict[str | None, list[tuple[float, str, str]]]:
        """State messages per task run id (``None``: the flow run): ``(ts, state, message)``."""
        out: dict[str | None, list[tuple[float, str, str]]] = {}
        for tid, ts, state, message in self.conn.execute(
            "SELECT task_run_id, ts, state, message FROM states WHERE flow_run_id = ?"
            " AND message IS NOT NULL AND message != '' ORDER BY seq",
            (run_id,),
        ):
            out.setdefault(tid, []).append((ts, state, message))
        return out
