"""The run store under real flows: round trip, 10,000 task runs, kill -9, 8 processes, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nb2flow import flow, get_run_logger, task
from nb2flow.cli import main
from nb2flow.store import db, recording
from nb2flow.store.db import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_recorder():
    """Each test records into its own NB2FLOW_HOME; stop the recorder afterwards."""
    yield
    recording.disable()


@pytest.fixture(params=["thread", "helper"])
def helper_mode(request, monkeypatch):
    """Write in the recorder's thread, or through the helper process."""
    monkeypatch.setenv("NB2FLOW_STORE_HELPER", "never" if request.param == "thread" else "always")
    return request.param


def test_a_real_flow_round_trips_through_the_store(helper_mode, capsys):
    calls = {"n": 0}

    @task(retries=1)
    def load(n: int) -> list[int]:
        calls["n"] += 1
        get_run_logger().info("loading %d rows", n)
        if calls["n"] == 1:
            raise OSError("flaky disk")
        return list(range(n))

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @task
    def boom(x: int) -> int:
        raise ValueError(f"bad value {x}")

    @task
    def after(x: int) -> int:
        return x

    @flow(name="store-roundtrip")
    def pipeline(n: int = 4) -> int:
        xs = load.submit(n)
        s = total.submit(xs)
        after.submit(boom.submit(s))
        return s

    fr = pipeline(return_state=True)
    assert fr.state == "Failed"
    with Store() as store:
        stored = store.load_run(fr.id)
        summary = store.summary(fr.name)
    assert stored == fr.view  # the store and a live observer see the same run
    tasks = {t.name: t for t in stored.tasks.values()}
    assert tasks["load"].attempts == 2 and tasks["load"].state == "Completed"
    assert tasks["boom"].state == "Failed" and "bad value 6" in (tasks["boom"].traceback or "")
    assert tasks["after"].state == "NotRun"
    assert stored.parameters == {"n": "4"}
    assert any("loading 4 rows" in log.message for log in stored.logs)
    assert (summary.done, summary.failed, summary.tasks) == (2, 1, 4)

    # the CLI shows the same run
    monkey_columns = {"COLUMNS": "160"}
    os.environ.update(monkey_columns)
    try:
        assert main(["runs", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["run_name"], r["state"], r["done"], r["failed"]) for r in rows] == [
            (fr.name, "Failed", 2, 1)
        ]
        assert main(["show", fr.name]) == 0
        out = capsys.readouterr().out
    finally:
        del os.environ["COLUMNS"]
    assert out.splitlines()[0] == f"{fr.name}  flow store-roundtrip  id {fr.id}"
    graph = out[out.index("\nGraph\n") :].splitlines()
    assert any(line.split()[:3] == ["4", "after", "NotRun"] for line in graph)
    assert "ValueError: bad value 6" in out and "loading 4 rows" in out


def test_every_task_run_of_a_10000_task_flow_is_stored(helper_mode):
    @task
    def inc(x: int) -> int:
        return x + 1

    @flow(task_runner="sequential")
    def big(n: int = 10_000) -> int:
        for i in range(n):
            inc(i)
        return n

    fr = big(return_state=True)
    assert fr.state == "Completed"
    assert (recording.current().helper_pid is not None) == (helper_mode == "helper")
    with Store() as store:  # flush() ran when the flow returned: nothing is missing
        summary = store.summary(fr.id)
        assert summary.counts == {"Completed": 10_000}
        n_rows = store.conn.execute(
            "SELECT count(*) FROM task_runs WHERE flow_run_id = ? AND history LIKE '%Completed%'",
            (fr.id,),
        ).fetchone()[0]
    assert n_rows == 10_000


def test_a_flow_with_persist_false_is_not_stored():
    @task
    def one() -> int:
        return 1

    @flow(persist=False)
    def private() -> int:
        return one()

    @flow
    def public() -> int:
        return one()

    public()  # enables the recorder, which stays subscribed
    fr = private(return_state=True)
    public()
    recording.current().flush(10)
    with Store() as store:
        names = [r.flow_name for r in store.list_runs()]
        assert names == ["public", "public"]
        with pytest.raises(Exception, match="no run"):
            store.load_run(fr.id)


def _helpers_of(pid: int) -> list[int]:
    """Pids of the store helper processes started by process ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        if ppid == pid and b"--helper" in cmdline:
            found.append(int(entry.name))
    return found


def _python(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NB2FLOW_PANEL": "off"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_a_flow_killed_mid_run_is_marked_crashed(helper_mode):
    code = """
        import time
        from nb2flow import flow, task

        @task
        def quick() -> int:
            return 1

        @task
        def slow(x: int) -> int:
            time.sleep(60)
            return x

        @task
        def later(x: int) -> int:
            return x

        @flow(name="doomed", task_runner="threads")
        def doomed() -> int:
            return later.submit(slow.submit(quick.submit()))

        doomed()
    """
    proc = _python(code)
    try:
        deadline = time.monotonic() + 30
        view = None
        while time.monotonic() < deadline:  # wait until the slow task is seen running
            if (Path(os.environ["NB2FLOW_HOME"]) / "runs.db").exists():
                with Store() as store:
                    runs = store.list_runs(flow="doomed")
                    if runs:
                        view = store.load_run(runs[0].id)
                        if any(
                            t.name == "slow" and t.state == "Running" for t in view.tasks.values()
                        ):
                            break
            time.sleep(0.05)
        else:
            pytest.fail(f"the flow never ran its slow task: {view}")
        with Store() as store:  # alive: left alone
            assert store.crashed == [] and store.summary(view.id).state == "Running"
        helpers = _helpers_of(proc.pid)
        assert len(helpers) == (1 if helper_mode == "helper" else 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.communicate()
    for pid in helpers:  # the helper ends by itself when its flow process is gone
        deadline = time.monotonic() + 20
        while db.process_alive(pid, None) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not db.process_alive(pid, None), "the helper outlived its flow process"
    if helpers:  # before exiting, the helper marked the run of its dead flow process
        with Store(sweep=False) as store:
            assert store.summary(view.id).state == "Crashed"
    with Store() as store:  # the next opener marks it (unless the helper did already)
        assert store.crashed == ([] if helpers else [view.id])
        crashed = store.load_run(view.id)
    assert crashed.state == "Crashed" and f"pid {proc.pid}" in (crashed.error or "")
    states = {t.name: t.state for t in crashed.tasks.values()}
    assert states["quick"] == "Completed" and states["slow"] == "Crashed"
    assert states.get("later", "Crashed") == "Crashed"  # created or not yet, never left open
    assert all(t.final for t in crashed.tasks.values())


def test_eight_processes_run_flows_against_one_store(helper_mode):
    go = Path(os.environ["NB2FLOW_HOME"]) / "go"
    code = f"""
        import os, time
        from nb2flow import flow, task

        while not os.path.exists({str(go)!r}):  # all start together
            time.sleep(0.01)

        @task
        def double(x: int) -> int:
            return 2 * x

        @flow(name="parallel", task_runner="threads")
        def parallel(n: int = 150) -> int:
            return sum(f.result() for f in double.map(range(n)))

        for _ in range(5):
            assert parallel() == 150 * 149
        print("ok", flush=True)
    """
    procs = [_python(code) for _ in range(8)]
    go.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err
        assert "locked" not in err and "run history" not in err and "nb2flow:" not in err, err
    with Store() as store:
        runs = store.list_runs(limit=None)
        assert len(runs) == 40
        assert all(r.state == "Completed" and r.counts == {"Completed": 150} for r in runs)
        spans = store.conn.execute(
            'SELECT proc_pid, min(start), max("end") FROM flow_runs GROUP BY proc_pid'
        ).fetchall()
    assert len(spans) == 8
    overlapping = sum(
        1 for a in spans for b in spans if a[0] < b[0] and a[1] < b[2] and b[1] < a[2]
    )
    assert overlapping > 0  # the processes really wrote at the same time


@task
def _square(x: int) -> int:
    return x * x


@flow(task_runner="processes")
def _in_processes(n: int = 3) -> int:
    return sum(f.result() for f in _square.map(range(n)))


def test_task_runs_in_worker_processes_are_recorded_by_the_flow_process():
    fr = _in_processes(return_state=True)
    assert fr.state == "Completed"
    with Store() as store:
        assert store.load_run(fr.id) == fr.view
        assert store.summary(fr.id).counts == {"Completed": 3}
