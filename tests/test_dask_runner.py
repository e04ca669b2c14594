"""The Dask task runner on a real LocalCluster (2 worker processes on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.api import flow, get_run_logger, task
from nb2flow.runtime.core.events import subscribe, unsubscribe
from nb2flow.runtime.runners import registry
from tests.conftest import ROOT, require, require_modules

HAS_DASK = importlib.util.find_spec("distributed") is not None

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require("dask", HAS_DASK, "dask[distributed] is not installed")
    import dask
    from distributed import Client, LocalCluster

    # workers run in their own directory with their own NB2FLOW_HOME (cache), as on a
    # remote machine: relative paths and the flow process's cache do not reach them. (A
    # preload, not a chdir around the start: workers restarted after a kill start again
    # from the test process's directory.)
    where = tmp_path_factory.mktemp("dask_workers")
    # one lost worker is forgiven (the task runs again elsewhere), two fail the task:
    # keeps the killed-worker tests short
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        lc = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: 8787 may be taken
            env={"NB2FLOW_HOME": str(where / "home")},
            preload=[f"import os; os.chdir({str(where)!r})"],
        )
    client = Client(lc, set_as_default=False)
    yield lc, client, where
    client.close()
    lc.close()


@pytest.fixture
def runner(cluster):
    from nb2flow.runtime.runners.dask.runner import DaskRunner

    lc, client, _ = cluster
    client.wait_for_workers(2, timeout=60)  # a killed worker comes back (nanny)
    return DaskRunner(cluster=lc)


# ----------------------------------------------------------------------------- tasks


@task
def square(x):
    return x * x


@task
def make_blob(n: int, log_path: str):
    return Blob(b"x" * n, log_path)


@task
def blob_len(blob):
    return len(blob.data)


@task
def blob_first(blob):
    return blob.data[:1].decode()


@task
def join(a, b):
    return f"{a}:{b}"


@task(nout=2)
def big_and_small(n: int):
    return b"y" * n, n


@task
def add_one(x):
    return x + 1


def _restore_blob(data: bytes, log_path: str) -> Blob:
    with open(log_path, "a") as fh:  # who unpickled it: proves where the data went
        fh.write(f"{os.getpid()}\n")
    return Blob(data, log_path)


class Blob:
    def __init__(self, data: bytes, log_path: str) -> None:
        self.data = data
        self.log_path = log_path

    def __reduce__(self):
        return (_restore_blob, (self.data, self.log_path))


# ----------------------------------------------------------------------------- tests


def test_map_over_200_items_is_one_batch(runner):
    @flow(persist=False)
    def many(n: int = 200):
        futures = square.map(range(n))
        return [f.result() for f in futures]

    run = many.with_options(task_runner=runner)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.value == [i * i for i in range(200)]
    tasks = run.task_runs
    assert len(tasks) == 200
    assert {t.state for t in tasks} == {"Completed"}
    assert sorted(t.map_index for t in tasks) == list(range(200))
    assert all(t.start is not None and t.end >= t.start for t in tasks)
    # the 200 runs reached the scheduler in a couple of graph updates, not 200
    assert runner.stats["submitted"] == 200
    assert runner.stats["graph_updates"] <= 3  # one, unless the OS paused the flow thread
    assert run.view.task_runner.startswith("dask:tcp://127.0.0.1:")
    assert runner.stats["fallbacks"] == 0  # every final state came through the event stream
    (where,) = [log.message for log in run.view.logs if log.logger == "nb2flow.dask"]
    assert where.startswith("task runs go to the Dask scheduler at tcp://127.0.0.1:")
    assert "(2 workers now)" in where


def test_a_subflow_on_dask_takes_futures_of_its_parents_runner(runner):
    @task
    def slow_five():
        time.sleep(0.3)
        return 5

    @flow(persist=False)
    def child(x):
        return add_one.submit(x)

    @flow(persist=False, task_runner="threads")
    def parent():
        five = slow_five.submit()  # on the parent's threads, not finished yet
        return child.with_options(task_runner=runner)(five)

    assert parent() == 6


def test_diamond_intermediates_stay_on_the_workers(runner, cluster, tmp_path):
    _, client, _ = cluster
    log = tmp_path / "unpickled.txt"
    log.write_text("")
    seen: dict = {}

    @flow(persist=False)
    def diamond(n: int = 3_000_000):
        blob = make_blob.submit(n, str(log))
        left = blob_len.submit(blob)
        right = blob_first.submit(blob)
        out = join.submit(left, right)
        out.wait()
        seen["who_has"] = client.who_has()  # while the run holds its futures
        seen["blob_key"] = blob.handle.key
        seen["blob"] = blob
        return out

    run = diamond.with_options(task_runner=runner)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.value == "3000000:x"
    workers = set(client.scheduler_info()["workers"])
    holders = seen["who_has"][seen["blob_key"]]
    assert holders and set(holders) <= workers  # the intermediate lives on a worker
    # the flow process never received it: its value was not fetched, never unpickled here
    assert not seen["blob"].outcome.fetched
    assert str(os.getpid()) not in log.read_text().split()
    # released once the run ended (nothing left behind on the cluster)
    assert seen["blob"].handle is None


def test_large_arguments_go_to_the_workers_not_through_the_graph(runner):
    @task
    def size_of(data: bytes) -> int:
        return len(data)

    @flow(persist=False)
    def big_argument(n: int):
        return size_of.submit(b"z" * n)

    assert big_argument.with_options(task_runner=runner)(3_000_000) == 3_000_000
    assert runner.stats["scattered"] == 1


def test_unpacked_outputs_are_dask_futures_of_items(runner, cluster):
    _, client, _ = cluster
    seen: dict = {}

    @flow(persist=False)
    def items(n: int = 2_000_000):
        big, small = big_and_small.submit(n)
        out = add_one.submit(small)
        out.wait()
        seen["keys"] = set(client.who_has())
        seen["item1"] = big.parent.outcome.item(1)  # one item to the flow process
        seen["parent"] = big.parent
        return out

    run = items.with_options(task_runner=runner)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.value == 2_000_001
    trid = seen["parent"].task_run_id
    # add_one received item 1 alone, from a Dask task picking it on the cluster
    assert f"big_and_small.item1-{trid}" in seen["keys"]
    assert f"big_and_small.item0-{trid}" not in seen["keys"]
    assert seen["item1"] == 2_000_000
    assert not seen["parent"].outcome.fetched  # the 2 MB item never left the cluster


@task
def who_runs_me(_upstream=None):
    from nb2flow.runtime.api import get_run_context

    ctx = get_run_context()
    return [ctx.flow_run_name, ctx.flow_name, ctx.name, os.getpid()]


def test_the_run_context_on_a_worker_names_the_flow_run(runner):
    @flow(persist=False, name="ctx-flow")
    def ctx_flow():
        first = who_runs_me.submit()
        return [first, who_runs_me.submit(first)]  # the second one's payload is remapped

    run = ctx_flow.with_options(task_runner=runner)(return_state=True)
    assert run.state == "Completed", run.error
    for name, flow_name, task_name, pid in run.value:
        assert (name, flow_name, task_name) == (run.name, "ctx-flow", "who_runs_me")
        assert pid != os.getpid()


def test_an_item_future_result_fetches_only_its_item(runner):
    seen: dict = {}

    @flow(persist=False)
    def items(n: int = 2_000_000):
        big, small = big_and_small.submit(n)
        seen["parent"] = big.parent
        return {"small": small, "also": small.result()}  # .result() and the flow's value

    value = items.with_options(task_runner=runner)()
    assert value == {"small": 2_000_000, "also": 2_000_000}
    assert not seen["parent"].outcome.fetched  # the 2 MB item stayed on the cluster
    assert runner.stats["fetched"] == 1  # item 1, once


@task(nout=2)
def lock_and_number():
    import threading

    return threading.Lock(), 7


@task
def just_a_lock():
    import threading

    return threading.Lock()


def test_an_item_that_cannot_leave_the_worker_becomes_a_marker(runner):
    from nb2flow.runtime.engine.transport import Unavailable

    @flow(persist=False)
    def locked():
        lock, number = lock_and_number.submit()
        return {"lock": lock, "number": number}

    run = locked.with_options(task_runner=runner)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.value["number"] == 7  # its other item travels
    lock = run.value["lock"]
    assert type(lock) is Unavailable
    assert (lock.task, lock.index, lock.type_name) == ("lock_and_number", 0, "_thread.lock")
    assert lock.reason == "TypeError: cannot pickle '_thread.lock' object"
    warnings = [e.data["message"] for e in run.events if e.kind == "log" and e.data["level"] >= 30]
    assert warnings == [
        "item 0 of task 'lock_and_number' (_thread.lock) cannot be sent to another process "
        "(TypeError: cannot pickle '_thread.lock' object); it is replaced by an Unavailable "
        "marker"
    ]

    @flow(persist=False)
    def whole():
        return lock_and_number.submit().result()  # the whole value: the same markers

    value = whole.with_options(task_runner=runner)()
    assert value[1] == 7 and type(value[0]) is Unavailable and value[0].index == 0


@task
def use_lock(lock):
    with lock:
        return "locked"


@pytest.mark.timeout(60)  # Dask alone waits forever to move a lock to another worker
def test_a_reader_of_an_item_that_cannot_leave_its_worker_fails_clearly(runner):
    @flow(persist=False)
    def readers():
        lock, number = lock_and_number.submit()
        return [use_lock.submit(lock) for _ in range(4)] + [square.submit(number)]

    run = readers.with_options(task_runner=runner)(return_state=True)
    states = [t.state for t in run.task_runs]
    assert states == ["Completed"] + ["Failed"] * 4 + ["Completed"], run.error
    assert run.task_run("square").state == "Completed"
    for t in run.task_runs[1:5]:  # wherever Dask ran it, the reader gets the marker
        assert t.error == (
            "ValueUnavailable: input item 0 of task 'lock_and_number' (_thread.lock) is "
            "unavailable: it could not be sent from the process that computed it (TypeError: "
            "cannot pickle '_thread.lock' object); run on threads, or return a value that "
            "can be pickled"
        )


def test_a_single_result_that_cannot_leave_the_worker_is_a_clear_error(runner):
    @flow(persist=False)
    def locked():
        return {"lock": just_a_lock.submit()}

    run = locked.with_options(task_runner=runner)(return_state=True)
    # as on the process pool: the task that made it fails, where it made it
    assert run.task_run("just_a_lock").state == "Failed"
    assert run.state == "Failed"
    assert run.task_run("just_a_lock").error == (
        "TypeError: the result of task 'just_a_lock' cannot be sent back to the flow process "
        "(_thread.lock: TypeError: cannot pickle '_thread.lock' object)"
    )


@task
def lock_in_a_dict():
    import threading

    time.sleep(0.3)  # while big_bytes runs on the other worker
    return {"lock": threading.Lock(), "pid": os.getpid()}


@task
def big_bytes():
    time.sleep(0.3)
    return b"z" * 5_000_000


@task
def reads_both(d, data):
    return d["pid"], len(data)


@pytest.mark.timeout(60)  # Dask alone waits forever to move the lock to the other worker
def test_an_unpicklable_result_fails_its_own_task_and_downstream_is_not_blamed(runner):
    @flow(persist=False, timeout_seconds=45)
    def five():
        d = lock_in_a_dict.submit()
        data = big_bytes.submit()
        both = reads_both.submit(d, data)  # Dask would move the small dict to the 5 MB
        return {"both": add_one.submit(both), "n": square.submit(3)}

    run = five.with_options(task_runner=runner)(return_state=True)
    states = {t.task_key: t.state for t in run.task_runs}
    assert states == {
        "lock_in_a_dict": "Failed",
        "big_bytes": "Completed",
        "reads_both": "NotRun",
        "add_one": "NotRun",
        "square": "Completed",
    }, run.error
    assert run.state == "Failed"
    assert run.error.startswith("task 'lock_in_a_dict' failed: TypeError: the result of task ")
    assert "reads_both" not in run.error and "add_one" not in run.error
    assert run.task_run("lock_in_a_dict").error == (
        "TypeError: the result of task 'lock_in_a_dict' cannot be sent back to the flow "
        "process (dict: TypeError: cannot pickle '_thread.lock' object)"
    )


def test_failing_task_retries_with_states_streamed_live(runner, tmp_path):
    counter = tmp_path / "attempts.txt"
    counter.write_text("0")

    @task(retries=2, retry_delay_seconds=0.4)
    def flaky(path: str):
        n = int(Path(path).read_text()) + 1
        Path(path).write_text(str(n))
        get_run_logger().info("attempt %d on pid %d", n, os.getpid())
        if n < 3:
            raise RuntimeError(f"boom {n}")
        return n

    @task(retries=1)
    def always_fails():
        raise ValueError("never works")

    @flow(persist=False)
    def retrying(path: str):
        ok = flaky.submit(path)
        bad = always_fails.submit()
        after = add_one.submit(bad)
        return {"ok": ok, "bad": bad, "after": after}

    received: list = []

    def record(ev):
        received.append((time.monotonic(), ev))

    subscribe(record)
    try:
        run = retrying.with_options(task_runner=runner)(str(counter), return_state=True)
    finally:
        unsubscribe(record)
    assert run.state == "Failed"
    assert "always_fails" in run.error and "never works" in run.error
    flaky_run = run.task_run("flaky")
    assert flaky_run.state == "Completed"
    assert flaky_run.attempts == 3
    states = [s for s, _, _ in flaky_run.history]
    assert states == ["Running", "Retrying", "Running", "Retrying", "Running", "Completed"]
    logs = [log.message for log in run.view.logs if log.task_run_id == flaky_run.id]
    assert [m.split(" on ")[0] for m in logs] == ["attempt 1", "attempt 2", "attempt 3"]
    assert str(os.getpid()) not in " ".join(logs)  # it ran on a worker
    bad = run.task_run("always_fails")
    assert bad.state == "Failed" and bad.attempts == 2
    assert "ValueError: never works" in bad.error
    assert run.task_run("add_one").state == "NotRun"
    # live: the first Retrying reached the flow process well before the final state
    trid = flaky_run.id
    times = {
        (ev.data["state"], ev.data["attempt"]): t
        for t, ev in received
        if ev.kind == "task_state" and ev.task_run_id == trid
    }
    assert times[("Completed", 3)] - times[("Retrying", 1)] >= 0.4  # 0.8 s on the worker


def test_every_capture_path_on_dask_workers(runner, monkeypatch):
    """print, stderr, a library's log records, a figure and a displayed DataFrame of tasks on
    Dask workers reach the run record, as on threads and processes (tests/test_capture.py)."""
    monkeypatch.setenv("NB2FLOW_CAPTURE", "on")
    from nb2flow.store.db import Store
    from tests.capture_tasks import capture_flow, check_capture_run

    run = capture_flow.with_options(task_runner=runner)(return_state=True)
    check_capture_run(run)
    with Store() as store:
        stored = store.load_run(run.id)
    check_capture_run(type("Stored", (), {"state": stored.state, "view": stored, "error": ""}))


def test_timeouts_and_prints_keep_their_meaning_on_workers(runner):
    @task(timeout_seconds=0.5)
    def too_slow():
        time.sleep(5)
        return "late"

    @task(log_prints=True)
    def chatty(x):
        print(f"got {x} in {os.getpid()}")
        return x

    @task(timeout_seconds=0.5, hard_timeout=True)
    def spinning():
        while True:
            pass

    @flow(persist=False)
    def timing():
        return {"slow": too_slow.submit(), "spin": spinning.submit(), "chatty": chatty.submit(3)}

    t0 = time.monotonic()
    run = timing.with_options(task_runner=runner)(return_state=True)
    assert time.monotonic() - t0 < 4
    slow = run.task_run("too_slow")
    assert slow.state == "TimedOut"
    assert "timed out after 0.5s" in slow.error
    spin = run.task_run("spinning")  # a child process of the worker, killed
    assert spin.state == "TimedOut"
    assert "timed out after 0.5s (process killed)" in spin.error
    chatty_run = run.task_run("chatty")
    assert chatty_run.state == "Completed"
    (line,) = [log.message for log in run.view.logs if log.task_run_id == chatty_run.id]
    assert line.startswith("got 3 in ") and line != f"got 3 in {os.getpid()}"


@task(cache=True)
def cached_square(x: int, salt: str) -> int:
    return x * x


def test_cached_results_are_found_on_the_workers(runner):
    import uuid

    @flow(persist=False)
    def twice(salt: str):
        return cached_square.submit(7, salt)

    salt = uuid.uuid4().hex  # a fresh cache key for this test
    first = twice.with_options(task_runner=runner)(salt, return_state=True)
    second = twice.with_options(task_runner=runner)(salt, return_state=True)
    assert first.value == second.value == 49
    assert first.task_run("cached_square").state == "Completed"
    again = second.task_run("cached_square")
    assert again.state == "Cached" and again.cached_from == first.id


def _kill_worker_once(marker: str) -> int:
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@task
def survives_a_killed_worker(marker: str) -> int:
    return _kill_worker_once(marker)


@task
def kills_its_worker() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@pytest.mark.timeout(120)
def test_worker_killed_mid_run_the_task_runs_again(runner, tmp_path):
    marker = tmp_path / "killed.txt"

    @flow(persist=False, timeout_seconds=90)
    def once(marker: str):
        return survives_a_killed_worker.submit(marker)

    run = once.with_options(task_runner=runner)(str(marker))
    killed = int(marker.read_text())
    assert run != killed  # finished by another worker process
    assert run != os.getpid()


@pytest.mark.timeout(120)
def test_worker_killed_every_time_fails_cleanly(runner):
    @flow(persist=False, timeout_seconds=90)
    def doomed():
        dead = kills_its_worker.submit()
        return add_one.submit(dead)

    t0 = time.monotonic()
    run = doomed.with_options(task_runner=runner)(return_state=True)
    assert time.monotonic() - t0 < 60
    assert run.state == "Failed"
    crashed = run.task_run("kills_its_worker")
    assert crashed.state == "Crashed"
    assert "the Dask workers running it died" in crashed.error
    assert "KilledWorker" in crashed.error
    assert run.task_run("add_one").state == "NotRun"
    assert "kills_its_worker" in run.error


# --------------------------------------------------------------- choosing the runner


def test_specs_and_environment_choose_the_dask_runner(monkeypatch):
    require("dask", HAS_DASK, "dask[distributed] is not installed")
    from nb2flow.runtime.runners.dask.runner import DaskRunner

    r = registry.create("dask://10.0.0.5:8786")
    assert isinstance(r, DaskRunner) and r.connection.address == "tcp://10.0.0.5:8786"
    assert r.describe() == "dask:tcp://10.0.0.5:8786"
    assert registry.create("tcp://h:1").connection.address == "tcp://h:1"
    assert registry.create("dask:tls://h:1").connection.address == "tls://h:1"
    local = registry.create("dask:3")
    assert local.connection.n_workers == 3 and local.connection.address is None
    assert registry.create("dask").describe() == "dask"
    monkeypatch.setenv("NB2FLOW_TASK_RUNNER", "dask://sched:8786")
    assert registry.create(None).connection.address == "tcp://sched:8786"


def test_dask_spec_uses_the_default_client_when_there_is_one(cluster):
    from distributed import Client

    lc, _, _ = cluster

    @task
    def on_the_default_client(x):
        return x * x

    @flow(persist=False, task_runner="dask")
    def small(n: int = 5):
        return [f.result() for f in on_the_default_client.map(range(n))]

    with Client(lc) as client:  # set as the process's default client
        run = small(return_state=True)
        assert run.state == "Completed", run.error
        assert run.value == [0, 1, 4, 9, 16]
        assert client.status == "running"  # a client it did not open is left open
    assert "on_the_default_client" in lc.scheduler.task_prefixes  # ran on that cluster
    assert lc.status.name == "running"


def test_missing_distributed_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(Nb2flowError, match=r"needs the 'distributed' package.*pip install"):
        registry.create("dask")


def _listening(pids: set[int]) -> set[tuple[int, str, int]]:
    """(pid, ip, port) of the TCP sockets those processes listen on, read from the OS."""
    import psutil

    found = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


@pytest.mark.timeout(120)
def test_everything_the_local_cluster_nb2flow_starts_listens_on_loopback_only():
    require("dask", HAS_DASK, "dask[distributed] is not installed")
    import psutil

    from nb2flow.runtime.runners.dask.runner import DaskRunner

    me = psutil.Process()

    def family() -> set[int]:
        return {me.pid, *(p.pid for p in me.children(recursive=True))}

    before = _listening(family())
    runner = DaskRunner("1")
    runner.start()
    try:
        info = runner.connection.active.scheduler_info(n_workers=-1)
        opened = _listening(family()) - before
    finally:
        runner.shutdown()
    # the scheduler, the dashboard, the nanny and the worker: all there, all on loopback
    ports = {port for _, _, port in opened}
    ((worker_address, worker),) = info["workers"].items()
    for address in (info["address"], worker_address, worker["nanny"]):
        assert int(address.rsplit(":", 1)[1]) in ports, (address, opened)
    assert info["services"]["dashboard"] in ports, opened
    assert {ip for _, ip, _ in opened} == {"127.0.0.1"}, opened


def test_the_local_cluster_binds_where_it_is_told():
    from nb2flow.runtime.runners.dask.connection import local_cluster_kwargs

    assert local_cluster_kwargs({}) == {
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }
    told = local_cluster_kwargs({"host": "10.1.2.3", "n_workers": 2})
    assert told["host"] == "10.1.2.3" and told["dashboard_address"] == "10.1.2.3:0"
    pinned = local_cluster_kwargs({"dashboard_address": ":8787"})
    assert pinned["host"] == "127.0.0.1" and pinned["dashboard_address"] == ":8787"


def test_unreachable_scheduler_is_a_clear_error(capsys):
    require("dask", HAS_DASK, "dask[distributed] is not installed")
    import dask

    from nb2flow.runtime.api import run_cli

    @flow(persist=False, task_runner="dask://127.0.0.1:9")
    def nowhere(x: int = 1):
        return square.submit(x)

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        t0 = time.monotonic()
        run = nowhere(return_state=True)
        assert time.monotonic() - t0 < 20
        assert run.state == "Failed" and run.task_runs == []  # no task run was created
        assert run.error.startswith(
            "Nb2flowError: cannot reach the Dask scheduler at tcp://127.0.0.1:9: "
        )
        code = run_cli(nowhere, ["--quiet"], exit=False)
    err = capsys.readouterr().err
    assert code == 2  # a usage error, like a bad option
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9: ")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    # a runner object that failed to start tries again in the next run
    from nb2flow.runtime.runners.dask.runner import DaskRunner

    again = nowhere.with_options(task_runner=DaskRunner(address="127.0.0.1:9", connect_timeout=1))
    for _ in range(2):
        run = again(return_state=True)
        assert run.error.startswith("Nb2flowError: cannot reach the Dask scheduler"), run.error


SCRIPT = """
from nb2flow import flow, run_cli, task

OFFSET = 1000  # module level: shipped with the tasks


@task
def cube(x):
    return x ** 3 + OFFSET


@task
def total(xs):
    return sum(xs)


@flow(name="cubes")
def main(n: int = 10):
    return {"total": total.submit(cube.map(range(n)))}


if __name__ == "__main__":
    run_cli(main)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_script_command_line_executor(cluster, tmp_path):
    lc, _, _ = cluster
    script = tmp_path / "cubes.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    expected = sum(x**3 + 1000 for x in range(12))
    # Dask's default dashboard port is taken (another cluster, a notebook's): the
    # LocalCluster of `--executor dask` takes a free port without a warning
    import socket

    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:
            pass  # in use already: the same situation
        for executor in (lc.scheduler_address.replace("tcp://", "dask://"), "dask"):
            proc = subprocess.run(
                [sys.executable, str(script), "--n", "12", "--executor", executor, "--json", "-q"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=100,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert json.loads(proc.stdout) == {"total": expected}
            assert "8787" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------- the example


def _load_example(tmp_path: Path):
    require_modules("example", "pandas", "xgboost", "mlflow", "sklearn", "pyarrow")
    script = ROOT / "converted_scripts" / "duration_prediction.py"
    if not script.exists():  # not checked in yet: convert the notebook as `nb2flow convert`
        from nb2flow.codegen import convert_notebook

        script = tmp_path / "duration_prediction.py"
        script.write_text(convert_notebook(ROOT / "notebooks" / "duration-prediction.ipynb").script)
    spec = importlib.util.spec_from_file_location("duration_prediction", script)
    module = importlib.util.module_from_spec(spec)
    return spec, module


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_example_flow_gives_the_thread_runners_rmse(cluster, runner, tmp_path, monkeypatch):
    from nb2flow.examples import taxi

    spec, module = _load_example(tmp_path)
    for month in ("2021-01", "2021-02"):
        taxi.write_month(tmp_path / "data", month, rows=2000, seed=11)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "duration_prediction", module)
    spec.loader.exec_module(module)

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # absolute: workers run elsewhere

    def params(experiment: str) -> dict:
        return {
            "train_path": str(tmp_path / "data" / "green_tripdata_2021-01.parquet"),
            "val_path": str(tmp_path / "data" / "green_tripdata_2021-02.parquet"),
            "tracking_uri": tracking_uri,
            "experiment_name": experiment,
            "num_boost_round": 15,
        }

    threads = module.main.with_options(task_runner="threads:2", persist=False)
    by_threads = threads(**params("threads"), return_state=True)
    assert by_threads.state == "Completed", by_threads.error
    rmse = by_threads.value["rmse"]

    on_dask = module.main.with_options(task_runner=runner, persist=False)
    by_dask = on_dask(**params("dask"), return_state=True)
    tasks = {t.task_key: t.state for t in by_dask.task_runs}
    assert set(tasks) == {"load_data", "features", "train_model", "best_run"}
    assert set(tasks.values()) == {"Completed"}, (tasks, by_dask.error)  # not from the cache
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("dask").experiment_id])
    assert logged.data.metrics["rmse"] == pytest.approx(rmse, rel=1e-6)
    # the flow returns its declared outputs (output: tags); the two xgboost DMatrix objects
    # stay in train_model's worker (they used to come back as Unavailable markers, warned)
    assert by_dask.state == "Completed", by_dask.error
    assert by_dask.value["rmse"] == pytest.approx(rmse, rel=1e-6)
    assert set(by_dask.value) == {"rmse", "run_id", "best_rmse"}
    sent = [lg.message for lg in by_dask.view.logs if "another process" in lg.message]
    assert sent == [], sent


def test_a_value_nobody_waits_for_leaves_the_cluster(runner, cluster):
    """Dask's own memory management frees a run's key once its readers ended and the flow
    let go of its future; a key the user's future still holds stays."""
    _, client, _ = cluster

    def in_memory() -> list[str]:  # computed or being computed, not released
        return client.run_on_scheduler(
            lambda dask_scheduler: [
                str(k)
                for k, ts in dask_scheduler.tasks.items()
                if ts.state in ("memory", "processing", "waiting")
            ]
        )

    def held(trid: str) -> bool:
        return any(k.endswith(trid) for k in in_memory())

    @flow(task_runner=runner, persist=False)
    def body():
        a = square.submit(3)
        kept = square.submit(4)
        r = square.submit(a)
        dropped = a.task_run_id
        del a
        assert r.result() == 81
        deadline = time.monotonic() + 30
        while held(dropped):  # released by messages: wait for the scheduler to act on them
            assert time.monotonic() < deadline, f"{dropped} still in memory: {in_memory()}"
            time.sleep(0.02)
        assert held(kept.task_run_id), in_memory()
        return kept.result()

    assert body() == 16
