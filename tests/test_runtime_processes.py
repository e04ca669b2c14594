"""The process-pool runner: tasks run in other processes, their events come back in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nb2flow import flow, get_run_logger, task
from nb2flow.cli import main as nb2flow_main
from tests.proctree import processes, survivors, tree, wait_for_file, write_line

pytestmark = pytest.mark.slow  # starts worker processes (spawn)

FLAKY_DIR_ENV = "NB2FLOW_TEST_FLAKY_DIR"


@task(nout=2)
def split(n):
    return list(range(n)), os.getpid()


@task
def square_all(xs):
    get_run_logger().info("squaring %d numbers in %d", len(xs), os.getpid())
    return [x * x for x in xs]


@task(log_prints=True)
def shout(x):
    print("value", x)
    return x


@task
def explode(_):
    raise ValueError("worker error")


@task
def after(x):
    return x


@task(retries=1)
def flaky(marker_dir):
    marker = os.path.join(marker_dir, "tried")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("first attempt fails")
    return "second attempt"


@task
def die():
    os._exit(3)


@task
def unpicklable():
    return threading.Lock()


@flow(task_runner="processes:2")
def pool_flow(tmp: str):
    xs, pid = split.submit(4)
    sq = square_all.submit(xs)
    shouted = shout.map([1, 2])
    bad = explode.submit(sq)
    skipped = after.submit(bad)
    return {"sq": sq, "pid": pid, "shouted": shouted, "retried": flaky.submit(tmp), "s": skipped}


def test_tasks_run_in_worker_processes_with_events_forwarded(tmp_path):
    run = pool_flow(str(tmp_path), return_state=True)
    states = {t.task_key: t.state for t in run.task_runs}
    assert states == {
        "split": "Completed",
        "square_all": "Completed",
        "shout[0]": "Completed",
        "shout[1]": "Completed",
        "explode": "Failed",
        "after": "NotRun",
        "flaky": "Completed",
    }
    assert run.state == "Failed" and run.error == "task 'explode' failed: ValueError: worker error"
    assert "in explode" in run.task_run("explode").traceback
    assert run.task_run("flaky").attempts == 2
    assert run.view.task_runner == "processes:2"
    # results and logs came back from another process
    logged = [e for e in run.events if e.kind == "log" and "squaring" in e.data["message"]]
    assert len(logged) == 1 and logged[0].task_run_id == run.task_run("square_all").id
    worker_pid = int(logged[0].data["message"].rsplit(" ", 1)[1])
    assert worker_pid != os.getpid()
    assert run.task_run("square_all").state == "Completed"
    messages = {lg.message for lg in run.view.logs}
    assert messages == {f"squaring 4 numbers in {worker_pid}", "value 1", "value 2"}
    # per task, events arrive in order: Running before the final state
    for t in run.task_runs:
        names = [s for s, _, _ in t.history]
        if t.state != "NotRun":
            assert names[0] == "Running" and names[-1] == t.state


def test_dead_worker_is_crashed_and_unpicklable_result_fails():
    @flow(task_runner="processes:1")
    def crash():
        return {"d": die.submit()}

    run = crash(return_state=True)
    assert run.task_runs[0].state == "Crashed" and run.state == "Failed"
    assert run.error == "task 'die' crashed: the worker process died (exit code 3)"

    @flow(task_runner="processes:1")
    def lock():
        return unpicklable.submit()

    run = lock(return_state=True)
    assert run.task_runs[0].state == "Failed"
    assert run.task_runs[0].error == (
        "TypeError: the result of task 'unpicklable' cannot be sent back to the flow process "
        "(_thread.lock: TypeError: cannot pickle '_thread.lock' object)"
    )


@task(nout=3)
def lock_and_numbers():
    return 6, threading.Lock(), 7


@task
def add(a, b):
    return a + b


@task
def use_lock(lock):
    with lock:  # never reached: the lock stayed in the worker process
        return 1


def test_an_item_that_cannot_be_pickled_becomes_a_marker_and_the_run_goes_on():
    from nb2flow.runtime.engine.transport import Unavailable

    @flow(task_runner="processes:1", persist=False)
    def partly():
        a, lock, b = lock_and_numbers.submit()
        return {"sum": add.submit(a, b), "lock": lock, "used": use_lock.submit(lock)}

    run = partly(return_state=True)
    states = {t.task_key: t.state for t in run.task_runs}
    assert states == {"lock_and_numbers": "Completed", "add": "Completed", "use_lock": "Failed"}
    # the items that travel are used; the lock is a marker in the flow's value
    assert run.value is None and run.state == "Failed"  # use_lock failed: the flow fails
    lock = run.task_run("use_lock")
    assert lock.error == (
        "ValueUnavailable: input item 1 of task 'lock_and_numbers' (_thread.lock) is "
        "unavailable: it could not be sent from the process that computed it (TypeError: "
        "cannot pickle '_thread.lock' object); run on threads, or return a value that can be "
        "pickled"
    )
    warnings = [
        e.data["message"]
        for e in run.events
        if e.kind == "log" and e.data["levelname"] == "WARNING"
    ]
    assert warnings == [
        "item 1 of task 'lock_and_numbers' (_thread.lock) cannot be sent to another process "
        "(TypeError: cannot pickle '_thread.lock' object); it is replaced by an Unavailable "
        "marker"
    ]

    @flow(task_runner="processes:1", persist=False)
    def returns_it():
        a, lock, b = lock_and_numbers.submit()
        return {"sum": add.submit(a, b), "lock": lock}

    value = returns_it()
    assert value["sum"] == 13
    assert type(value["lock"]) is Unavailable
    assert repr(value["lock"]) == (
        "Unavailable(item 1 of task 'lock_and_numbers' (_thread.lock): "
        "TypeError: cannot pickle '_thread.lock' object)"
    )


SCRIPT = """
import os
from nb2flow import flow, task

def helper(x):
    return x + 1

@task
def work(x):
    return [helper(x), os.getpid()]

@flow
def main(x: int = 1):
    return {"r": work.submit(x), "parent": os.getpid()}
"""


def test_nb2flow_run_script_on_processes(tmp_path, capsys):
    path = tmp_path / "proc_script.py"
    path.write_text(SCRIPT)
    code = nb2flow_main(["run", str(path), "--x", "41", "--task-runner", "processes:1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["r"][0] == 42 and out["r"][1] != out["parent"]


# ------------------------------------------------- one dead worker (issue 13, item 11)


@task
def kills_its_worker(marker: str) -> int:
    write_line(marker, str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@task
def outlives_a_dead_worker(marker: str) -> int:
    # running on the other worker while the first one dies
    victim = processes([int(wait_for_file(Path(marker), 60))])
    assert survivors(victim, 60) == []  # its worker is dead (or a zombie)
    return os.getpid()


@task
def sq(x: int) -> int:
    return x * x


def test_one_dead_worker_crashes_only_its_task_and_the_others_go_on(tmp_path):
    from nb2flow.runtime.runners.processes import ProcessRunner

    marker = str(tmp_path / "victim")
    runner = ProcessRunner("2")

    @flow(persist=False, timeout_seconds=120)
    def one_dies(marker: str):
        held = outlives_a_dead_worker.submit(marker)
        dead = kills_its_worker.submit(marker)
        queued = sq.map(range(4))  # behind the two: both workers are busy
        return {"held": held, "after": add.submit(dead, 1), "queued": queued}

    run = one_dies.with_options(task_runner=runner)(marker, return_state=True)
    states = {t.task_key: t.state for t in run.task_runs}
    assert states == {
        "outlives_a_dead_worker": "Completed",
        "kills_its_worker": "Crashed",
        "sq[0]": "Completed",
        "sq[1]": "Completed",
        "sq[2]": "Completed",
        "sq[3]": "Completed",
        "add": "NotRun",
    }
    assert run.task_run("kills_its_worker").error == ("the worker process died (killed by SIGKILL)")
    assert run.error == (
        "task 'kills_its_worker' crashed: the worker process died (killed by SIGKILL)"
    )
    assert runner.stats["died"] == 1 and runner.stats["started"] == 3  # one replacement


@task(retries=2)
def kills_its_worker_once(marker: str) -> int:
    if not os.path.exists(marker):
        write_line(marker, str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def test_a_task_whose_worker_dies_is_retried_from_its_next_attempt(tmp_path):
    marker = str(tmp_path / "first")

    @flow(task_runner="processes:1", persist=False, timeout_seconds=120)
    def retried(marker: str):
        return kills_its_worker_once.submit(marker)

    run = retried(marker, return_state=True)
    assert run.state == "Completed", run.error
    first = int(Path(marker).read_text())
    assert run.value != first  # a new worker ran attempt 2
    t = run.task_runs[0]
    assert [(state, attempt) for state, _, attempt in t.history] == [
        ("Running", 1),
        ("Retrying", 1),
        ("Running", 2),
        ("Completed", 2),
    ]
    retrying = next(
        e.data for e in run.events if e.kind == "task_state" and e.data["state"] == "Retrying"
    )
    assert retrying["message"] == "Crashed (attempt 1 of 3); retrying in 0s"
    assert retrying["error"] == "the worker process died (killed by SIGKILL)"


# ---------------------------------------- nothing outlives the flow (issue 13, item 10)

KILLED_FLOW = """
import os, subprocess, sys, time
from nb2flow import flow, task

OUT = sys.argv[1]


def mark(name, text):
    tmp = os.path.join(OUT, name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text + "\\n")
    os.replace(tmp, os.path.join(OUT, name))


@task
def starts_a_child(name):
    child = subprocess.Popen(["sleep", "123"])
    mark(name, str(child.pid))
    time.sleep(120)


@task(timeout_seconds=100, hard_timeout=True)
def hard(name):
    child = subprocess.Popen(["sleep", "123"])
    mark(name, str(child.pid))
    time.sleep(120)


@flow(task_runner="processes:2", persist=False)
def main():
    return {"plain": starts_a_child.submit("plain"), "hard": hard.submit("hard")}


if __name__ == "__main__":
    main()
"""


def test_kill_9_of_a_flow_on_processes_leaves_no_worker_tracker_or_task_child(tmp_path):
    script = tmp_path / "killed_flow.py"
    script.write_text(textwrap.dedent(KILLED_FLOW))
    with open(tmp_path / "flow.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # nothing it leaves can hide in the test's group
        )
    try:
        children = [int(wait_for_file(tmp_path / n, 60, proc)) for n in ("plain", "hard")]
        procs = tree(proc.pid)[1:]
        cmdlines = [" ".join(p.cmdline()) for p in procs]
        # what must die: 2 workers, the resource tracker, the hard_timeout attempt's
        # process, and the two `sleep 123` the tasks started
        assert sum("resource_tracker" in c for c in cmdlines) == 1, cmdlines
        assert sum("sleep 123" in c for c in cmdlines) == 2, cmdlines
        assert {p.pid for p in procs} >= set(children)
        assert len(procs) >= 6, cmdlines
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert survivors(procs, 20) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@task(timeout_seconds=0.5, hard_timeout=True)
def outlived_by_its_child(path: str) -> None:
    child = subprocess.Popen(["sleep", "123"])
    write_line(path, str(child.pid))
    time.sleep(60)


@pytest.mark.parametrize("runner", ["threads", "processes:1"])
def test_a_hard_timeout_kills_the_task_and_everything_it_started(tmp_path, runner):
    path = tmp_path / "child"

    @flow(persist=False)
    def timed(path: str):
        return outlived_by_its_child.submit(path)

    run = timed.with_options(task_runner=runner)(str(path), return_state=True)
    assert run.task_runs[0].state == "TimedOut"
    assert survivors(processes([int(path.read_text())]), 10) == []


# ------------------------- big values: buffers beside the pickle (docs/runtime.md, Memory)


@task(retries=1)
def sum_after_killing_its_worker_once(values, marker: str) -> float:
    if not os.path.exists(marker):
        write_line(marker, str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return float(values.sum()) + len(values.tolist())


def test_a_big_input_goes_again_to_the_worker_of_the_next_attempt(tmp_path):
    """The job keeps the views of its input's buffers while its run may start again: the
    new worker receives the same array."""
    import numpy as np

    values = np.arange(1_000_000, dtype=np.float64)  # 8 MB, beside the pickle

    @flow(task_runner="processes:1", persist=False, timeout_seconds=120)
    def retried(marker: str):
        return sum_after_killing_its_worker_once.submit(values, marker)

    run = retried(str(tmp_path / "first"), return_state=True)
    assert run.state == "Completed", run.error
    assert run.value == float(values.sum()) + len(values)
    assert [s for s, _, _ in run.task_runs[0].history][-1] == "Completed"


@task
def only_in_the_worker(n: int):
    """A result of a class the flow process cannot import, with a big pickle and a big
    buffer around it."""
    import types

    import numpy as np

    module = types.ModuleType("nb2flow_test_only_here")
    exec("class Only:\n    pass", module.__dict__)
    sys.modules[module.__name__] = module
    return ["x" * 10] * n, np.ones(n), module.Only()


@task
def big_list(n: int):
    return [str(i) for i in range(n)]


def test_an_outcome_the_flow_process_cannot_unpickle_fails_and_the_pipe_stays_in_step():
    @flow(task_runner="processes:1", persist=False, keep_outputs=True)
    def body():
        only_in_the_worker.submit(100_000).wait()
        big_list.submit(100_000)  # on the same worker, after it

    run = body(return_state=True)
    bad, good = run.task_runs
    assert (bad.name, bad.state) == ("only_in_the_worker", "Failed")
    assert bad.error == "ModuleNotFoundError: No module named 'nb2flow_test_only_here'"
    assert good.state == "Completed"
    assert run.output("big_list") == [str(i) for i in range(100_000)]  # a big pickle, in frames
