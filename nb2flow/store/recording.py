"""The recorder: subscribes to run events and writes them to the run store off the hot path.

The subscriber is the ``append`` of a :class:`collections.deque` (a C call, no Python frame):
that is all a task run pays. A background thread wakes every :data:`BUSY_INTERVAL` seconds
while events come (:data:`IDLE_INTERVAL` when none came, at once on :meth:`Recorder.flush`),
drains the queue and writes the batch with ``executemany`` in one ``BEGIN IMMEDIATE``
transaction. A batch that fails for another reason than a lock is written event by event,
so one bad event costs only itself.

The runtime calls :func:`enable` on a flow run (cheap and idempotent: it returns the running
recorder unless ``$NB2FLOW_HOME`` changed) and :meth:`Recorder.flush` at the end of each
top-level flow run. The recorder also flushes at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import struct
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from nb2flow.runtime import events
from nb2flow.runtime.events import RunEvent
from nb2flow.runtime.states import ALL_STATES, FINAL_STATES, RUNNING
from nb2flow.store import db

#: seconds between two drains of the queue while events keep coming / when it was empty
#: (flush() wakes the writer at once)
BUSY_INTERVAL = 0.05
IDLE_INTERVAL = 0.25
#: most events written in one transaction (bounds how long the write lock is held)
MAX_BATCH = 20_000
#: seconds :func:`_flush_at_exit` waits for the last batch
EXIT_TIMEOUT = 30.0

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


_DOUBLE = struct.Struct("<d")
_STATES = frozenset(ALL_STATES)
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
        self._busy = True
        self._stop = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._proc_start = db.process_start(self.pid)
        #: figures: events written, events lost (could not be written), batches, seconds
        self.written = 0
        self.lost = 0
        self.batches = 0
        self.write_seconds = 0.0
        #: the last write error (the recorder keeps going; runs never fail for it)
        self.error: BaseException | None = None
        self._warned = False
        self._dead = False
        #: flow runs not to record (persist=False), until they end
        self._skip: set[str] = set()

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
        """Block until every event emitted so far is committed. False on timeout or when
        some could not be written (``error`` says why; runs never fail for it)."""
        if self._dead:
            return False
        lost = self.lost
        if self._thread is None or not self._thread.is_alive():
            if not self._queue:
                return True
            self.start()
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        return done.wait(timeout) and self.lost == lost and not self._dead

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
        popleft = queue.popleft
        interval = IDLE_INTERVAL
        while True:
            wake.wait(interval)
            wake.clear()
            # while events keep coming, drain often so that flush() finds little left to do
            busy = self._busy or bool(queue)
            self._busy = False
            interval = BUSY_INTERVAL if busy else IDLE_INTERVAL
            while queue:
                items = [popleft() for _ in range(min(len(queue), MAX_BATCH))]
                markers = [x for x in items if type(x) is not RunEvent]
                if markers:  # flush() markers (anything else is not an event: ignored)
                    items = [x for x in items if type(x) is RunEvent]
                try:
                    if items:
                        self._write(items)
                finally:
                    for m in markers:
                        if isinstance(m, threading.Event):
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
            what = "stops recording" if fatal else "could not write some run events"
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
        skip = set(self._skip)
        try:
            self._commit(batch)
        except Exception:  # noqa: BLE001 - a bad event or a sick file: save what can be saved
            self._skip = skip
            lost, last = 0, None
            for ev in batch:
                try:
                    self._commit([ev])
                except Exception as exc:  # noqa: BLE001
                    lost, last = lost + 1, exc
            if last is not None:
                self.lost += lost
                self._fail(last)
        self.batches += 1
        self.write_seconds += time.perf_counter() - t0

    def _commit(self, batch: list[RunEvent]) -> None:
        assert self._conn is not None
        rows = self._rows(batch)
        db.transaction(self._conn, lambda c: _insert(c, rows))  # retried while locked
        self.written += len(batch)

    def _rows(self, batch: list[RunEvent]) -> dict[str, list[tuple[Any, ...]]]:
        """Turn events into rows. A task run's transitions go into its one ``task_runs`` row
        (inserted with its whole batch history, or appended to in a later batch)."""
        flow_runs, states, logs = [], [], []
        # task run id -> [flow run id, state, history parts, error, new row or None, seq]
        tasks: dict[str, list[Any]] = {}
        flows: dict[str, list[Any]] = {}  # flow run id -> [state, start, end, error, tb]
        skip = self._skip
        pack = _DOUBLE.pack  # see db.format_ts
        # seq numbers for this batch: reserve len(batch) of the process-wide counter
        base = _reserve(len(batch))
        for n, (kind, ts, fid, tid, d) in enumerate(batch, base):
            if skip and fid in skip:  # a run of a @flow(persist=False) (or of its subflows)
                if kind == "flow_state" and d.get("state") in FINAL_STATES:
                    skip.discard(fid)
                continue
            if kind == "task_state":
                state = d.get("state")
                if state not in _STATES:  # keep the history parseable whatever comes
                    state = str(state).replace(";", " ").replace(",", " ")
                attempt = d.get("attempt")
                t = tasks.get(tid)
                if t is None:
                    t = tasks[tid] = [fid, state, "", None, None, n]
                t[1] = state
                t[2] += f";{pack(ts).hex()},{state},{'' if attempt is None else attempt}"
                message = d.get("message")
                # details beyond state/attempt/an empty message (rare): keep them in `states`
                if message or len(d) > 2 + (message is not None) or "attempt" not in d:
                    error, tb = d.get("error"), d.get("traceback")
                    cached_from = d.get("cached_from")
                    message = message or None
                    if message or error is not None or tb is not None or cached_from is not None:
                        states.append(
                            (fid, n, tid, ts, state, attempt, message, error, tb, cached_from)
                        )
                        t[2] += f",{n}"  # links the history entry to its details
                        if error is not None:
                            t[3] = error
            elif kind == "task_run":
                name = d.get("task_name", "?")
                key = d.get("task_key", name)
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
                t = tasks.get(tid)
                if t is None:
                    tasks[tid] = [fid, "Pending", "", None, row, n]
                else:  # its first state came first: keep it
                    t[4] = row
            elif kind == "log":
                logs.append(
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
            elif kind == "flow_state":
                state = d.get("state")
                error, tb = d.get("error"), d.get("traceback")
                states.append((fid, n, None, ts, state, None, d.get("message"), error, tb, None))
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
                if d.get("persist") is False or d.get("parent_flow_run_id") in skip:
                    skip.add(fid)
                    continue
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
                        db.HOST,
                        self.pid,
                        self._proc_start,
                        _json(extra) if extra else None,
                    )
                )
        short, full, updates = [], [], []
        for tid, (fid, state, history, error, row, first) in tasks.items():
            if row is None:
                updates.append((fid, tid, first, state, history, error))
            elif len(row) == 6:
                short.append((*row, state, history, error))
            else:
                full.append((*row, state, history, error))
        return {
            "flow_runs": flow_runs,
            "short": short,
            "full": full,
            "updates": updates,
            "states": states,
            "logs": logs,
            "flows": [(*v, k) for k, v in flows.items()],
        }


_SQL = {
    "flow_runs": "INSERT OR REPLACE INTO flow_runs (id, seq, run_name, flow_name, created,"
    " parameters, task_runner, pid, host, proc_pid, proc_start, extra)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "short": "INSERT OR REPLACE INTO task_runs (flow_run_id, id, seq, name, created, task_key,"
    " state, history, error) VALUES (?,?,?,?,?,?,?,?,?)",
    "full": "INSERT OR REPLACE INTO task_runs (flow_run_id, id, seq, name, created, task_key,"
    " upstream, edge_names, map_index, state, history, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    # transitions of a task run whose row an earlier batch wrote (or that was never
    # announced by a task_run event: then a placeholder row, as RunView.apply makes one)
    "updates": "INSERT INTO task_runs (flow_run_id, id, seq, name, task_key, state, history,"
    " error) VALUES (?,?,?,'?','',?,?,?) ON CONFLICT (flow_run_id, id) DO UPDATE SET"
    " state = excluded.state, history = history || excluded.history,"
    " error = coalesce(excluded.error, error)",
    "states": "INSERT INTO states (flow_run_id, seq, task_run_id, ts, state, attempt, message,"
    " error, traceback, cached_from) VALUES (?,?,?,?,?,?,?,?,?,?)",
    "logs": "INSERT INTO logs (flow_run_id, seq, task_run_id, ts, level, levelname, message,"
    " logger) VALUES (?,?,?,?,?,?,?,?)",
    "flows": 'UPDATE flow_runs SET state = ?, start = coalesce(start, ?), "end" = coalesce(?, "end"),'
    " error = coalesce(?, error), traceback = coalesce(?, traceback) WHERE id = ?",
}


def _insert(c: sqlite3.Connection, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    for key, sql in _SQL.items():  # in this order: rows exist before they are updated
        if rows[key]:
            c.executemany(sql, rows[key])


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
