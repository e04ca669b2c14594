"""The run store: events -> SQLite -> RunView, schema, ref resolution, crash sweep, atexit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core import events
from nb2flow.runtime.core.model import RunView
from nb2flow.store import db, history, recording
from nb2flow.store.db import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def recorder():
    rec = recording.enable()
    yield rec
    recording.disable()


@pytest.fixture(params=["thread", "helper"])
def helper_mode(request, monkeypatch):
    """Write in the recorder's thread, or through the helper process."""
    monkeypatch.setenv("NB2FLOW_STORE_HELPER", "never" if request.param == "thread" else "always")
    return request.param


@pytest.fixture
def live():
    """Every event emitted while the test runs, as a live observer sees them."""
    seen: list[events.RunEvent] = []
    events.subscribe(seen.append)
    yield seen
    events.unsubscribe(seen.append)


def emit_run(
    flow_name: str = "demo",
    run_name: str | None = None,
    *,
    fail: bool = True,
    finish: bool = True,
    run_id: str | None = None,
) -> str:
    """Emit the events of a run that has every interesting shape: a retry, a failure with
    a traceback, a NotRun downstream, a cached task, edge names, a map index, logs."""
    fid = run_id or uuid.uuid4().hex
    t = time.time()
    emit = events.emit
    emit(
        "flow_run",
        fid,
        data={
            "flow_name": flow_name,
            "run_name": run_name or f"brave-{fid[:6]}",
            "parameters": {"n": "3", "path": "'data.csv'"},
            "pid": os.getpid(),
            "task_runner": "threads",
            "parent_task_run_id": None,
        },
        ts=t,
    )
    emit("flow_state", fid, data={"state": "Pending", "message": ""}, ts=t)
    emit("flow_state", fid, data={"state": "Running", "message": ""}, ts=t + 0.001)
    ids = {name: uuid.uuid4().hex for name in ("load", "feat", "train", "report", "cached")}
    emit(
        "task_run",
        fid,
        ids["load"],
        {"task_name": "load", "task_key": "load", "upstream": [], "edge_names": {}},
        ts=t + 0.002,
    )
    emit(
        "task_run",
        fid,
        ids["cached"],
        {"task_name": "cached", "task_key": "cached", "upstream": [], "map_index": 0},
        ts=t + 0.002,
    )
    emit(
        "task_run",
        fid,
        ids["feat"],
        {
            "task_name": "feat",
            "task_key": "feat",
            "upstream": [ids["load"]],
            "edge_names": {ids["load"]: ["df_train", "df_val"]},
        },
        ts=t + 0.003,
    )
    emit(
        "task_run",
        fid,
        ids["train"],
        {"task_name": "train", "task_key": "train", "upstream": [ids["feat"]]},
        ts=t + 0.003,
    )
    emit(
        "task_run",
        fid,
        ids["report"],
        {"task_name": "report", "task_key": "report", "upstream": [ids["train"]]},
        ts=t + 0.003,
    )
    emit("task_state", fid, ids["cached"], {"state": "Cached", "cached_from": "f0"}, ts=t + 0.004)
    emit("task_state", fid, ids["load"], {"state": "Running", "attempt": 1}, ts=t + 0.004)
    emit("log", fid, ids["load"], {"level": 20, "levelname": "INFO", "message": "rows: 10"})
    emit(
        "task_state",
        fid,
        ids["load"],
        {"state": "Retrying", "attempt": 1, "error": "OSError: flaky", "message": "retry in 0s"},
        ts=t + 0.005,
    )
    emit("task_state", fid, ids["load"], {"state": "Running", "attempt": 2}, ts=t + 0.006)
    emit("task_state", fid, ids["load"], {"state": "Completed", "attempt": 2}, ts=t + 0.007)
    emit("task_state", fid, ids["feat"], {"state": "Running", "attempt": 1}, ts=t + 0.008)
    emit("task_state", fid, ids["feat"], {"state": "Completed", "attempt": 1}, ts=t + 0.009)
    emit("task_state", fid, ids["train"], {"state": "Running", "attempt": 1}, ts=t + 0.010)
    if not finish:
        return fid
    if fail:
        tb = 'Traceback (most recent call last):\n  File "x.py", line 3\nValueError: bad depth\n'
        emit(
            "task_state",
            fid,
            ids["train"],
            {"state": "Failed", "attempt": 1, "error": "ValueError: bad depth", "traceback": tb},
            ts=t + 0.011,
        )
        emit("task_state", fid, ids["report"], {"state": "NotRun", "attempt": 0}, ts=t + 0.011)
        emit("log", fid, None, {"level": 40, "levelname": "ERROR", "message": "train failed"})
        emit(
            "flow_state",
            fid,
            data={"state": "Failed", "error": "ValueError: bad depth", "traceback": tb},
            ts=t + 0.012,
        )
    else:
        emit("task_state", fid, ids["train"], {"state": "Completed", "attempt": 1}, ts=t + 0.011)
        emit("task_state", fid, ids["report"], {"state": "Running", "attempt": 1}, ts=t + 0.011)
        emit("task_state", fid, ids["report"], {"state": "Completed", "attempt": 1}, ts=t + 0.012)
        emit("flow_state", fid, data={"state": "Completed"}, ts=t + 0.013)
    return fid


def test_round_trip_equals_the_live_view(helper_mode, recorder, live):
    failed = emit_run(fail=True)
    ok = emit_run(fail=False)
    assert recorder.flush(10)
    with Store() as store:
        for fid in (failed, ok):
            stored = store.load_run(fid)
            assert stored == RunView.from_events(fid, live)
            assert stored.version == sum(1 for ev in live if ev.flow_run_id == fid)
        view = store.load_run(failed)
    assert view.state == "Failed" and view.error == "ValueError: bad depth"
    assert "ValueError: bad depth" in (view.traceback or "")
    by_name = {t.name: t for t in view.tasks.values()}
    assert [t.name for t in view.tasks.values()] == ["load", "cached", "feat", "train", "report"]
    assert by_name["load"].attempts == 2 and by_name["load"].state == "Completed"
    assert [s for s, _, _ in by_name["load"].history] == [
        "Running",
        "Retrying",
        "Running",
        "Completed",
    ]
    assert by_name["report"].state == "NotRun"
    assert by_name["cached"].cached_from == "f0" and by_name["cached"].map_index == 0
    assert by_name["feat"].edge_names == {by_name["load"].id: ["df_train", "df_val"]}
    assert view.parameters == {"n": "3", "path": "'data.csv'"}
    assert [log.message for log in view.logs] == ["rows: 10", "train failed"]
    assert view.logs[0].task_run_id == by_name["load"].id


def test_listing_counts_and_flows(recorder):
    a = emit_run("alpha", "quick-fox", fail=True)
    time.sleep(0.01)
    b = emit_run("beta", "lazy-dog", fail=False)
    assert recorder.flush(10)
    with Store() as store:
        runs = store.list_runs()
        assert [r.id for r in runs] == [b, a]  # most recent first
        fa = store.summary("quick-fox")
        assert (fa.state, fa.tasks, fa.done, fa.failed) == ("Failed", 5, 3, 1)
        assert fa.counts == {"Completed": 2, "Cached": 1, "Failed": 1, "NotRun": 1}
        assert fa.duration == pytest.approx(0.011, abs=1e-6)  # Running -> Failed
        assert [r.id for r in store.list_runs(flow="alpha")] == [a]
        assert [r.id for r in store.list_runs(limit=1)] == [b]
        assert [r.id for r in store.list_runs(state="Completed")] == [b]
        assert [f[0] for f in store.flows()] == ["beta", "alpha"]
        # the summary columns agree with the replayed view
        view = store.load_run(a)
        row = store.conn.execute(
            'SELECT state, start, "end", error FROM flow_runs WHERE id = ?', (a,)
        ).fetchone()
        assert row == (view.state, view.start, view.end, view.error)
        for t in view.tasks.values():
            state, error, past = store.conn.execute(
                "SELECT state, error, history FROM task_runs WHERE id = ?", (t.id,)
            ).fetchone()
            assert (state, error) == (t.state, t.error)
            assert [(h.state, h.ts) for h in history.decode(past)] == [
                (s, ts) for s, ts, _ in t.history
            ]


def test_resolve_by_id_prefix_and_name(recorder):
    ids = [emit_run(run_id=f"abc{i}" + uuid.uuid4().hex, run_name=f"run-{i}") for i in range(2)]
    emit_run(run_id="ffff" + uuid.uuid4().hex, run_name="twin")
    emit_run(run_id="eeee" + uuid.uuid4().hex, run_name="twin")
    assert recorder.flush(10)
    with Store() as store:
        assert store.resolve(ids[0]) == ids[0]
        assert store.resolve(ids[1][:6]) == ids[1]
        assert store.resolve("run-0") == ids[0]
        with pytest.raises(Nb2flowError, match="ambiguous"):
            store.resolve("abc")
        with pytest.raises(Nb2flowError, match="2 runs are named 'twin'"):
            store.resolve("twin")
        with pytest.raises(Nb2flowError, match="no run named 'nope'"):
            store.load_run("nope")
        with pytest.raises(Nb2flowError, match="no run named 'ABC0'"):
            store.resolve("ABC0")  # prefixes are case-sensitive (LIKE is not)
        with pytest.raises(Nb2flowError, match="no run named 'ab_'"):
            store.resolve("ab_")  # LIKE wildcards are literal


def test_schema_is_versioned_and_in_wal_mode():
    with Store() as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        path = store.path
    assert path == Path(os.environ["NB2FLOW_HOME"]) / "runs.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(Nb2flowError, match="newer than this nb2flow"):
        Store()


def test_migrations_run_once_from_an_empty_file(tmp_path):
    path = tmp_path / "runs.db"
    for _ in range(2):  # the second open finds the schema in place
        Store(path).close()
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"flow_runs", "task_runs", "states", "logs"} <= tables


def test_enable_is_idempotent_and_follows_nb2flow_home(tmp_path, monkeypatch):
    rec = recording.enable()
    try:
        assert recording.enable() is rec
        assert events.subscribers().count(rec.append) == 1
        fid = emit_run()
        monkeypatch.setenv("NB2FLOW_HOME", str(tmp_path / "other"))
        rec2 = recording.enable()  # a new home: the old recorder is flushed and closed
        assert rec2 is not rec and rec.append not in events.subscribers()
        fid2 = emit_run()
        assert rec2.flush(10)
        with Store(rec.path) as old, Store(rec2.path) as new:
            assert [r.id for r in old.list_runs()] == [fid]
            assert [r.id for r in new.list_runs()] == [fid2]
    finally:
        recording.disable()
    assert recording.current() is None


def _python(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_events_are_written_at_normal_exit_without_flush(helper_mode):
    code = """
        from nb2flow.store import recording
        from nb2flow.runtime.core import events
        recording.enable()
        events.emit("flow_run", "exit-run", data={"flow_name": "f", "run_name": "bye-bye"})
        events.emit("flow_state", "exit-run", data={"state": "Completed"})
        for i in range(500):
            events.emit("task_run", "exit-run", f"t{i}", {"task_name": "t"})
    """
    proc = _python(code)
    assert proc.wait(60) == 0
    with Store() as store:
        s = store.summary("bye-bye")
    assert s.state == "Completed" and s.tasks == 500


def test_a_killed_process_run_is_marked_crashed_by_the_next_opener():
    code = """
        import time
        from nb2flow.store import recording
        from nb2flow.runtime.core import events
        rec = recording.enable()
        events.emit("flow_run", "doomed", data={"flow_name": "f", "run_name": "doomed-run"})
        events.emit("flow_state", "doomed", data={"state": "Running"})
        for i, state in enumerate(["Completed", "Running", "Pending"]):
            events.emit("task_run", "doomed", f"t{i}", {"task_name": f"t{i}"})
            if state != "Pending":
                events.emit("task_state", "doomed", f"t{i}", {"state": "Running", "attempt": 1})
            if state == "Completed":
                events.emit("task_state", "doomed", f"t{i}", {"state": "Completed", "attempt": 1})
        rec.flush()
        print("ready", flush=True)
        time.sleep(60)
    """
    proc = _python(code)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with Store() as store:  # the process is alive: its run is left alone
            assert store.summary("doomed").state == "Running"
            assert store.crashed == []
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    with Store() as store:
        assert store.crashed == ["doomed"]
        view = store.load_run("doomed")
    assert view.state == "Crashed" and "died" in (view.error or "")
    states = {t.name: t.state for t in view.tasks.values()}
    assert states == {"t0": "Completed", "t1": "Crashed", "t2": "Crashed"}
    assert view.end is not None and view.end >= view.start
    with Store() as store:  # the sweep is done once
        assert store.crashed == []


def test_a_reused_pid_does_not_hide_a_crash(recorder):
    emit_run(run_id="mine", finish=False)  # a live run of this process
    assert recorder.flush(10)
    with Store() as store:
        store.conn.execute(
            "INSERT INTO flow_runs (id, seq, state, created, host, proc_pid, proc_start)"
            " VALUES ('reused', 1, 'Running', 1.0, ?, ?, 'another-boot:123')",
            (db.HOST, os.getpid()),
        )
    with Store() as store:
        assert store.crashed == ["reused"]
        assert store.summary("mine").state == "Running"
        assert store.summary("reused").state == "Crashed"


def test_process_identity():
    token = db.process_start(os.getpid())
    assert token is not None
    assert db.process_alive(os.getpid(), token)
    boot, ns, start, machine = token.split(":")
    assert not db.process_alive(os.getpid(), f"{boot}:{ns}:{start}0:{machine}")  # pid reused
    assert not db.process_alive(os.getpid(), f"another-boot:{ns}:{start}:{machine}")  # rebooted
    # nothing proves these dead: another pid namespace (a container), another machine
    assert db.process_alive(99999999, f"{boot}:pid[1]:{start}:{machine}")
    assert db.process_alive(99999999, f"another-boot:{ns}:{start}:another-machine")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    pid = proc.pid
    proc.wait()
    assert not db.process_alive(pid, None)
    assert not db.process_alive(None, None)


def test_eight_processes_write_to_one_store_at_once():
    code = """
        import os, sys, uuid
        from nb2flow.store import recording
        from nb2flow.runtime.core import events
        rec = recording.enable()
        emit = events.emit
        for r in range(RUNS):
            fid = uuid.uuid4().hex
            emit("flow_run", fid, data={"flow_name": "many", "run_name": f"p{os.getpid()}-{r}"})
            emit("flow_state", fid, data={"state": "Running"})
            for i in range(TASKS):
                tid = uuid.uuid4().hex
                emit("task_run", fid, tid, {"task_name": f"t{i}"})
                emit("task_state", fid, tid, {"state": "Running", "attempt": 1})
                emit("task_state", fid, tid, {"state": "Completed", "attempt": 1})
            emit("flow_state", fid, data={"state": "Completed"})
            rec.flush()
        print(rec.written, repr(rec.error), flush=True)
    """
    runs, tasks = 10, 200
    procs = [
        _python(
            code.replace("RUNS", str(runs)).replace("TASKS", str(tasks)), stderr=subprocess.PIPE
        )
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err and "nb2flow:" not in err, err
        written, error = out.split(maxsplit=1)
        assert int(written) == runs * (3 + 3 * tasks) and error.strip() == "None"
    with Store() as store:
        summaries = store.list_runs(limit=None)
        assert len(summaries) == 8 * runs
        assert all(s.state == "Completed" and s.counts == {"Completed": tasks} for s in summaries)
        n_states = store.conn.execute("SELECT count(*) FROM states").fetchone()[0]
        assert n_states == 8 * runs * 2  # flow transitions; task ones are in their rows
        histories = store.conn.execute("SELECT history FROM task_runs").fetchall()
        assert len(histories) == 8 * runs * tasks
        assert all(
            [h.state for h in history.decode(row[0])] == ["Running", "Completed"]
            for row in histories
        )


def test_writes_retry_while_another_process_holds_the_lock(monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT", 0.05)  # give up waiting inside SQLite quickly
    Store().close()
    path = db.default_path()
    code = f"""
        import sqlite3, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(1.0)
        conn.execute("COMMIT")
    """
    holder = _python(code)
    assert holder.stdout.readline().strip() == "locked"
    rec = recording.enable()
    try:
        t0 = time.monotonic()
        fid = emit_run()
        assert rec.flush(30)
        waited = time.monotonic() - t0
    finally:
        recording.disable()
    holder.wait(10)
    assert rec.error is None and waited > 0.5  # it waited for the lock and then wrote
    with Store() as store:
        assert store.summary(fid).tasks == 5


def test_runs_of_flows_with_persist_false_are_not_recorded(helper_mode, recorder):
    emit = events.emit
    emit("flow_run", "secret", data={"flow_name": "f", "run_name": "s", "persist": False})
    emit("flow_run", "sub", data={"flow_name": "g", "parent_flow_run_id": "secret"})
    for fid in ("secret", "sub"):
        emit("task_run", fid, f"{fid}-t", {"task_name": "t"})
        emit("task_state", fid, f"{fid}-t", {"state": "Completed", "attempt": 1})
        emit("flow_state", fid, data={"state": "Completed"})
    kept = emit_run()
    assert recorder.flush(10)
    with Store() as store:
        assert [r.id for r in store.list_runs()] == [kept]
        assert store.conn.execute("SELECT count(*) FROM task_runs").fetchone()[0] == 5
    if helper_mode == "thread":
        assert recorder._local.skip == set()  # forgotten once they ended


def test_a_forked_child_does_not_write_through_the_parents_recorder(recorder):
    parent = emit_run()
    pid = os.fork()
    if pid == 0:  # the child: its inherited recorder is dropped, its events go nowhere
        try:
            events.emit("flow_run", "from-child", data={"flow_name": "child"})
            ok = recording.current() is None and recorder.append not in events.subscribers()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.flush(10)
    with Store() as store:
        assert [r.id for r in store.list_runs()] == [parent]


def test_a_bad_event_costs_only_itself(helper_mode, recorder, capsys):
    fid = emit_run()
    events.emit("log", fid, None, {"level": "not a number", "message": "bad"})
    events.emit("log", fid, None, {"level": 20, "levelname": "INFO", "message": "good"})
    assert recorder.flush(10) is False  # something was lost, and flush says so
    assert recorder.lost == 1 and "not a number" in str(recorder.error)
    assert (recorder.helper_pid is not None) == (helper_mode == "helper")
    assert "could not write some run events" in capsys.readouterr().err
    with Store() as store:
        view = store.load_run(fid)
    assert [log.message for log in view.logs] == ["rows: 10", "train failed", "good"]
    assert len(view.tasks) == 5
    events.emit("log", fid, None, {"level": 30, "levelname": "WARNING", "message": "later"})
    assert recorder.flush(10) is True  # the recorder keeps going


def test_data_marshal_cannot_carry_is_written_by_the_thread_in_order(monkeypatch, live):
    monkeypatch.setenv("NB2FLOW_STORE_HELPER", "always")
    rec = recording.enable()
    try:
        assert rec.flush(10) and rec.helper_pid is not None
        fid = emit_run(finish=False)
        assert rec.flush(10)  # the helper wrote the start of the run
        tid = next(
            ev.task_run_id
            for ev in live
            if ev.kind == "task_run" and ev.data["task_name"] == "train"
        )
        odd = object()  # marshal cannot carry it: this batch is written by the thread
        events.emit("task_state", fid, tid, {"state": "Completed", "attempt": 1, "odd": odd})
        assert rec.flush(10) and rec._local.written == 1  # that one event, by the thread
        events.emit("flow_state", fid, data={"state": "Completed"})  # the helper again
        assert rec.flush(10) and rec.helper_pid is not None
    finally:
        recording.disable()
    with Store() as store:
        view = store.load_run(fid)
    assert view.state == "Completed"
    train = view.tasks[tid]
    assert [s for s, _, _ in train.history] == ["Running", "Completed"]
    assert view == RunView.from_events(fid, live)


def test_task_runs_committed_after_the_sweep_are_closed(recorder, live):
    fid = emit_run(finish=False)
    assert recorder.flush(10)
    with Store() as store:  # pretend the recording process died: another pid owns its pid
        store.conn.execute(
            "UPDATE flow_runs SET proc_start = 'another-boot:1' WHERE id = ?", (fid,)
        )
    with Store() as store:
        assert store.crashed == [fid]
    # a late batch of the dead process (committed by its helper) reopens a task run
    late = next(
        ev.task_run_id for ev in live if ev.kind == "task_run" and ev.data["task_name"] == "report"
    )
    events.emit("task_state", fid, late, {"state": "Running", "attempt": 1})
    assert recorder.flush(10)
    with Store() as store:
        assert store.load_run(fid).tasks[late].state == "Running"
        assert db.close_crashed_tasks(store.conn, [fid, "no-such-run"]) == 1
        view = store.load_run(fid)
        assert db.close_crashed_tasks(store.conn, [fid]) == 0
    assert view.state == "Crashed" and all(t.final for t in view.tasks.values())
    # Pending when swept, then the late Running, then closed
    assert [s for s, _, _ in view.tasks[late].history] == ["Crashed", "Running", "Crashed"]


def test_a_new_migration_upgrades_an_existing_store_and_keeps_its_runs(recorder, monkeypatch):
    fid = emit_run()
    assert recorder.flush(10)
    recording.disable()
    extra = "ALTER TABLE flow_runs ADD COLUMN note TEXT;\n-- a comment; with a semicolon\n"
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, extra])
    monkeypatch.setattr(db, "SCHEMA_VERSION", len(db.MIGRATIONS))
    with Store() as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
        columns = [r[1] for r in store.conn.execute("PRAGMA table_info(flow_runs)")]
        assert "note" in columns
        assert store.load_run(fid).state == "Failed"
