"""Runtime overhead: nb2flow task runs against plain function calls, measured in one run.

Prints µs per task and the ratio to a plain call for 10,000 trivial tasks: called
directly in a flow, and submitted on the thread runner; first with the run store off, then
on (the flow's time includes writing every event to SQLite). Output capture is on (as in the
scripts ``run_cli`` runs): every task run sets up its capture and records a result summary;
one more row gives the direct calls with capture off, for the ratio. Then the time from calling a
one-task flow to its return, and ``import nb2flow``. Checks that every task run of the
10,000-task flow is in the store. Where Prefect is installed (``PREFECT_PYTHON`` pointing
at the python of a separate environment with prefect), runs the same flows on it.

Targets (issue 3): < 20 µs per task called directly and < 60 µs submitted, store on;
one-task flow < 50 ms; ``import nb2flow`` < 100 ms.

Usage: python benchmarks/bench_runtime.py [--tasks N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"direct": 20.0, "submit": 60.0, "one_task_ms": 50.0, "import_ms": 100.0}


def inc(x: int) -> int:
    return x + 1


def plain_us(n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            inc(i)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def build(n: int):
    from nb2flow import flow, task

    t_inc = task(inc)

    @flow(name="bench-direct")
    def direct() -> int:
        total = 0
        for i in range(n):
            total += t_inc(i)
        return total

    @flow(name="bench-submit", task_runner="threads")
    def submitted() -> list:
        return [t_inc.submit(i) for i in range(n)]

    @flow(name="bench-one")
    def one() -> int:
        return t_inc(1)

    return direct, submitted, one


def per_task_us(fl, n: int, repeat: int = 5) -> tuple[float, float, object]:
    """Best wall time and best CPU time (all threads of the process, the store's writer
    included) per task, over ``repeat`` runs of the flow: the best run is the one least
    disturbed by other work on the machine."""
    wall, cpu, run = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        run = fl(return_state=True)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
        assert run.state == "Completed", run.error
    return wall / n * 1e6, cpu / n * 1e6, run


def import_ms() -> tuple[float, float]:
    """Best wall time of `import nb2flow` and of `from nb2flow import flow, task`, each
    minus the best time of an empty interpreter start, over 9 runs."""

    def wall(code: str) -> float:
        times = []
        for _ in range(9):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        return min(times)

    base = wall("pass")
    return (wall("import nb2flow") - base) * 1e3, (
        wall("from nb2flow import flow, task") - base
    ) * 1e3


PREFECT_CODE = r"""
import sys, time
from prefect import flow, task
n = int(sys.argv[1])
@task
def inc(x): return x + 1
@flow
def one():
    return inc(1)
@flow
def direct():
    return sum(inc(i) for i in range(n))
@flow
def submitted():
    return [f.result() for f in [inc.submit(i) for i in range(n)]]
t0 = time.perf_counter(); one(); first = time.perf_counter() - t0
t0 = time.perf_counter(); direct(); d = time.perf_counter() - t0
t0 = time.perf_counter(); submitted(); s = time.perf_counter() - t0
t0 = time.perf_counter(); one(); again = time.perf_counter() - t0
print(d / n * 1e6, s / n * 1e6, first * 1e3, again * 1e3)
"""


def prefect_us(n: int) -> list[float] | None:
    """Prefect's µs per task called and submitted (after a first flow started its
    server), its first flow and a later one-task flow in ms; None without Prefect."""
    python = os.environ.get("PREFECT_PYTHON")
    if not python:
        return None
    env = dict(
        os.environ,
        PREFECT_HOME=tempfile.mkdtemp(prefix="prefect-bench-"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    proc = subprocess.run(
        [python, "-c", PREFECT_CODE, str(n)], capture_output=True, text=True, env=env
    )
    # its ephemeral server sometimes fails while shutting down, after the figures are out
    lines = [ln.split() for ln in proc.stdout.splitlines() if len(ln.split()) == 4]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"Prefect failed (exit {proc.returncode}): {tail}")
        return None
    return [float(x) for x in lines[-1]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    n = ap.parse_args().tasks
    home = tempfile.mkdtemp(prefix="nb2flow-bench-")
    os.environ["NB2FLOW_HOME"] = home
    os.environ["NB2FLOW_PANEL"] = "off"
    os.environ["NB2FLOW_CAPTURE"] = "on"

    from nb2flow.runtime.observation import hooks

    hooks.unregister("echo")  # no log lines on stderr while measuring
    direct, submitted, one = build(n)
    base = plain_us(n)
    rows: list[tuple[str, float, float]] = [("plain function call", base, base)]

    os.environ["NB2FLOW_STORE"] = "off"
    rows.append(("sequential calls t(x), store off", *per_task_us(direct, n)[:2]))
    rows.append((".submit() on threads, store off", *per_task_us(submitted, n)[:2]))
    del os.environ["NB2FLOW_STORE"]

    t0 = time.perf_counter()
    one(return_state=True)
    first_one_ms = (time.perf_counter() - t0) * 1e3  # opens the store: its first run
    direct_us, direct_cpu, _ = per_task_us(direct, n)
    submit_us, submit_cpu, last = per_task_us(submitted, n)
    rows.append(("sequential calls t(x), store on", direct_us, direct_cpu))
    rows.append((".submit() on threads, store on", submit_us, submit_cpu))
    os.environ["NB2FLOW_CAPTURE"] = "off"
    rows.append(("same, direct, capture off", *per_task_us(direct, n)[:2]))
    os.environ["NB2FLOW_CAPTURE"] = "on"

    from nb2flow.store.db import Store

    with Store() as store:
        stored = store.load_run(last.id)  # type: ignore[attr-defined]
    kept = sum(1 for t in stored.tasks.values() if t.state == "Completed")

    ones = []
    for _ in range(20):
        t0 = time.perf_counter()
        one()
        ones.append((time.perf_counter() - t0) * 1e3)
    one_ms = statistics.median(ones)
    imp, imp_api = import_ms()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"nb2flow runtime overhead, {n:,} trivial tasks (best of 5), Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    print("output capture on (as under run_cli), one row with it off")
    print(f"{'':36} {'µs/task':>9} {'× plain':>9} {'CPU µs':>9}")
    for label, us, cpu in rows:
        print(f"{label:36} {us:9.2f} {us / base:9.1f} {cpu:9.2f}")
    print(f"one-task flow, first in the process: {first_one_ms:7.1f} ms (store opened)")
    print(f"one-task flow, median of 20:         {one_ms:7.1f} ms")
    print(f"import nb2flow:                      {imp:7.1f} ms")
    print(f"from nb2flow import flow, task:      {imp_api:7.1f} ms")
    print(f"task runs of the {n:,}-task flow in the store: {kept:,} of {n:,}")
    pn = min(n, 1000)
    pf = prefect_us(pn)
    if pf is None and not os.environ.get("PREFECT_PYTHON"):
        print(
            "Prefect: not measured (set PREFECT_PYTHON to the python of an environment with prefect)"
        )
    elif pf is not None:
        print(
            f"Prefect ({pn:,} tasks, its own store on): {pf[0]:,.0f} µs/task called "
            f"({pf[0] / direct_us:,.0f}× nb2flow), {pf[1]:,.0f} µs/task submitted "
            f"({pf[1] / submit_us:,.0f}× nb2flow); first flow {pf[2]:,.0f} ms, "
            f"a later one-task flow {pf[3]:,.0f} ms ({pf[3] / one_ms:,.0f}× nb2flow)"
        )
    checks = {
        f"direct, store on < {TARGETS['direct']:g} µs": direct_us < TARGETS["direct"],
        f"submit, store on < {TARGETS['submit']:g} µs": submit_us < TARGETS["submit"],
        f"one-task flow < {TARGETS['one_task_ms']:g} ms": one_ms < TARGETS["one_task_ms"],
        f"import < {TARGETS['import_ms']:g} ms": imp_api < TARGETS["import_ms"],
        "every task run stored": kept == n,
    }
    if load > (os.cpu_count() or 1):
        print(
            f"note: the machine is busy (load {load:.1f} on {os.cpu_count()} CPUs): wall times "
            "include waiting for a CPU; the CPU column is the work done per task (all threads, "
            "the store's writer included)"
        )
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
