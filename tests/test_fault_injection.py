"""Fault injection: ``kill -9`` of a flow process at seeded random points, on every runner.

The flow (12 short steps in chains, some starting a subprocess of their own, and a
``hard_timeout`` task whose child runs ``sleep 60``) runs as a program with its own
``NB2FLOW_HOME``. At each kill point (after k task runs are recorded Completed, plus a
random delay) it is killed with SIGKILL, and the invariants are checked for real:

* no process left: every process that carries the run's marker in its environment (the
  flow's children inherit it, wherever they were reparented) is gone;
* no completed task run lost: what the store showed Completed before the kill is still
  Completed after the next store open;
* no run mislabelled: that open marks the killed run Crashed, with every task run final
  (the ones that were running Crashed, none of the completed ones);
* every failure one line: the errors in the store, ``nb2flow runs`` and ``nb2flow show``
  have no traceback and no line breaks.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from nb2flow.cli import main as nb2flow_main
from nb2flow.runtime.core.states import COMPLETED, CRASHED, FINAL_STATES
from nb2flow.store.db import Store
from tests.conftest import require
from tests.proctree import survivors

pytestmark = pytest.mark.slow

MARK = "NB2FLOW_FAULT_RUN"
SEED = 13
STEPS = 12

FLOW = """
import subprocess, time
from nb2flow import flow, run_cli, task


@task
def step(i, *upstream):
    time.sleep(0.1)
    if i % 4 == 1:  # a task with a child process of its own
        subprocess.run(["sleep", "0.2"], check=True)
    return i


@task(timeout_seconds=300, hard_timeout=True)
def long_with_child():
    subprocess.run(["sleep", "60"], check=True)


@flow(name="faulty")
def main(n: int = 12):
    steps = []
    for i in range(n):
        steps.append(step.submit(i, *(steps[-2:] if i % 3 else [])))
    return {"steps": steps, "hard": long_with_child.submit()}


if __name__ == "__main__":
    run_cli(main)
"""

#: (runner, kill points): a handful per runner; Dask's cluster start-up makes its runs slow
RUNNERS = [("sequential", 3), ("threads", 3), ("processes:2", 3), ("dask:2", 2)]


def kill_points(runner: str, n: int) -> list[tuple[int, float]]:
    """``n`` (completed task runs to wait for, extra delay in seconds), seeded; one in each
    of ``n`` slices of the run, so the points cover its start, middle and end."""
    rng = random.Random(f"{SEED}-{runner}")
    return [
        (rng.randint(i * STEPS // n, (i + 1) * STEPS // n), round(rng.uniform(0, 0.3), 3))
        for i in range(n)
    ]


def marked(token: str) -> list[psutil.Process]:
    """Every process whose environment carries ``token`` (children inherit it)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(MARK) == token:
                found.append(p)
        except psutil.Error:
            continue
    return found


def completed_in_store(home: Path) -> tuple[str | None, set[str]]:
    """The run id and the ids of its Completed task runs, as the store shows them now
    (read without the crash sweep)."""
    db = home / "runs.db"
    if not db.exists():
        return None, set()
    try:
        with Store(db, sweep=False) as store:
            runs = store.list_runs()
            if not runs:
                return None, set()
            run = store.load_run(runs[0].id)
    except Exception:  # noqa: BLE001 - the first transaction may not be there yet
        return None, set()
    return run.id, {t.id for t in run.tasks.values() if t.state == COMPLETED}


def one_line(text: str | None) -> bool:
    return text is None or ("\n" not in text and "Traceback" not in text)


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faulty") / "faulty.py"
    path.write_text(textwrap.dedent(FLOW))
    return path


CASES = [(runner, k, delay) for runner, n in RUNNERS for k, delay in kill_points(runner, n)]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("runner", "after", "delay"), CASES)
def test_kill_9_at_a_random_point_loses_nothing_and_leaves_nothing(
    script, tmp_path, monkeypatch, capsys, runner, after, delay
):
    if runner.startswith("dask"):
        import importlib.util

        require("dask", importlib.util.find_spec("distributed") is not None, "no distributed")
    home = tmp_path / "home"
    token = uuid.uuid4().hex
    env = {**os.environ, "NB2FLOW_HOME": str(home), MARK: token}
    with open(tmp_path / "flow.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--task-runner", runner, "-q"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        # the kill point: `after` task runs recorded Completed, then `delay` seconds
        deadline = time.monotonic() + 180
        run_id, before = None, set()
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "flow.log").read_text()
            run_id, before = completed_in_store(home)
            if run_id is not None and len(before) >= after:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"{after} task runs never completed: {(tmp_path / 'flow.log').read_text()}")
        time.sleep(delay)
        _, before = completed_in_store(home)  # what the store holds right before the kill
        family = marked(token)
        assert proc.pid in {p.pid for p in family}  # the scan sees the run's processes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # no process left behind, wherever it went
    assert survivors(family + marked(token), 30) == []

    # the next store open: the run is Crashed, nothing completed is lost or relabelled
    with Store(home / "runs.db") as store:
        assert store.crashed == [run_id]
        run = store.load_run(run_id)
    assert run.state == CRASHED and one_line(run.error)
    states = {t.task_key or t.id: t.state for t in run.tasks.values()}
    assert all(state in FINAL_STATES for state in states.values()), states
    assert {t.id for t in run.tasks.values() if t.state == COMPLETED} >= before, states
    # (on sequential, the hard task starts after the steps: it may not exist yet)
    assert states.get("long_with_child", CRASHED) == CRASHED, states
    assert all(one_line(t.error) for t in run.tasks.values())

    # and what users read: one line per failure, no traceback
    monkeypatch.setenv("NB2FLOW_HOME", str(home))
    assert nb2flow_main(["show", run_id]) == 0
    assert nb2flow_main(["runs", "--json"]) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    listed = json.loads(printed.out[printed.out.index("\n[") + 1 :])
    assert [(r["id"], r["state"]) for r in listed] == [(run_id, CRASHED)]
