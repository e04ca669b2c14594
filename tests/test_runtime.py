"""The runtime core: flows, tasks, futures, states, retries, timeouts, logs, runners."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from nb2flow import flow, get_run_logger, task
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.api import Flow, Task, unmapped
from nb2flow.runtime.core import events
from nb2flow.runtime.core.exceptions import FlowTimeout, TaskTimeout, UpstreamFailed
from nb2flow.runtime.engine.flow_run import FlowRun
from nb2flow.runtime.engine.futures import ItemFuture, TaskFuture
from nb2flow.runtime.runners import registry
from nb2flow.runtime.runners.base import TaskRunner


@pytest.fixture
def recorded():
    """Every run event published during the test, in order."""
    seen: list[events.RunEvent] = []
    events.subscribe(seen.append)
    yield seen
    events.unsubscribe(seen.append)


def states_of(evs, task_run_id):
    return [e.data["state"] for e in evs if e.kind == "task_state" and e.task_run_id == task_run_id]


# ------------------------------------------------------------------------------- basics


def test_decorators_with_and_without_arguments():
    @task
    def plain(x):
        return x + 1

    @task(name="renamed", retries=2, nout=2)
    def two(x):
        return x, x

    @flow
    def my_flow():
        return plain(1)

    @flow(name="named", task_runner="sequential")
    def other():
        return 0

    assert isinstance(plain, Task) and plain.name == "plain" and plain.retries == 0
    assert two.name == "renamed" and two.retries == 2 and two.nout == 2
    assert isinstance(my_flow, Flow) and my_flow.name == "my-flow"
    assert other.name == "named" and other.task_runner == "sequential"
    assert plain.__name__ == "plain" and plain.__wrapped__(1) == 2
    with pytest.raises(ValueError, match="nout"):
        task(nout=1)(lambda: 0)

    async def coro():
        return 1

    with pytest.raises(TypeError, match="async functions are not supported"):
        task(coro)
    with pytest.raises(TypeError, match="async functions are not supported"):
        flow(name="x")(coro)


def test_outside_a_flow_a_task_is_the_plain_function(recorded):
    @task
    def double(x):
        return 2 * x

    assert double(4) == 8
    fut = double.submit(5)
    assert fut.done() and fut.result() == 10 and fut.state == "Completed"
    assert [f.result() for f in double.map([1, 2])] == [2, 4]
    assert recorded == []  # no run, no events


def test_direct_call_returns_value_and_emits_lifecycle(recorded):
    @task
    def inc(x):
        return x + 1

    @flow
    def f(x: int = 1):
        return inc(inc(x))

    assert f(5) == 7
    kinds = [(e.kind, e.data.get("state")) for e in recorded]
    assert kinds[:2] == [("flow_run", None), ("flow_state", "Running")]
    assert kinds[2:5] == [
        ("task_run", None),
        ("task_state", "Running"),
        ("task_state", "Completed"),
    ]
    assert kinds[-1] == ("flow_state", "Completed")
    run_ev = recorded[0]
    assert run_ev.data["flow_name"] == "f" and run_ev.data["parameters"] == {"x": "5"}
    assert "-" in run_ev.data["run_name"] and len(run_ev.flow_run_id) == 32
    # the second call got the first one's value, not a future: no edge
    second = [e for e in recorded if e.kind == "task_run"][1]
    assert list(second.data["upstream"]) == [] and second.data["task_key"] == "inc-2"


def test_futures_as_arguments_become_edges_with_names(recorded):
    @task
    def load():
        return [1, 2, 3]

    @task
    def total(data, extra=0):
        return sum(data) + extra

    @task
    def size(items):
        return len(items[0]) + items[1]

    @flow
    def f():
        d = load.submit()
        e = load.submit()
        return total.submit(d, extra=size.submit([e, 10]))  # a future inside a list too

    run = f(return_state=True)
    assert run.state == "Completed" and run.value == 6 + 13
    by_key = {t.task_key: t for t in run.task_runs}
    assert set(by_key) == {"load", "load-2", "size", "total"}
    assert by_key["size"].upstream == [by_key["load-2"].id]
    assert by_key["size"].edge_names == {by_key["load-2"].id: ["items"]}
    assert set(by_key["total"].upstream) == {by_key["load"].id, by_key["size"].id}
    g = run.graph()
    assert g.edges[by_key["load"].id, by_key["total"].id]["names"] == ["data"]
    assert g.edges[by_key["size"].id, by_key["total"].id]["names"] == ["extra"]


def test_nout_unpacks_without_waiting():
    gate = threading.Event()

    @task(nout=2)
    def split():
        gate.wait(5)
        return "left", "right"

    @task
    def join(a, b):
        return f"{a}+{b}"

    @flow
    def f():
        a, b = split.submit()
        assert isinstance(a, ItemFuture) and isinstance(b, ItemFuture)
        # unpacking did not wait: the task is still blocked on the gate, opened only now
        assert not a.done() and not gate.is_set()
        joined = join.submit(b, a)
        gate.set()
        return {"joined": joined, "a": a}

    out = f()
    assert out["joined"] == "right+left" and out["a"] == "left"


def test_nout_mismatch_fails_with_a_clear_error():
    @task(nout=2)
    def three():
        return 1, 2, 3

    @flow
    def f():
        a, b = three.submit()
        return a

    run = f(return_state=True)
    assert run.state == "Failed"
    assert "declares nout=2 but returned 3 values" in run.task_run("three").error


def test_future_without_nout_iterates_its_value():
    @task
    def pair():
        return (1, 2)

    @flow
    def f():
        x, y = pair.submit()  # waits, then iterates the value
        return x + y

    assert f() == 3


def test_wait_for_orders_tasks_without_data(recorded):
    log: list[str] = []

    @task
    def first():
        time.sleep(0.2)
        log.append("first")

    @task
    def second():
        log.append("second")

    @flow
    def f():
        a = first.submit()
        b = second.submit(wait_for=[a])
        return b

    run = f(return_state=True)
    assert log == ["first", "second"]
    t = run.task_run("second")
    assert t.upstream == [run.task_run("first").id] and t.edge_names == {}


def test_returned_containers_are_resolved():
    @task
    def val(x):
        return x

    @flow
    def f():
        return {"a": val.submit(1), "b": [val.submit(2), (val.submit(3), 4)], "c": "x"}

    assert f() == {"a": 1, "b": [2, (3, 4)], "c": "x"}


def test_return_state_gives_the_flow_run():
    @task
    def boom():
        raise KeyError("missing")

    @flow
    def f(n: int = 2):
        return boom.submit()

    run = f(3, return_state=True)
    assert isinstance(run, FlowRun)
    assert run.state == "Failed" and run.parameters == {"n": 3}
    assert run.error == "task 'boom' failed: KeyError: 'missing'"
    assert "KeyError" in run.traceback and "raise KeyError" in run.traceback
    t = run.task_runs[0]
    assert t.state == "Failed" and t.attempts == 1 and t.duration is not None
    assert run.duration is not None and run.duration >= 0
    with pytest.raises(KeyError):
        run.result()


def test_failure_raises_the_task_error_without_return_state():
    @task
    def boom():
        raise ValueError("bad input")

    @flow
    def f():
        boom.submit()

    with pytest.raises(ValueError, match="bad input"):
        f()


def test_flow_body_error_fails_the_flow():
    @flow
    def f():
        raise RuntimeError("in the body")

    run = f(return_state=True)
    assert run.state == "Failed" and run.error == "RuntimeError: in the body"


# ---------------------------------------------------------------------- NotRun, states


def test_not_run_propagates_after_independent_branches_finish(recorded):
    @task
    def boom():
        raise ValueError("no")

    @task
    def after(x):
        return x

    @task
    def slow():
        time.sleep(0.4)
        return "done"

    @flow
    def f():
        b = boom.submit()
        c = after.submit(after.submit(b))
        s = slow.submit()
        return {"c": c, "s": s}

    run = f(return_state=True)
    states = {t.task_key: t.state for t in run.task_runs}
    assert states == {"boom": "Failed", "after": "NotRun", "after-2": "NotRun", "slow": "Completed"}
    assert run.state == "Failed" and run.error.startswith("task 'boom' failed")
    slow_end = run.task_run("slow").end
    assert run.end >= slow_end  # the flow failed only after the independent branch ended
    assert (
        "upstream task 'boom'"
        in [e.data["message"] for e in recorded if e.data.get("state") == "NotRun"][0]
    )
    fut_state = None

    @flow
    def g():
        nonlocal fut_state
        x = after.submit(boom.submit())
        x.wait()
        fut_state = x.state
        with pytest.raises(UpstreamFailed):
            x.result()
        return 1

    assert g(return_state=True).state == "Failed" and fut_state == "NotRun"


def test_retries_wait_and_then_succeed(recorded):
    calls: list[float] = []

    @task(retries=2, retry_delay_seconds=0.15)
    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    @flow
    def f():
        return flaky.submit()

    run = f(return_state=True)
    t = run.task_runs[0]
    assert run.state == "Completed" and run.value == "ok" and t.attempts == 3
    assert [s for s, _ts, _a in t.history] == [
        "Running",
        "Retrying",
        "Running",
        "Retrying",
        "Running",
        "Completed",
    ]
    assert calls[1] - calls[0] >= 0.14 and calls[2] - calls[1] >= 0.14
    retry = [e for e in recorded if e.data.get("state") == "Retrying"][0]
    assert retry.data["error"] == "ConnectionError: try 1" and retry.data["attempt"] == 1


def test_retries_exhausted_fail_with_attempt_count():
    @task(retries=1, retry_delay_seconds=[0.01])
    def always():
        raise OSError("down")

    @flow
    def f():
        always.submit()

    run = f(return_state=True)
    t = run.task_runs[0]
    assert t.state == "Failed" and t.attempts == 2 and t.error == "OSError: down"


def test_timeout_marks_timed_out_and_interrupts_python_code():
    stopped = threading.Event()

    @task(timeout_seconds=0.2)
    def spin():
        try:
            while True:
                sum(range(100))
        except TaskTimeout:
            stopped.set()
            raise

    @flow
    def f():
        return spin.submit()

    run = f(return_state=True)
    t = run.task_runs[0]
    assert t.state == "TimedOut" and "timed out after 0.2s" in t.error
    assert run.state == "Failed" and "timed out" in run.error
    assert stopped.wait(2)  # the abandoned thread was stopped at its next instruction


def test_timeout_returns_while_an_attempt_blocked_in_c_still_runs():
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    @task(timeout_seconds=0.2)
    def blocked():
        started.set()
        release.wait(10)  # blocked in C: the stop request lands only when it returns
        finished.set()

    @flow
    def f():
        return blocked.submit()

    try:
        run = f(return_state=True)
        # the run ended at the deadline, with the attempt still blocked
        assert started.is_set() and not finished.is_set()
        assert run.task_runs[0].state == "TimedOut" and run.state == "Failed"
    finally:
        release.set()


def test_timeout_then_retry_succeeds():
    n = []

    @task(timeout_seconds=0.2, retries=1)
    def sometimes_slow():
        n.append(1)
        if len(n) == 1:
            time.sleep(1)
        return len(n)

    @flow
    def f():
        return sometimes_slow.submit()

    run = f(return_state=True)
    t = run.task_runs[0]
    assert run.value == 2 and [s for s, _, _ in t.history][:2] == ["Running", "Retrying"]


def test_hard_timeout_kills_the_attempt_process(tmp_path):
    import os

    pid_file = tmp_path / "stuck.pid"

    @task(timeout_seconds=0.5, hard_timeout=True)
    def stuck():
        pid_file.write_text(str(os.getpid()))
        time.sleep(30)  # blocked in C: only a process kill stops it

    @task(timeout_seconds=5, hard_timeout=True)
    def quick(x):
        get_run_logger().info("in the child")
        return x * 2

    @flow
    def f():
        return {"q": quick.submit(21), "s": stuck.submit()}

    run = f(return_state=True)
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):  # killed and reaped by the time the run ended
        os.kill(pid, 0)
    assert run.task_run("stuck").state == "TimedOut"
    assert "process killed" in run.task_run("stuck").error
    assert run.task_run("quick").state == "Completed"
    assert [lg.message for lg in run.view.logs] == ["in the child"]


def test_every_state_name_is_reachable():
    @task
    def ok():
        return 1

    @task
    def bad():
        raise ValueError

    @task(retries=1)
    def retried():
        raise ValueError

    @task(timeout_seconds=0.05)
    def slow():
        time.sleep(0.5)

    @task
    def downstream(x):
        return x

    @flow
    def f():
        ok.submit()
        bad.submit()
        retried.submit()
        slow.submit()
        downstream.submit(bad.submit())

    run = f(return_state=True)
    seen = {s for t in run.task_runs for s, _, _ in t.history}
    assert {"Running", "Completed", "Failed", "Retrying", "TimedOut", "NotRun"} <= seen
    assert all(t.created is not None for t in run.task_runs)  # created Pending


def test_flow_retries_rerun_the_body():
    attempts = []

    @task
    def step():
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time")
        return "second time"

    @flow(retries=1)
    def f():
        return step.submit()

    run = f(return_state=True)
    assert run.state == "Completed" and run.value == "second time"
    flow_states = [e.data["state"] for e in run.events if e.kind == "flow_state"]
    assert flow_states == ["Running", "Retrying", "Running", "Completed"]


def test_flow_timeout():
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    @task
    def slow():
        started.set()
        release.wait(10)
        finished.set()

    @flow(timeout_seconds=0.2, retries=2)  # a timed-out flow is not retried
    def f():
        slow.submit()

    try:
        run = f(return_state=True)
        # the run ended at the deadline, while its task still ran
        assert started.is_set() and not finished.is_set()
    finally:
        release.set()
    assert run.state == "TimedOut" and isinstance(run.exc, FlowTimeout)
    assert run.task_runs[0].state == "Cancelled"
    assert [e.data["state"] for e in run.events if e.kind == "flow_state"] == [
        "Running",
        "TimedOut",
    ]
    release.clear()
    try:
        with pytest.raises(FlowTimeout):
            f()
    finally:
        release.set()


# -------------------------------------------------------------------------- concurrency


def _naps(runner: str, dependent: bool, together: threading.Barrier | None = None) -> list:
    """Three naps; each returns the (start, end) of its sleep. With ``together``, each nap
    first waits until all three are running at once (it fails if they never are)."""

    @task
    def nap(prev=None):
        if together is not None:
            together.wait()
        start = time.monotonic()
        time.sleep(0.05)
        return (start, time.monotonic())

    @flow(task_runner=runner)
    def f():
        prev = None
        futs = []
        for _ in range(3):
            fut = nap.submit(prev) if dependent else nap.submit()
            futs.append(fut)
            prev = fut if dependent else None
        return futs

    return f()


def _one_after_another(spans: list) -> bool:
    return all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_independent_naps_overlap_on_threads():
    spans = _naps("threads", dependent=False, together=threading.Barrier(3, timeout=10))
    assert len(spans) == 3  # all three were running at the same time


def test_dependent_naps_do_not_overlap():
    assert _one_after_another(_naps("threads", dependent=True))


def test_sequential_runner_runs_one_at_a_time():
    assert _one_after_another(_naps("sequential", dependent=False))


def test_thread_width_limits_concurrency():
    active = []
    peak = []
    lock = threading.Lock()

    @task
    def work(i):
        with lock:
            active.append(i)
            peak.append(len(active))
        time.sleep(0.05)
        with lock:
            active.remove(i)

    @flow(task_runner="threads:2")
    def f():
        return work.map(range(6))

    run = f(return_state=True)
    assert run.state == "Completed" and max(peak) == 2
    assert run.view.task_runner == "threads:2"
    assert sorted(t.map_index for t in run.task_runs) == list(range(6))


def test_map_with_unmapped_and_futures():
    @task
    def nums():
        return [1, 2, 3]

    @task
    def scale(x, factor):
        return x * factor

    @flow
    def f():
        return scale.map(nums.submit(), unmapped(10))

    run = f(return_state=True)
    assert run.value == [10, 20, 30]
    producer = run.task_run("nums").id
    for i in range(3):  # each mapped run keeps the edge to the run that made the sequence
        t = run.task_run(f"scale[{i}]")
        assert t.upstream == [producer] and t.edge_names == {producer: ["x"]}
    with pytest.raises(ValueError, match="different lengths"):
        scale.map([1, 2], [1])


# ------------------------------------------------------------------------------ logging


def test_logs_from_tasks_and_flows_become_events(recorded):
    @task(log_prints=True)
    def talk(x):
        get_run_logger().warning("careful with %s", x)
        print("printed", x)
        return x

    @flow
    def f():
        get_run_logger().info("flow says hi")
        return talk.submit(3)

    run = f(return_state=True)
    logs = [(lg.task_run_id, lg.levelname, lg.message) for lg in run.view.logs]
    tid = run.task_runs[0].id
    assert (None, "INFO", "flow says hi") in logs
    assert (tid, "WARNING", "careful with 3") in logs
    assert (tid, "INFO", "printed 3") in logs
    log_events = [e for e in recorded if e.kind == "log"]
    assert all(e.flow_run_id == run.id for e in log_events) and len(log_events) == 3


def test_print_without_log_prints_is_left_alone(capsys):
    @task
    def talk():
        print("plain print")

    @flow
    def f():
        talk.submit()

    run = f(return_state=True)
    assert run.view.logs == [] and "plain print" in capsys.readouterr().out


def test_get_run_logger_outside_a_run_raises():
    with pytest.raises(RuntimeError, match="inside a flow or a task"):
        get_run_logger()


# ------------------------------------------------------------------------------ runners


def test_runner_registry_parses_specs(monkeypatch):
    monkeypatch.setenv("NB2FLOW_TASK_RUNNER", "processes:3")
    assert registry.create(None).describe() == "processes:3"
    monkeypatch.delenv("NB2FLOW_TASK_RUNNER")
    assert registry.parse("threads:8") == ("threads", "8")
    assert registry.parse("dask://host:8786") == ("dask", "host:8786")
    assert registry.parse("tcp://h:1") == ("dask", "tcp://h:1")
    assert registry.create("threads:3").width == 3
    assert registry.create("sequential").describe() == "sequential"
    assert registry.create(None).name == "threads"
    with pytest.raises(Nb2flowError, match="unknown task runner 'nope'"):
        registry.create("nope")
    with pytest.raises(Nb2flowError, match="width"):
        registry.create("threads:zero")


def test_registered_runner_is_used():
    class Recording(TaskRunner):
        name = "recording"
        seen: list[str] = []

        def submit(self, call):
            Recording.seen.append(call.task.name)
            call.run()

    registry.register("recording", Recording)

    @task
    def one():
        return 1

    @flow(task_runner="recording")
    def f():
        return one.submit()

    assert f() == 1 and Recording.seen == ["one"]


def test_a_runner_that_cannot_start_fails_the_flow_cleanly(capsys):
    from nb2flow.runtime.api import run_cli

    class Unreachable(TaskRunner):
        name = "unreachable"

        def start(self):
            raise Nb2flowError("cannot reach the cluster at tcp://nowhere:1")

        def submit(self, call):  # pragma: no cover - never started
            call.run()

    @task
    def one():
        return 1

    @flow(task_runner=Unreachable, persist=False)
    def f():
        return one.submit()

    box: list = []
    th = threading.Thread(target=lambda: box.append(f(return_state=True)), daemon=True)
    th.start()
    th.join(10)
    assert box, "the flow run hangs when its task runner cannot start"
    (run,) = box
    assert run.state == "Failed" and run.task_runs == []
    assert run.error == "Nb2flowError: cannot reach the cluster at tcp://nowhere:1"
    assert run_cli(f, ["--quiet"], exit=False) == 2
    err = capsys.readouterr().err
    assert err == "error: cannot reach the cluster at tcp://nowhere:1\n"


def test_subflow_runs_as_its_own_flow_run():
    @task
    def one():
        return 1

    @flow
    def child():
        return one.submit()

    @flow
    def parent():
        return child() + 1

    run = parent(return_state=True)
    assert run.value == 2
    child_runs = {e.flow_run_id for e in run.events}  # only the parent's own events
    assert child_runs == {run.id}


def test_future_interface():
    @task
    def val():
        return 5

    @flow
    def f():
        fut = val.submit()
        assert isinstance(fut, TaskFuture)
        assert fut.wait(5) and fut.state == "Completed" and fut.result(timeout=1) == 5
        got = []
        fut.add_done_callback(lambda x: got.append(x.result()))
        assert got == [5] and fut.exception() is None
        return fut

    assert f() == 5


# -------------------------------------------------------------------------------- hooks


def test_panel_hook_only_for_top_level_runs_in_a_kernel(monkeypatch):
    import sys

    from nb2flow.jupyter import panel

    attached: list[str] = []
    monkeypatch.setattr(panel, "maybe_attach", attached.append)

    @flow
    def child():
        return 1

    @flow
    def parent():
        return child()

    parent()  # no kernel loaded: no panel
    assert attached == []
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.setenv("NB2FLOW_PANEL", "on")
    run = parent(return_state=True)
    assert attached == [run.id]
    monkeypatch.setenv("NB2FLOW_PANEL", "off")
    parent()
    assert attached == [run.id]


def test_no_log_echo_under_an_attached_panel(monkeypatch, capsys):
    import sys

    from nb2flow.jupyter import panel

    shown: list = [object()]  # what maybe_attach returns: a panel, then None
    monkeypatch.setattr(panel, "maybe_attach", lambda _id: shown[0])
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.setenv("NB2FLOW_PANEL", "on")

    @task
    def speak():
        get_run_logger().info("hello from the task")

    @flow(persist=False)
    def f():
        speak()

    f()  # the panel shows the log: stderr stays empty
    assert "hello from the task" not in capsys.readouterr().err
    shown[0] = None  # no panel (e.g. no widgets): the echo is the only display
    f()
    assert "speak | hello from the task" in capsys.readouterr().err


def test_store_hook_records_and_flushes_each_top_level_run(_isolated_home):
    from nb2flow.store.db import Store

    @task
    def one():
        return 1

    @flow
    def stored():
        return one.submit()

    @flow(persist=False)
    def not_stored():
        return one.submit()

    run = stored(return_state=True)
    not_stored()
    with Store() as store:  # flushed: readable as soon as the call returned
        assert [r.id for r in store.list_runs()] == [run.id]
        assert store.load_run(run.id).tasks[run.task_runs[0].id].state == "Completed"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_graphs_respect_dependencies_and_failures(seed):
    import random

    rng = random.Random(seed)
    n = 120
    deps = [rng.sample(range(i), min(i, rng.randint(0, 3))) for i in range(n)]
    failing = set(rng.sample(range(n), 4))
    times: dict[int, tuple[float, float]] = {}

    @task
    def node(i, *ups):
        start = time.monotonic()
        if rng.random() < 0.2:
            time.sleep(0.001)
        times[i] = (start, time.monotonic())
        if i in failing:
            raise RuntimeError(f"node {i}")
        return 1 + sum(ups)

    @flow(task_runner="threads:4")
    def graph():
        futs = []
        for i in range(n):
            futs.append(node.submit(i, *[futs[d] for d in deps[i]]))
        return futs

    run = graph(return_state=True)
    # expected outcome, computed sequentially
    value: dict[int, int] = {}
    expected: dict[int, str] = {}
    for i in range(n):
        if any(expected[d] != "Completed" for d in deps[i]):
            expected[i] = "NotRun"
        elif i in failing:
            expected[i] = "Failed"
        else:
            expected[i] = "Completed"
            value[i] = 1 + sum(value[d] for d in deps[i])
    runs = run.task_runs
    assert [t.state for t in runs] == [expected[i] for i in range(n)]
    for i in range(n):
        if expected[i] == "NotRun":
            assert i not in times
            continue
        for d in deps[i]:
            assert times[d][1] <= times[i][0]  # started after every upstream ended
        assert set(runs[i].upstream) == {runs[d].id for d in deps[i]}
    assert run.state == "Failed"


def test_run_context_names_the_run_everywhere():
    from nb2flow.runtime.api import get_run_context

    def names():
        ctx = get_run_context()
        return (ctx.flow_run_id, ctx.flow_run_name, ctx.flow_name, ctx.task_run_id is not None)

    @task
    def where():
        return names()

    @task(timeout_seconds=10, hard_timeout=True)
    def where_in_child():
        return names()

    @flow(name="ctx-flow")
    def f():
        return {"body": names(), "thread": where.submit(), "child": where_in_child.submit()}

    run = f(return_state=True)
    assert get_run_context() is None
    assert run.value["body"] == (run.id, run.name, "ctx-flow", False)
    assert run.value["thread"] == (run.id, run.name, "ctx-flow", True)
    assert run.value["child"] == (run.id, run.name, "ctx-flow", True)


def test_cached_state_comes_from_the_cache_hook():
    @task(cache=True)
    def expensive(x):
        return x * 10

    @flow
    def f(x: int):
        return expensive.submit(x)

    first = f(4, return_state=True)
    second = f(4, return_state=True)
    third = f(5, return_state=True)
    assert (first.value, second.value, third.value) == (40, 40, 50)
    cached = second.task_runs[0]
    assert cached.state == "Cached" and cached.cached_from == first.id
    # the function did not run; Running marks the start of the cache lookup
    assert [s for s, _, _ in cached.history] == ["Running", "Cached"]
    assert first.task_runs[0].state == third.task_runs[0].state == "Completed"
    assert [s for s, _, _ in first.task_runs[0].history] == ["Running", "Completed"]


def test_a_cached_run_lasts_as_long_as_its_cache_lookup():
    def slow_key(context, arguments):
        time.sleep(0.2)  # hashing big inputs takes time
        return f"k{arguments['x']}"

    @task(cache_key_fn=slow_key)
    def expensive(x):
        return x * 10

    @flow(persist=False)
    def f(x: int):
        return expensive.submit(x)

    f(4)
    run = f(4, return_state=True)
    (cached,) = run.task_runs
    assert cached.state == "Cached" and run.value == 40
    assert cached.duration >= 0.2
    assert cached.start >= run.task_runs[0].created


def test_logs_are_echoed_while_any_top_level_run_is_going(capsys):
    a_done = threading.Event()
    b_started = threading.Event()

    @task
    def speak(text, wait=None):
        if wait is not None:
            wait.wait(5)
        get_run_logger().info(text)

    @flow
    def a():
        b_started.wait(5)
        speak("from a")

    @flow
    def b():
        b_started.set()
        speak("from b", a_done)  # logs after flow a ended

    def run_a():
        a()
        a_done.set()

    threads = [threading.Thread(target=run_a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    err = capsys.readouterr().err
    assert "speak | from a" in err and "speak | from b" in err
    from nb2flow.runtime.observation.logs import echo_to_stderr

    assert echo_to_stderr not in events.subscribers()  # the echo left with the last run


@pytest.mark.parametrize("how", ["direct", "submit"])
def test_a_call_that_cannot_start_fails_instead_of_hanging(how):
    @task(cache=True)
    def needs_two(a, b):
        return a + b

    @flow(timeout_seconds=20)
    def f():
        # binding the arguments for the cache key fails before any attempt
        return needs_two(1) if how == "direct" else needs_two.submit(1)

    run = f(return_state=True)
    assert run.state == "Failed" and run.task_runs[0].state == "Failed"
    assert "missing a required argument" in run.task_runs[0].error


def test_a_failing_done_callback_does_not_stop_downstream_runs(capsys):
    gate = threading.Event()

    @task
    def first():
        gate.wait(5)
        return 1

    @task
    def second(x):
        return x + 1

    @flow
    def f():
        a = first.submit()
        a.add_done_callback(lambda _f: 1 / 0)  # registered before the downstream run
        b = second.submit(a)
        gate.set()
        return b

    assert f() == 2
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_payload_round_trip_and_with_args():
    import cloudpickle

    from nb2flow.runtime.engine.attempts import execute
    from nb2flow.runtime.engine.futures import Outcome
    from nb2flow.runtime.engine.payload import Ref, TaskPayload

    @task
    def add(a, b):
        return a + b

    p = TaskPayload(add, "f" * 32, "t1", "flow", (Ref(0, 1), 2), {}, True, False, "calm-okapi")
    q = cloudpickle.loads(cloudpickle.dumps(p))
    assert (q.task.name, q.flow_run_name, q.args[0].slot, q.args[0].item) == (
        "add",
        "calm-okapi",
        0,
        1,
    )
    out = execute(q, [Outcome("Completed", ("x", 40))])  # no sink: events buffered
    assert out.state == "Completed" and out.value == 42
    assert [e.data["state"] for e in out.events] == ["Running"]
    r = q.with_args((1,), {"b": 1}, has_refs=False)
    assert execute(r).value == 2 and r.flow_run_name == "calm-okapi" and q.args[1] == 2
    not_run = execute(q, [Outcome("Failed", error="E: x")])
    assert not_run.state == "NotRun" and not_run.events == []


def test_flow_log_prints_covers_its_body_and_its_tasks():
    @task
    def inner():
        print("from the task")

    @flow(log_prints=True)
    def f():
        print("from the body", 1, sep="-")
        inner.submit()
        print("to stderr", file=__import__("sys").stderr)

    run = f(return_state=True)
    messages = {(lg.task_run_id is None, lg.logger, lg.message) for lg in run.view.logs}
    assert messages == {
        (True, "stdout", "from the body-1"),
        (False, "stdout", "from the task"),
        (True, "stderr", "to stderr"),
    }


def test_keyboard_interrupt_raised_by_a_task_in_a_worker_fails_that_task():
    @task
    def rude():
        raise KeyboardInterrupt("not a Ctrl-C")

    @task
    def fine():
        return 1

    @flow(timeout_seconds=20)
    def f():
        return {"r": rude.submit(), "f": fine.submit()}

    run = f(return_state=True)
    assert run.task_run("rude").state == "Failed" and run.task_run("fine").state == "Completed"
    assert run.state == "Failed" and "KeyboardInterrupt: not a Ctrl-C" in run.error


def test_importing_nb2flow_and_running_a_flow_stays_light(tmp_path):
    import subprocess
    import sys

    code = """
import sys
import nb2flow
after_import = set(sys.modules)
from nb2flow import flow, task

@task
def one():
    return 1

@flow
def f():
    return one.submit()

assert f() == 1
heavy = {"distributed", "dask", "pandas", "numpy", "rich", "networkx", "ipywidgets",
         "mlflow", "xgboost", "nbclient", "cloudpickle"}
print(sorted(heavy & after_import), sorted(heavy & set(sys.modules)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "[] []"


def test_sendable_probes_without_keeping_the_pickle():
    import numpy as np

    from nb2flow.runtime.engine.transport import Unavailable, sendable

    array = np.arange(1000)  # pickled with out-of-band buffers (protocol 5)
    assert sendable(array, "t", 0) is array
    marker = sendable(threading.Lock(), "t", 1)
    assert type(marker) is Unavailable and (marker.task, marker.index) == ("t", 1)
