"""The recorder: subscribes to run events and writes them to the run store off the hot path.

The subscriber is the ``append`` of a :class:`collections.deque` (a C call, no Python frame):
that is all a task run pays. A background thread wakes every :data:`BUSY_INTERVAL` seconds
while events come (:data:`IDLE_INTERVAL` when none came, at once on :meth:`Recorder.flush`),
drains the queue and writes the batch with ``executemany`` in one ``BEGIN IMMEDIATE``
transaction. A batch that fails for another reason than a lock is written event by event,
so one bad event costs only itself.

Big flows get a helper process. Turning events into rows and SQLite's work cost a few
microseconds per task run, which a thread pays with the flow's GIL; when a drain finds
:data:`HELPER_MIN_BATCH` events or more, the recorder starts ``python -m
nb2flow.store.recording --helper`` and from then on only ``marshal``s each batch into its
stdin (about 2 us per task run); the helper writes it and acknowledges flushes. Where the
helper cannot start, the thread writes. ``NB2FLOW_STORE_HELPER=never|always`` overrides.

The runtime's observer registry calls :func:`observe` when a top-level flow run starts: it
calls :func:`enable` (cheap and idempotent: it returns the running recorder unless
``$NB2FLOW_HOME`` changed), and :meth:`Recorder.flush` when the run has ended. The recorder
also flushes at interpreter exit.

Nothing waits on the store for long. A batch that cannot be written for a passing reason (the
store locked by another process, the disk full, an I/O error) is kept and tried again, with
backoff, before anything after it; nothing is dropped. A flush gives up after
:data:`STALL_SECONDS` without progress and says so in one line; at exit, what is still
unwritten then is saved to ``$NB2FLOW_HOME/pending/`` (0600 JSON, never pickle), and the next
process that opens the store for writing records it, before any crash sweep, so a run that
completed is recorded Completed, never Crashed.
"""

from __future__ import annotations

import atexit
import collections
import json
import marshal
import os
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from nb2flow import files, settings
from nb2flow.runtime.core import events
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.observers import Attachment, RunStart
from nb2flow.runtime.core.states import FINAL_STATES, RUNNING
from nb2flow.runtime.core.tracebacks import error_line
from nb2flow.store import db
from nb2flow.store.history import clean_state, encode

#: seconds between two drains of the queue while events keep coming / when it was empty
#: (flush() wakes the writer at once)
BUSY_INTERVAL = 0.05
IDLE_INTERVAL = 0.25
#: most events written in one transaction (bounds how long the write lock is held)
MAX_BATCH = 20_000
#: a drain of at least this many events starts the helper process
HELPER_MIN_BATCH = 3_000
#: seconds :func:`_flush_at_exit` waits for the last batch
EXIT_TIMEOUT = 30.0
#: a flush (at the end of a flow run, at exit) gives up after this long without progress
STALL_SECONDS = 5.0
#: seconds the writer's SQLite waits for the lock inside one try (then the thread backs off)
WRITER_BUSY_TIMEOUT = 1.0
#: longest pause between two tries of a batch the store refused for a passing reason
MAX_BACKOFF = 1.0
#: what SQLite reports for a store that may accept the same write later
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN")


class Transient(Exception):
    """The store refused a batch for a reason that may pass: try the same batch again."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(_TRANSIENT) or name == "SQLITE_INTERRUPT":
            return True
        text = str(exc).lower()
        return any(w in text for w in ("locked", "busy", "disk is full", "disk i/o"))
    return isinstance(exc, OSError) and not isinstance(exc, PermissionError)


def describe_problem(exc: BaseException | None) -> str:
    """Why the store is not taking writes, in words for a one-line message."""
    text = str(exc or "").lower()
    if "locked" in text or "busy" in text:
        return "is locked by another process"
    if "full" in text or getattr(exc, "errno", None) == 28:
        return "is on a full disk"
    return f"cannot be written ({exc})"


# one counter per process: the order of a run's rows (all recorded by one process)
_seq_next = 1
_seq_lock = threading.Lock()


def _reserve(n: int) -> int:
    """Reserve ``n`` consecutive seq numbers; return the first."""
    global _seq_next
    with _seq_lock:
        first = _seq_next
        _seq_next += n
    return first


_FLOW_RUN_KEYS = frozenset({"flow_name", "run_name", "parameters", "pid", "task_runner"})
#: an event as a plain tuple (kind, ts, flow_run_id, task_run_id, data): RunEvent or not
Event = tuple[str, float, str, "str | None", "Mapping[str, Any]"]


#: file name extension of each artifact part kept in a file (text/plain stays in the row)
_EXTENSIONS = {"text/html": ".html", "text/markdown": ".md", "image/png": ".png"}


_encode_str = json.encoder.encode_basestring_ascii


def _summary_json(summary: Mapping[str, Any]) -> str:
    """A result summary as JSON; the common one (``type`` and ``repr`` only, a number or a
    short string) without ``json.dumps``'s per-call cost, which every task run would pay."""
    if len(summary) == 2:
        kind, text = summary.get("type"), summary.get("repr")
        if type(kind) is str and type(text) is str:
            return f'{{"type":{_encode_str(kind)},"repr":{_encode_str(text)}}}'
    return _json(summary)


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, separators=(",", ":"))


class _Writer:
    """Turns events into rows and commits them: in the recorder's thread or in the helper."""

    def __init__(self, path: Path, pid: int, proc_start: str | None):
        self.path = path
        #: the process that runs the flows (crash detection checks it, not the helper)
        self.pid = pid
        self.proc_start = proc_start
        self.conn: sqlite3.Connection | None = None
        #: flow runs not to record (persist=False), until they end
        self.skip: set[str] = set()
        self.written = 0
        self.lost = 0
        self.batches = 0
        self.write_seconds = 0.0
        self.error: BaseException | None = None

    def open(self) -> None:
        if self.conn is None:
            conn = db.connect(self.path, busy_timeout=WRITER_BUSY_TIMEOUT, deadline=0)
            self.conn = conn
            try:
                replay_pending(self)
                db.sweep_crashed(conn, deadline=0)
            except sqlite3.OperationalError as exc:
                if not _transient(exc):
                    raise  # locked now: the next opener replays and sweeps

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def write(self, batch: Sequence[Event], base: int) -> int:
        """Commit ``batch`` (seq numbers from ``base``); return how many events were lost."""
        t0 = time.perf_counter()
        skip = set(self.skip)
        lost = 0
        try:
            self._commit(batch, base)
        except Exception as exc:  # noqa: BLE001 - a bad event or a sick file: save what can be saved
            self.skip = skip
            if _transient(exc):
                busy = isinstance(exc, sqlite3.OperationalError) and db._is_busy(exc)
                if not busy:
                    self.close()  # a full disk or an I/O error: reopen on the next try
                raise Transient(str(exc)) from exc
            for i, ev in enumerate(batch):
                try:
                    self._commit([ev], base + i)
                except Exception as exc:  # noqa: BLE001
                    lost += 1
                    self.error = exc
        self.lost += lost
        self.batches += 1
        self.write_seconds += time.perf_counter() - t0
        return lost

    def _commit(self, batch: Sequence[Event], base: int) -> None:
        self.open()
        assert self.conn is not None
        rows = self._rows(batch, base)
        db.transaction(self.conn, lambda c: _insert(c, rows), deadline=0)  # one try
        self.written += len(batch)

    def _rows(self, batch: Sequence[Event], base: int) -> dict[str, list[tuple[Any, ...]]]:
        """Turn events into rows (seq numbers from ``base``)."""
        rows = _Rows(self)
        add = rows.add
        skip = self.skip
        for n, (kind, ts, fid, tid, d) in enumerate(batch, base):
            if skip and fid in skip:  # a run of a @flow(persist=False) (or of its subflows)
                if kind == "flow_state" and d.get("state") in FINAL_STATES:
                    skip.discard(fid)
                continue
            add[kind](n, ts, fid, tid, d)
        return rows.tables()


class _Rows:
    """The rows of one batch of events, one method per event kind. A task run's transitions
    go into its one ``task_runs`` row (inserted with its whole batch history, or appended
    to in a later batch)."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.flow_runs: list[tuple[Any, ...]] = []
        self.states: list[tuple[Any, ...]] = []
        self.logs: list[tuple[Any, ...]] = []
        self.artifacts: list[tuple[Any, ...]] = []
        #: task run id -> [flow run id, state, history parts, error, new row or None, seq,
        #: result summary (JSON) or None]
        self.tasks: dict[str | None, list[Any]] = {}
        #: flow run id -> [state, start, end, error, traceback, result summary (JSON)]
        self.flows: dict[str, list[Any]] = {}
        #: event kind -> its method (an unknown kind is not stored)
        self.add: dict[str, Callable[[int, float, str, str | None, Mapping[str, Any]], None]]
        self.add = collections.defaultdict(
            lambda: self._ignore,
            task_state=self.task_state,
            task_run=self.task_run,
            log=self.log,
            artifact=self.artifact,
            flow_state=self.flow_state,
            flow_run=self.flow_run,
        )

    def _ignore(self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]) -> None:
        pass

    def task_state(
        self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]
    ) -> None:
        state = clean_state(d.get("state"))
        attempt = d.get("attempt")
        t = self.tasks.get(tid)
        if t is None:
            t = self.tasks[tid] = [fid, state, "", None, None, n, None]
        t[1] = state
        seq = None  # set when the transition has details
        message = d.get("message")
        result = d.get("result")
        if result is not None:  # a final state: what the task returned, in a few words
            t[6] = _summary_json(result)
        # details beyond state/attempt/an empty message (rare): keep them in `states`
        if (
            message
            or len(d) > 2 + (message is not None) + (result is not None)
            or "attempt" not in d
        ):
            error, tb = d.get("error"), d.get("traceback")
            cached_from = d.get("cached_from")
            message = message or None
            if message or error is not None or tb is not None or cached_from is not None:
                self.states.append(
                    (fid, n, tid, ts, state, attempt, message, error, tb, cached_from)
                )
                seq = n
                if error is not None:
                    t[3] = error
        t[2] += encode(ts, state, attempt, seq)

    def task_run(self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]) -> None:
        name = d.get("task_name", "?")
        key: str | None = d.get("task_key", name)
        upstream = d.get("upstream")
        edges = d.get("edge_names")
        map_index = d.get("map_index")
        key = None if key == name else key
        if not upstream and not edges and map_index is None:
            row: tuple[Any, ...] = (fid, tid, n, name, ts, key)
        else:
            row = (
                fid,
                tid,
                n,
                name,
                ts,
                key,
                _json(list(upstream)) if upstream else None,
                _json(edges) if edges else None,
                map_index,
            )
        t = self.tasks.get(tid)
        if t is None:
            self.tasks[tid] = [fid, "Pending", "", None, row, n, None]
        else:  # its first state came first: keep it
            t[4] = row

    def log(self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]) -> None:
        self.logs.append(
            (
                fid,
                n,
                tid,
                ts,
                int(d.get("level", 20)),
                d.get("levelname", "INFO"),
                str(d.get("message", "")),
                d.get("logger", ""),
            )
        )

    def flow_state(
        self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]
    ) -> None:
        state = d.get("state", "")
        error, tb = d.get("error"), d.get("traceback")
        self.states.append((fid, n, None, ts, state, None, d.get("message"), error, tb, None))
        f = self.flows.get(fid)
        if f is None:
            f = self.flows[fid] = [state, None, None, None, None, None]
        f[0] = state
        if "result" in d:
            f[5] = _json(d["result"])
        if state == RUNNING and f[1] is None:
            f[1] = ts
        if state in FINAL_STATES:
            f[2] = ts
        if error is not None:
            f[3] = error
        if tb is not None:
            f[4] = tb

    def artifact(self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]) -> None:
        """The row of an ``artifact`` event; its parts but the text go to files beside the
        store (``artifacts/<flow run id>/<seq>.<ext>``, owner-only)."""
        bundle = d.get("bundle") or {}
        parts: dict[str, list[Any]] = {}
        folder = None
        for mime, content in bundle.items():
            ext = _EXTENSIONS.get(mime)
            if ext is None or not isinstance(content, (str, bytes)):
                continue
            if folder is None:
                folder = files.private_dir(self.writer.path.parent / db.ARTIFACTS_DIR / fid)
            data = content.encode("utf-8") if isinstance(content, str) else content
            name = f"{n}{ext}"
            files.write_private(folder / name, data)
            parts[mime] = [name, len(data)]
        self.artifacts.append(
            (
                fid,
                n,
                tid,
                ts,
                str(d.get("kind", "value")),
                str(d.get("name", "")),
                str(bundle.get("text/plain", "")),
                _json(parts) if parts else None,
                int(bool(d.get("truncated"))),
            )
        )

    def flow_run(self, n: int, ts: float, fid: str, tid: str | None, d: Mapping[str, Any]) -> None:
        w = self.writer
        if d.get("persist") is False or d.get("parent_flow_run_id") in w.skip:
            w.skip.add(fid)
            return
        extra = {k: v for k, v in d.items() if k not in _FLOW_RUN_KEYS}
        self.flow_runs.append(
            (
                fid,
                n,
                d.get("run_name", ""),
                d.get("flow_name", ""),
                ts,
                _json(d.get("parameters") or {}),
                d.get("task_runner", ""),
                d.get("pid"),
                db.HOST,
                w.pid,
                w.proc_start,
                _json(extra) if extra else None,
            )
        )

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """The rows by statement of :data:`_SQL` (task runs: new short rows, new full rows,
        updates of rows an earlier batch wrote)."""
        short: list[tuple[Any, ...]] = []
        full: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for tid, (fid, state, history, error, row, first, result) in self.tasks.items():
            if row is None:
                updates.append((fid, tid, first, state, history, error, result))
            elif len(row) == 6:
                short.append((*row, state, history, error, result))
            else:
                full.append((*row, state, history, error, result))
        return {
            "flow_runs": self.flow_runs,
            "short": short,
            "full": full,
            "updates": updates,
            "states": self.states,
            "logs": self.logs,
            "artifacts": self.artifacts,
            "flows": [(*v, k) for k, v in self.flows.items()],
        }


class _Helper:
    """The helper process, seen from the recorder: frames in, acknowledgements out."""

    def __init__(self, path: Path, pid: int, proc_start: str | None, recorder: Recorder):
        import subprocess  # only big flows get here: keep it off the import path

        # the directory holding the nb2flow package this module belongs to
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.recorder = recorder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nb2flow.store.recording", "--helper", str(path), str(pid)]
            + ([proc_start] if proc_start else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no Ctrl-C from the terminal: it ends on end of input
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd = self.proc.stdin.fileno()
        self.ready = threading.Event()
        self.dead = False
        #: whether batches go to it (then the thread's skip set was handed over)
        self.took_over = False
        self.pending: dict[str, threading.Event] = {}
        self._ids = 0
        self._written = self._lost = 0
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stdout,), name="nb2flow-store-helper", daemon=True
        )
        self._reader.start()

    def send(self, kind: bytes, payload: bytes) -> None:
        view = memoryview(kind + len(payload).to_bytes(4, "little") + payload)
        while view:
            view = view[os.write(self.fd, view) :]

    def flush(self, marker: threading.Event) -> None:
        self._ids += 1
        key = str(self._ids)
        self.pending[key] = marker
        try:
            self.send(b"F", key.encode())
        except OSError:
            self._died("the helper process is gone")
        if self.dead:  # it may have died before seeing this flush: never leave it waiting
            self.pending.pop(key, None)
            marker.set()

    def _read(self, out: IO[bytes]) -> None:
        rec = self.recorder
        for line in out:
            parts = line.decode("utf-8", "replace").rstrip("\n").split(" ", 4)
            if parts[0] == "R":
                self.ready.set()
            elif parts[0] == "P":  # a batch committed: progress, for flush()'s patience
                rec._progress = time.monotonic()
            elif parts[0] == "A" and len(parts) >= 4:
                written, lost = int(parts[2]), int(parts[3])
                rec.written += written - self._written
                if lost > self._lost:
                    rec._fail(RuntimeError(parts[4] if len(parts) > 4 else "write failed"))
                    rec.lost += lost - self._lost
                self._written, self._lost = written, lost
                marker = self.pending.pop(parts[1], None)
                if marker is not None:
                    marker.set()
        self._died("the helper process ended")

    def _died(self, why: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.ready.set()
        if self.pending:  # what it had not acknowledged may be lost
            self.recorder.lost += 1
            self.recorder._fail(RuntimeError(why))
            for marker in list(self.pending.values()):
                marker.set()
            self.pending.clear()

    def close(self, timeout: float | None) -> None:
        import subprocess

        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(1.0)


class Recorder:
    """Writes the run events of this process to one store file."""

    def __init__(self, path: Path):
        self.path = path
        self.pid = os.getpid()
        self._queue: deque[Any] = deque()
        #: the subscriber: appending to the queue is all the hot path does
        self.append = self._queue.append
        self._wake = threading.Event()
        self._busy = True
        self._stop = False
        self._thread: threading.Thread | None = None
        self._local = _Writer(path, self.pid, db.process_start(self.pid))
        self._helper: _Helper | None = None
        self._helper_mode = settings.store_helper()
        self._helper_failed = self._helper_mode == "never"
        #: figures: events written, events lost (could not be written)
        self.written = 0
        self.lost = 0
        #: the last write error (the recorder keeps going; runs never fail for it)
        self.error: BaseException | None = None
        self._warned = False
        self._dead = False
        #: a batch the store refused for a passing reason, tried again before anything else
        self._held: tuple[int, list[RunEvent]] | None = None
        self._backoff = 0.0
        #: flush markers that came behind the held batch
        self._waiting: list[threading.Event] = []
        #: when the writer last committed something (or had nothing to do)
        self._progress = time.monotonic()
        #: why the store takes no writes now (None while it does)
        self.problem: BaseException | None = None
        self._abandon = False
        self._told_stall = False

    @property
    def helper_pid(self) -> int | None:
        """The pid of the helper process writing for this recorder, if one runs."""
        h = self._helper
        return h.proc.pid if h is not None and not h.dead else None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Recorder:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="nb2flow-store", daemon=True)
            self._thread.start()
        return self

    def kick(self) -> None:
        """A flow run starts: drain often from now on, so that writing overlaps the run and
        the flush() at its end finds little left to write."""
        self._busy = True
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event emitted so far is committed. False on timeout, after
        :data:`STALL_SECONDS` without progress (the store locked or full: one line on stderr
        says what was not recorded yet), or when some could not be written (``error`` says
        why; runs never fail for it)."""
        if self._dead:
            return False
        lost = self.lost
        if self._thread is None or not self._thread.is_alive():
            if not self._queue and self._held is None:
                return True
            self.start()
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        start = time.monotonic()
        while not done.wait(0.05):
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                return False
            if now - max(self._progress, start) >= STALL_SECONDS:
                self._tell_stall()
                return False
        return self.lost == lost and not self._dead

    def unwritten(self) -> int:
        """How many events are not committed yet (queued or held)."""
        held = len(self._held[1]) if self._held is not None else 0
        return held + sum(1 for x in list(self._queue) if type(x) is RunEvent)

    def _tell_stall(self) -> None:
        if self._told_stall:
            return
        self._told_stall = True
        why = describe_problem(self.problem) if self.problem else "is not taking writes"
        print(
            f"nb2flow: the run store {self.path} {why}: {self.unwritten()} run events are not "
            f"recorded yet (waited {STALL_SECONDS:.0f}s); they are written when it frees, or "
            f"kept in {db.pending_dir(self.path)} if this process ends first",
            file=sys.stderr,
            flush=True,
        )

    def close(self, timeout: float | None = EXIT_TIMEOUT) -> None:
        """Unsubscribe, write what is queued and stop the writer thread (and helper). What
        the store still refuses after :data:`STALL_SECONDS` is saved for the next process."""
        events.unsubscribe(self.append)
        done = self.flush(timeout)
        if not done and (self._held is not None or self.problem is not None or self._queue):
            self._abandon_and_save()
            return
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _abandon_and_save(self) -> None:
        """Stop the writer and save what it could not write to the pending folder."""
        self._abandon = True
        self._stop = True
        self._wake.set()
        conn = self._local.conn
        if conn is not None:
            try:
                conn.interrupt()  # a statement waiting for the lock gives up now
            except sqlite3.Error:
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(WRITER_BUSY_TIMEOUT + 1.0)
        in_flight = thread is not None and thread.is_alive()
        batches = []
        if self._held is not None and not in_flight:
            batches.append(self._held)
            self._held = None
        rest = [x for x in self._queue if type(x) is RunEvent]
        self._queue.clear()
        if rest:
            batches.append((_reserve(len(rest)), rest))
        for m in self._waiting:
            m.set()
        n = sum(len(b[1]) for b in batches)
        why = describe_problem(self.problem) if self.problem else "was not taking writes"
        if not n:
            return
        try:
            target = save_pending(self, batches)
        except Exception as exc:  # noqa: BLE001 - nowhere left to keep them
            self.lost += n
            print(
                f"nb2flow: the run store {self.path} {why} at exit: {n} run events of runs "
                f"{_run_names(batches)} were not recorded ({exc})",
                file=sys.stderr,
            )
            return
        print(
            f"nb2flow: the run store {self.path} {why} at exit: {n} run events of runs "
            f"{_run_names(batches)} kept in {target}; the next nb2flow command that writes "
            "the store records them",
            file=sys.stderr,
        )

    def _after_fork(self) -> None:
        # A forked worker inherits the queue and subscription but not the threads; its events
        # reach the flow process by forwarding, so it must not buffer or write them itself.
        events.unsubscribe(self.append)
        self._queue.clear()
        self._held = None
        self._thread = None
        self._local.conn = None
        if self._helper is not None:  # let the helper see the end of its input with the parent
            try:
                os.close(self._helper.fd)
            except OSError:
                pass
            self._helper = None

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._local.open()
        except BaseException as exc:  # noqa: BLE001 - never let the store break a run
            if not (_transient(exc) or isinstance(exc, Transient)):
                self._fail(exc, fatal=True)
                return
            self.problem = exc  # opened again on the first write
        if self._helper_mode == "always" and self._local.conn is not None:
            self._start_helper(wait=True)
        queue, wake = self._queue, self._wake
        popleft = queue.popleft
        interval = IDLE_INTERVAL
        try:
            while not self._abandon:
                wake.wait(interval)
                wake.clear()
                if self._abandon:
                    break
                if self._held is not None:
                    base, items = self._held
                    self._held = None
                    self._dispatch(items, base)
                    if self._held is not None:  # still refused: wait, then try again
                        interval = self._backoff
                        continue
                    self._release_waiting()
                # while events keep coming, drain often so that flush() finds little to do
                busy = self._busy or bool(queue)
                self._busy = False
                interval = BUSY_INTERVAL if busy else IDLE_INTERVAL
                if not queue:
                    self._progress = time.monotonic()  # idle: nothing is waiting on us
                while queue and self._held is None and not self._abandon:
                    items = [popleft() for _ in range(min(len(queue), MAX_BATCH))]
                    markers: list[Any] = [x for x in items if type(x) is not RunEvent]
                    if markers:  # flush() markers (anything else is not an event: ignored)
                        items = [x for x in items if type(x) is RunEvent]
                    try:
                        if items:
                            self._dispatch(items)
                    finally:
                        waiting = [m for m in markers if isinstance(m, threading.Event)]
                        if self._held is not None:
                            self._waiting.extend(waiting)
                            interval = self._backoff
                        else:
                            for m in waiting:
                                self._release(m)
                if self._stop and self._held is None and not queue:
                    break
        finally:
            if self._helper is not None:
                self._helper.close(EXIT_TIMEOUT)
                self._helper = None
            if not self._abandon:
                self._local.close()

    def _release_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for m in waiting:
            self._release(m)

    def _dispatch(self, items: list[RunEvent], base: int | None = None) -> None:
        h = self._helper
        if base is None:
            base = _reserve(len(items))
            if h is None and not self._helper_failed and len(items) >= HELPER_MIN_BATCH:
                self._start_helper(wait=False)  # it takes over once it is ready
            elif h is not None and h.ready.is_set() and not h.dead:
                try:
                    payload = marshal.dumps((base, [tuple(e) for e in items]))
                except ValueError:  # data marshal cannot carry: write this batch here, in order
                    self._sync_helper(h)
                else:
                    try:
                        if not h.took_over:  # from now on the helper knows which runs to skip
                            h.send(b"S", marshal.dumps(sorted(self._local.skip)))
                            h.took_over = True
                        h.send(b"B", payload)
                        return
                    except OSError:  # it died: what it had not committed is counted lost
                        h._died("the helper process is gone")
        try:
            lost = self._local.write(items, base)
        except Transient as exc:  # the store is locked or full for now: keep the batch
            self._held = (base, items)
            self.problem = exc.__cause__ or exc
            self._backoff = min(max(self._backoff * 2, BUSY_INTERVAL), MAX_BACKOFF)
            return
        self._progress = time.monotonic()
        self._backoff = 0.0
        if self.problem is not None:
            self.problem = None
            if self._told_stall:
                self._told_stall = False
                print(f"nb2flow: the run store {self.path} takes writes again", file=sys.stderr)
        self.written += len(items) - lost
        if lost:
            self.lost += lost
            self._fail(self._local.error or RuntimeError("write failed"))

    def _sync_helper(self, h: _Helper) -> None:
        """Wait until the helper has committed everything sent to it (before this thread
        writes a batch itself: a task run's transitions must land in order)."""
        done = threading.Event()
        h.flush(done)
        done.wait(EXIT_TIMEOUT)

    def _release(self, marker: threading.Event) -> None:
        h = self._helper
        if h is not None and h.ready.is_set() and not h.dead:
            h.flush(marker)  # set when the helper has committed everything sent before
        else:
            marker.set()

    def _start_helper(self, wait: bool) -> None:
        try:
            h = _Helper(self.path, self.pid, self._local.proc_start, self)
        except Exception as exc:  # noqa: BLE001 - no helper: the thread keeps writing
            self._helper_failed = True
            self.error = exc
            return
        self._helper = h
        if wait:
            h.ready.wait(30)

    def _fail(self, exc: BaseException, fatal: bool = False) -> None:
        self.error = exc
        if not self._warned:
            self._warned = True
            what = "stops recording" if fatal else "could not write some run events"
            print(f"nb2flow: the run store {self.path} {what}: {exc}", file=sys.stderr)
        if fatal:
            self._dead = True
            events.unsubscribe(self.append)
            while self._queue:  # release anyone waiting in flush()
                item = self._queue.popleft()
                if isinstance(item, threading.Event):
                    item.set()

    # figures of the thread and the helper together

    @property
    def batches(self) -> int:
        return self._local.batches

    @property
    def write_seconds(self) -> float:
        return self._local.write_seconds


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _helper_main(argv: list[str]) -> int:
    """``python -m nb2flow.store.recording --helper PATH PID [PROC_START]``: write the frames
    read on stdin to the store; answer ``R`` when ready and ``A id written lost [error]`` to
    each flush frame, once everything before it is committed."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, pid = Path(argv[0]), int(argv[1])
    writer = _Writer(path, pid, argv[2] if len(argv) > 2 else None)
    out = sys.stdout.buffer
    try:
        writer.open()
    except Exception:  # noqa: BLE001 - the recorder's thread will write (and report) instead
        return 1
    out.write(b"R\n")
    out.flush()
    stdin = sys.stdin.buffer
    seen: set[str] = set()  # the flow runs it wrote to
    while True:
        head = _read_exact(stdin, 5)
        if head is None:
            break
        payload = _read_exact(stdin, int.from_bytes(head[1:], "little"))
        if payload is None:
            break
        kind = head[:1]
        if kind == b"B":
            base, batch = marshal.loads(payload)
            delay = BUSY_INTERVAL
            while True:
                try:
                    writer.write(batch, base)
                    break
                except Transient:  # locked or full for now: the same batch again, later
                    time.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
            seen.update({ev[2] for ev in batch})
            out.write(b"P\n")
            out.flush()
        elif kind == b"S":
            writer.skip = set(marshal.loads(payload))
        elif kind == b"F":
            error = " ".join(str(writer.error or "").split())
            out.write(f"A {payload.decode()} {writer.written} {writer.lost} {error}\n".encode())
            out.flush()
    if not db.process_alive(pid, writer.proc_start):  # the flow process died (kill -9...)
        try:  # its last batch is committed now: mark its runs Crashed at once
            assert writer.conn is not None
            db.sweep_crashed(writer.conn)
            db.close_crashed_tasks(writer.conn, seen)
        except Exception:  # noqa: BLE001 - the next opener sweeps anyway
            pass
    writer.close()
    return 0


_SQL = {
    "flow_runs": "INSERT OR REPLACE INTO flow_runs (id, seq, run_name, flow_name, created,"
    " parameters, task_runner, pid, host, proc_pid, proc_start, extra)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "short": "INSERT OR REPLACE INTO task_runs (flow_run_id, id, seq, name, created, task_key,"
    " state, history, error, result) VALUES (?,?,?,?,?,?,?,?,?,?)",
    "full": "INSERT OR REPLACE INTO task_runs (flow_run_id, id, seq, name, created, task_key,"
    " upstream, edge_names, map_index, state, history, error, result)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    # transitions of a task run whose row an earlier batch wrote (or that was never
    # announced by a task_run event: then a placeholder row, as RunView.apply makes one)
    "updates": "INSERT INTO task_runs (flow_run_id, id, seq, name, task_key, state, history,"
    " error, result) VALUES (?,?,?,'?','',?,?,?,?) ON CONFLICT (flow_run_id, id) DO UPDATE SET"
    " state = excluded.state, history = history || excluded.history,"
    " error = coalesce(excluded.error, error), result = coalesce(excluded.result, result)",
    "states": "INSERT INTO states (flow_run_id, seq, task_run_id, ts, state, attempt, message,"
    " error, traceback, cached_from) VALUES (?,?,?,?,?,?,?,?,?,?)",
    "logs": "INSERT INTO logs (flow_run_id, seq, task_run_id, ts, level, levelname, message,"
    " logger) VALUES (?,?,?,?,?,?,?,?)",
    "artifacts": "INSERT INTO artifacts (flow_run_id, seq, task_run_id, ts, kind, name, text,"
    " parts, truncated) VALUES (?,?,?,?,?,?,?,?,?)",
    "flows": 'UPDATE flow_runs SET state = ?, start = coalesce(start, ?), "end" = coalesce(?, "end"),'
    " error = coalesce(?, error), traceback = coalesce(?, traceback),"
    " result = coalesce(?, result) WHERE id = ?",
}


def _insert(c: sqlite3.Connection, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    for key, sql in _SQL.items():  # in this order: rows exist before they are updated
        if key == "flows":
            _overrule_sweep(c, {r[-1] for r in rows[key]})
        if rows[key]:
            c.executemany(sql, rows[key])


def _overrule_sweep(c: sqlite3.Connection, run_ids: set[str]) -> None:
    """The process recording a run writes a state of it: it was alive, so a crash sweep
    that marked the run Crashed (wrongly: it could not see the process) is undone, and the
    process's own state is the one both ``runs`` and ``show`` report."""
    for run_id in run_ids:
        gone = c.execute(
            "DELETE FROM states WHERE flow_run_id = ? AND task_run_id IS NULL AND seq >= ?",
            (run_id, db.CRASH_SEQ),
        ).rowcount
        if gone:
            c.execute(
                'UPDATE flow_runs SET error = NULL, traceback = NULL, "end" = NULL WHERE id = ?',
                (run_id,),
            )


# -- records kept for later ---------------------------------------------------------------


def _run_names(batches: list[tuple[int, list[Any]]]) -> str:
    ids = sorted({ev[2] for _, batch in batches for ev in batch})
    return ", ".join(i[:8] for i in ids[:5]) + (", ..." if len(ids) > 5 else "")


def save_pending(rec: Recorder, batches: list[tuple[int, list[Any]]]) -> Path:
    """Write ``batches`` (``(base seq, events)``) for the next writer: one 0600 JSON file in
    the store's ``pending/`` folder. Returns its path."""
    from nb2flow import files

    folder = files.private_dir(db.pending_dir(rec.path))
    body = {
        "version": 1,
        "pid": rec.pid,
        "proc_start": rec._local.proc_start,
        "host": db.HOST,
        "skip": sorted(rec._local.skip),
        "runs": sorted({ev[2] for _, batch in batches for ev in batch}),
        "batches": [[base, [list(ev) for ev in batch]] for base, batch in batches],
    }
    target = folder / f"{rec.pid}-{os.urandom(6).hex()}.json"
    files.write_private(target, json.dumps(body, default=_pending_json).encode())
    return target


def _pending_json(value: Any) -> Any:
    """Bytes in pending records (an artifact's PNG) as ``{"$bytes": base64}``; anything else
    JSON cannot hold as its repr."""
    if isinstance(value, (bytes, bytearray)):
        import base64

        return {"$bytes": base64.b64encode(value).decode("ascii")}
    return repr(value)


def _pending_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$bytes" in obj:
        import base64

        return base64.b64decode(obj["$bytes"])
    return obj


def replay_pending(writer: _Writer) -> int:
    """Record what processes left in the pending folder (see :func:`save_pending`), oldest
    first; each file is removed once its records are committed. Files another account could
    have written are left alone. Returns the number of files recorded."""
    from nb2flow import files

    folder = db.pending_dir(writer.path)
    try:
        found = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return 0
    conn = writer.conn
    assert conn is not None
    done = 0
    for found_path in found:
        path = found_path.with_suffix(f".claimed-{os.getpid()}")
        try:
            os.rename(found_path, path)  # of two processes replaying it, one does
        except OSError:
            continue
        try:
            body = json.loads(
                bytes(files.read_trusted(path, folder.parent)).decode("utf-8"),
                object_hook=_pending_object,
            )
            other = _Writer(writer.path, int(body["pid"]), body.get("proc_start"))
            other.conn = conn
            other.skip = set(body.get("skip", []))
            for base, batch in body["batches"]:
                rows = other._rows([tuple(ev) for ev in batch], int(base))

                def body_of(c: sqlite3.Connection, rows: Any = rows) -> None:
                    _insert(c, rows)

                db.transaction(conn, body_of, deadline=0)
        except sqlite3.OperationalError:
            os.rename(path, found_path)  # locked or full: the file stays for the next try
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            files.warn_once(f"pending run records {path} are not used: {exc}", key=str(path))
            continue
        path.unlink(missing_ok=True)
        done += 1
    return done


def replay_pending_for_reading(path: Path | None = None) -> None:
    """Before ``runs``/``show``/``report`` read the store: record what processes left
    pending, so that they show those runs as they ended (nothing to do, and no write, in
    the usual case; a store that cannot be written now is read as it is)."""
    target = path or db.default_path()
    try:
        if not any(db.pending_dir(target).glob("*.json")):
            return
    except OSError:
        return
    writer = _Writer(target, os.getpid(), None)
    try:
        writer.open()  # replays, then sweeps
    except Exception:  # noqa: BLE001 - read-only, locked, damaged: the readers say so
        pass
    finally:
        writer.close()


# -- the process-wide recorder ---------------------------------------------------------------

_warned = False


def _warn(what: str, exc: BaseException) -> None:
    """One line on stderr, once per process: the runs go on without being recorded."""
    global _warned
    if not _warned:
        _warned = True
        print(f"warning: run history not recorded: {what}: {error_line(exc)}", file=sys.stderr)


def observe(run: RunStart) -> Attachment | None:
    """The store's observer of a top-level flow run: record it (unless it is not to be
    persisted) and, when it has ended, wait until every event of it is written."""
    if not run.persist:
        return None
    try:
        rec = enable()
    except Exception as exc:  # noqa: BLE001 - an unusable store must not stop the flow
        _warn("cannot open the run store", exc)
        return None

    def flush() -> None:
        try:
            rec.flush()
        except Exception as exc:  # noqa: BLE001
            _warn("cannot write the run store", exc)

    return Attachment(records=True, close=flush)


_recorder: Recorder | None = None
_lock = threading.Lock()
_atexit_registered = False


def enable(path: str | os.PathLike[str] | None = None) -> Recorder:
    """Subscribe the recorder to run events (once per process and store file); return it.

    Idempotent and cheap: calling it again returns the running recorder, unless the store
    file changed (``$NB2FLOW_HOME`` or ``path``), in which case the old recorder is flushed
    and closed and a new one records to the new file.
    """
    global _recorder, _atexit_registered
    target = Path(path) if path is not None else db.default_path()
    rec = _recorder
    if rec is not None and rec.path == target and rec.pid == os.getpid():
        rec.kick()
        return rec
    with _lock:
        rec = _recorder
        if rec is not None and rec.path == target and rec.pid == os.getpid():
            return rec
        if rec is not None and rec.pid == os.getpid():
            rec.close()
        rec = Recorder(target).start()
        events.subscribe(rec.append)
        _recorder = rec
        if not _atexit_registered:
            atexit.register(_flush_at_exit)
            _atexit_registered = True
    return rec


def disable() -> None:
    """Unsubscribe and close the recorder (flushing what is queued)."""
    global _recorder
    with _lock:
        rec, _recorder = _recorder, None
    if rec is not None and rec.pid == os.getpid():
        rec.close()


def current() -> Recorder | None:
    """The recorder enabled in this process, if any."""
    return _recorder


def _flush_at_exit() -> None:
    rec = _recorder
    if rec is not None and rec.pid == os.getpid():
        rec.close(EXIT_TIMEOUT)


def _after_fork_in_child() -> None:
    global _recorder
    rec, _recorder = _recorder, None
    if rec is not None:
        rec._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

if __name__ == "__main__" and sys.argv[1:2] == ["--helper"]:
    sys.exit(_helper_main(sys.argv[2:]))
