"""Dask scale-out benchmark: a CPU-bound map of 64 tasks on every task runner.

    .venv/bin/python benchmarks/bench_dask.py                 # 64 tasks of ~40 ms
    .venv/bin/python benchmarks/bench_dask.py --tasks 64 --ms 100 --workers 2

The same flow (``work.map(range(tasks))``, each task a pure-Python loop holding the GIL,
then a sum) runs sequentially (the baseline), on threads, on a process pool and on a Dask
LocalCluster of ``--workers`` worker processes (one thread each), in one run. Wall times
are per flow run, best of ``--repeat``; the process pool is started by each run (that is
how the runner works), the Dask cluster once, before the runs (how a cluster is used): its
start-up time is printed on its own line. Speed-up = sequential time / runner time;
the ideal is the number of cores the machine really gives us.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nb2flow import flow, task  # noqa: E402


@task
def work(i: int, loops: int) -> int:
    acc = 0
    for k in range(loops):
        acc = (acc + k * k + i) % 1_000_003
    return acc


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(persist=False)
def cpu_map(tasks: int, loops: int) -> int:
    return total.submit(work.map(range(tasks), loops=loops)).result()


@task
def inc(x: int) -> int:
    return x + 1


@flow(persist=False)
def tiny_map(n: int) -> int:
    return sum(f.result() for f in inc.map(range(n)))


def _inc(x: int) -> int:
    return x + 1


def overhead(cluster, n: int) -> tuple[float, float]:
    """Wall time of n trivial tasks: plain ``client.map`` + ``gather`` (the floor Dask
    itself sets) vs an nb2flow flow mapping them on the same cluster (states, events,
    results back in the flow)."""
    from distributed import Client

    from nb2flow.runtime.runners.dask.runner import DaskRunner

    runner = DaskRunner(cluster=cluster)
    with Client(cluster, set_as_default=False) as client:
        raw = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            assert sum(client.gather(client.map(_inc, range(n), pure=False))) == n * (n + 1) // 2
            raw = min(raw, time.perf_counter() - t)
    ours = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        assert tiny_map.with_options(task_runner=runner)(n) == n * (n + 1) // 2
        ours = min(ours, time.perf_counter() - t)
    return raw, ours


def calibrate(ms: float) -> int:
    """Loop count for one task of about ``ms`` milliseconds of CPU on this machine (CPU
    time, not wall time: other processes competing for the cores do not skew it)."""
    n = 200_000
    while True:
        t = time.process_time()
        work.fn(0, n)
        dt = time.process_time() - t
        if dt > 0.05:
            return max(1, int(n * ms / 1000 / dt))
        n *= 2


def timed_run(runner, tasks: int, loops: int, repeat: int) -> tuple[float, int]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = cpu_map.with_options(task_runner=runner)(tasks, loops)
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--ms", type=float, default=40.0, help="CPU time of one task")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--overhead-tasks", type=int, default=1000, help="trivial tasks")
    args = ap.parse_args()
    os.environ.setdefault("NB2FLOW_STORE", "off")

    from nb2flow.runtime.observation import hooks

    hooks.unregister("echo")  # no log lines on stderr while measuring
    loops = calibrate(args.ms)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{args.tasks} tasks of ~{args.ms:g} ms CPU each ({loops:,} loops), "
        f"{cores} cores, load average {os.getloadavg()[0]:.1f}"
    )

    from distributed import LocalCluster

    from nb2flow.runtime.runners.dask.runner import DaskRunner

    t = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    )
    startup = time.perf_counter() - t
    try:
        rows = []
        expected = None
        for label, runner in (
            ("sequential", "sequential"),
            ("threads", f"threads:{args.workers}"),
            ("processes", f"processes:{args.workers}"),
            (f"dask LocalCluster ({args.workers} workers)", DaskRunner(cluster=cluster)),
        ):
            wall, value = timed_run(runner, args.tasks, loops, args.repeat)
            if expected is None:
                expected = value
            assert value == expected, (label, value, expected)
            rows.append((label, wall))
        raw, ours = overhead(cluster, args.overhead_tasks)
    finally:
        cluster.close()

    base = rows[0][1]
    print("\n| runner | wall time (s) | speed-up vs sequential |\n|---|---:|---:|")
    for label, wall in rows:
        print(f"| {label} | {wall:.2f} | {base / wall:.2f}x |")
    print(f"\nDask LocalCluster start-up (once, not in the runs above): {startup:.2f} s")
    n = args.overhead_tasks
    print(
        f"\n{n} trivial tasks on the same cluster: plain client.map + gather {raw:.2f} s "
        f"({raw / n * 1e3:.2f} ms/task), nb2flow flow on Dask {ours:.2f} s "
        f"({ours / n * 1e3:.2f} ms/task): ratio {ours / raw:.2f}"
    )


if __name__ == "__main__":
    main()
