"""The process-pool runner: tasks run in other processes, their events come back in order."""

from __future__ import annotations

import json
import os
import threading

import pytest

from nb2flow import flow, get_run_logger, task
from nb2flow.cli import main as nb2flow_main

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
    assert run.error.startswith("task 'die' crashed: the worker process died")

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
