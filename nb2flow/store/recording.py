"""The recorder: subscribes to run events and writes them to the run store off the hot path.

The subscriber is the ``append`` of a :class:`collections.deque` (a C call, no Python frame):
that is all a task run pays. A background thread wakes every :data:`INTERVAL` seconds (or
at once on :meth:`Recorder.flush`), drains the queue and writes the batch with
``executemany`` in one ``BEGIN IMMEDIATE`` transaction.

The runtime calls :func:`enable` on a flow run (cheap and idempotent: it returns the running
recorder unless ``$NB2FLOW_HOME`` changed) and :meth:`Recorder.flush` at the end of each
top-level flow run. The recorder also flushes at interpreter exit.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import sqlite3
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from nb2flow.runtime import events
from nb2flow.runtime.events import RunEvent
from nb2flow.runtime.states import FINAL_STATES, RUNNING
from nb2flow.store import db

#: seconds between two drains of the queue when nobody asks for a flush
INTERVAL = 0.1
#: most events written in one transaction (bounds how long the write lock is held)
MAX_BATCH = 20_000
#: seconds :func:`_flush_at_exit` waits for the last batch
EXIT_TIMEOUT = 30.0

# one counter per process: the order of a run's rows (all recorded by one process)
_seq = itertools.count(1)

_FLOW_RUN_KEYS = frozenset({"flow_name", "run_name", "parameters", "pid", "task_runner"})


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, separators=(",", ":"))


class Recorder:
    """Writes the run events of this process to one store file."""

    def __init__(self, path: Path):
        self.path = path
        self.pid = os.getpid()
        self._queue: deque[Any] = deque()
        #: the subscriber: appending to the queue is all the hot path does
        self.append = self._queue.append
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._proc_start = db.process_start(self.pid)
        #: figures: events written, batches (transactions), seconds spent writing
        self.written = 0
        self.batches = 0
        self.write_seconds = 0.0
        #: the last write error (the recorder keeps going; runs never fail for it)
        self.error: BaseException | None = None
        self._warned = False
        self._dead = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Recorder:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="nb2flow-store", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event emitted so far is committed. False on timeout."""
        if self._dead:
            return True
        if self._thread is None or not self._thread.is_alive():
            if not self._queue:
                return True
            self.start()
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = EXIT_TIMEOUT) -> None:
        """Unsubscribe, write what is queued and stop the writer thread."""
        events.unsubscribe(self.append)
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _after_fork(self) -> None:
        # A forked worker inherits the queue and subscription but not the thread; its events
        # reach the flow process by forwarding, so it must not buffer or write them itself.
        events.unsubscribe(self.append)
        self._queue.clear()
        self._thread = None
        self._conn = None

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._conn = db.connect(self.path)
            db.sweep_crashed(self._conn)
        except BaseException as exc:  # noqa: BLE001 - never let the store break a run
            self._fail(exc, fatal=True)
            return
        queue, wake = self._queue, self._wake
        while True:
            wake.wait(INTERVAL)
            wake.clear()
            while queue:
                batch: list[RunEvent] = []
                markers: list[threading.Event] = []
                popleft = queue.popleft
                try:
                    while len(batch) < MAX_BATCH:
                        item = popleft()
                        if type(item) is RunEvent:
                            batch.append(item)
                        elif isinstance(item, threading.Event):
                            markers.append(item)
                            break  # the flusher is waiting: commit now
                        # anything else was not an event: ignore it
                except IndexError:
                    pass
                if batch:
                    self._write(batch)
                for m in markers:
                    m.set()
            if self._stop:
                break
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _fail(self, exc: BaseException, fatal: bool = False) -> None:
        self.error = exc
        if not self._warned:
            self._warned = True
            what = "stops recording" if fatal else "lost a batch of run events"
            print(f"nb2flow: the run store {self.path} {what}: {exc}", file=sys.stderr)
        if fatal:
            self._dead = True
            events.unsubscribe(self.append)
            while self._queue:  # release anyone waiting in flush()
                item = self._queue.popleft()
                if isinstance(item, threading.Event):
                    item.set()

    def _write(self, batch: list[RunEvent]) -> None:
        t0 = time.perf_counter()
        rows = self._rows(batch)
        assert self._conn is not None
        for attempt in range(3):
            try:
                db.transaction(self._conn, lambda c: _insert(c, rows))
                self.written += len(batch)
                break
            except sqlite3.Error as exc:  # busy is retried inside; this is something else
                if attempt == 2:
                    self._fail(exc)
                else:
                    time.sleep(0.1 * (attempt + 1))
        self.batches += 1
        self.write_seconds += time.perf_counter() - t0

    def _rows(self, batch: list[RunEvent]) -> dict[str, Any]:
        """Turn events into rows; coalesce each run's and task run's summary columns."""
        flow_runs, task_runs, states, logs = [], [], [], []
        tasks: dict[str, list[Any]] = {}  # id -> [state, attempts, start, end, error, tb, cf]
        flows: dict[str, list[Any]] = {}  # id -> [state, start, end, error, tb]
        seq = _seq
        host, pid, proc_start = db.HOST, self.pid, self._proc_start
        for kind, ts, fid, tid, d in batch:
            n = next(seq)
            if kind == "task_state":
                state = d.get("state")
                attempt = d.get("attempt")
                error, tb, cached_from = d.get("error"), d.get("traceback"), d.get("cached_from")
                states.append(
                    (fid, tid, n, ts, state, attempt, d.get("message"), error, tb, cached_from)
                )
                t = tasks.get(tid)
                if t is None:
                    t = tasks[tid] = [state, 0, None, None, None, None, None]
                t[0] = state
                if attempt and attempt > t[1]:
                    t[1] = attempt
                if state in FINAL_STATES:
                    t[3] = ts
                    if t[2] is None:
                        t[2] = ts
                elif state == RUNNING and t[2] is None:
                    t[2] = ts
                if error is not None:
                    t[4] = error
                if tb is not None:
                    t[5] = tb
                if cached_from is not None:
                    t[6] = cached_from
            elif kind == "task_run":
                upstream = d.get("upstream")
                edges = d.get("edge_names")
                task_runs.append(
                    (
                        tid,
                        fid,
                        n,
                        d.get("task_name", "?"),
                        d.get("task_key", ""),
                        _json(list(upstream)) if upstream else None,
                        _json(edges) if edges else None,
                        d.get("map_index"),
                        ts,
                    )
                )
            elif kind == "log":
                logs.append(
                    (
                        fid,
                        tid,
                        n,
                        ts,
                        int(d.get("level", 20)),
                        d.get("levelname", "INFO"),
                        str(d.get("message", "")),
                        d.get("logger", ""),
                    )
                )
            elif kind == "flow_state":
                state = d.get("state")
                error, tb = d.get("error"), d.get("traceback")
                states.append((fid, None, n, ts, state, None, d.get("message"), error, tb, None))
                f = flows.get(fid)
                if f is None:
                    f = flows[fid] = [state, None, None, None, None]
                f[0] = state
                if state == RUNNING and f[1] is None:
                    f[1] = ts
                if state in FINAL_STATES:
                    f[2] = ts
                if error is not None:
                    f[3] = error
                if tb is not None:
                    f[4] = tb
            elif kind == "flow_run":
                extra = {k: v for k, v in d.items() if k not in _FLOW_RUN_KEYS}
                flow_runs.append(
                    (
                        fid,
                        n,
                        d.get("run_name", ""),
                        d.get("flow_name", ""),
                        ts,
                        _json(d.get("parameters") or {}),
                        d.get("task_runner", ""),
                        d.get("pid"),
                        host,
                        pid,
                        proc_start,
                        _json(extra) if extra else None,
                    )
                )
        return {
            "flow_runs": flow_runs,
            "task_runs": task_runs,
            "states": states,
            "logs": logs,
            "tasks": [(*v, k) for k, v in tasks.items()],
            "flows": [(*v, k) for k, v in flows.items()],
        }


def _insert(c: sqlite3.Connection, rows: dict[str, Any]) -> None:
    if rows["flow_runs"]:
        c.executemany(
            "INSERT OR REPLACE INTO flow_runs (id, seq, run_name, flow_name, created, parameters,"
            " task_runner, pid, host, proc_pid, proc_start, extra)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows["flow_runs"],
        )
    if rows["task_runs"]:
        c.executemany(
            "INSERT OR REPLACE INTO task_runs (id, flow_run_id, seq, name, task_key, upstream,"
            " edge_names, map_index, created) VALUES (?,?,?,?,?,?,?,?,?)",
            rows["task_runs"],
        )
    if rows["states"]:
        c.executemany(
            "INSERT INTO states (flow_run_id, task_run_id, seq, ts, state, attempt, message,"
            " error, traceback, cached_from) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows["states"],
        )
    if rows["logs"]:
        c.executemany(
            "INSERT INTO logs (flow_run_id, task_run_id, seq, ts, level, levelname, message,"
            " logger) VALUES (?,?,?,?,?,?,?,?)",
            rows["logs"],
        )
    if rows["tasks"]:
        c.executemany(
            "UPDATE task_runs SET state = ?, attempts = max(attempts, ?), start = coalesce(start, ?),"
            ' "end" = coalesce(?, "end"), error = coalesce(?, error),'
            " traceback = coalesce(?, traceback), cached_from = coalesce(?, cached_from)"
            " WHERE id = ?",
            rows["tasks"],
        )
    if rows["flows"]:
        c.executemany(
            'UPDATE flow_runs SET state = ?, start = coalesce(start, ?), "end" = coalesce(?, "end"),'
            " error = coalesce(?, error), traceback = coalesce(?, traceback) WHERE id = ?",
            rows["flows"],
        )


# -- the process-wide recorder ---------------------------------------------------------------

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
