"""Parallel speed-up benchmark: a CPU-bound fan-out and the example flow on every task
runner, beside the notebook's own time in a Jupyter kernel, in one run.

    .venv/bin/python benchmarks/bench_dask.py                 # 64 tasks of ~40 ms
    .venv/bin/python benchmarks/bench_dask.py --tasks 64 --ms 100 --workers 2
    .venv/bin/python benchmarks/bench_dask.py --no-example    # the fan-out alone

The fan-out: ``work.map(range(tasks))``, each task a pure-Python loop holding the GIL, then
a sum. The example: ``converted_scripts/duration_prediction.py`` (load two months of
synthetic taxi trips, features, xgboost training logged to mlflow, best run) on data made
by ``nb2flow.examples.taxi`` (``--rows`` trips a month), task cache off. Each runs
sequentially (the baseline), on threads, on a process pool and on a Dask LocalCluster of
``--workers`` worker processes (one thread each); the same code also runs as notebook
cells in a Jupyter kernel (nbclient): for the fan-out a cell looping over the items, for
the example the notebook itself. Wall times are best of ``--repeat``; the process pool is
started by each run (that is how the runner works), the Dask cluster once, before the runs
(how a cluster is used): its start-up time is printed on its own line. Speed-up =
sequential time / runner time; the ideal is the number of cores the machine gives us.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "converted_scripts" / "duration_prediction.py"
NOTEBOOK = ROOT / "notebooks" / "duration-prediction.ipynb"

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


def run_in_kernel(nb, cwd: Path, repeat: int) -> float:
    """Best wall time of running a notebook's code cells top to bottom in a ``python3``
    kernel, after a first pass (imports done, as for the flows, which run in a warm
    process; the kernel's start-up not included)."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, kernel_name="python3", timeout=1800, resources={})
    client.resources = {"metadata": {"path": str(cwd)}}
    best = float("inf")
    with client.setup_kernel():
        for run in range(repeat + 1):
            t = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            if run:
                best = min(best, time.perf_counter() - t)
    return best


def fan_out_notebook(tasks: int, loops: int):
    """The fan-out as a notebook: the task's function, then a cell looping over the items."""
    import inspect

    import nbformat

    source = "".join(
        line for line in inspect.getsourcelines(work.fn)[0] if not line.startswith("@")
    )
    cells = [source, f"values = [work(i, {loops}) for i in range({tasks})]\ntotal = sum(values)"]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])


def load_example_flow():
    """The example script's flow, imported as a module (its functions travel by value)."""
    import importlib.util

    import cloudpickle

    spec = importlib.util.spec_from_file_location("_bench_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    return module.main


def example_notebook(out: Path):
    """The example notebook as ``nb2flow check`` runs it (skip cells out)."""
    import nbformat

    from nb2flow.check.runs import prepare_notebook

    nb, _ = prepare_notebook(nbformat.read(NOTEBOOK, as_version=4), "", [], out)
    return nb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--ms", type=float, default=40.0, help="CPU time of one task")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--overhead-tasks", type=int, default=1000, help="trivial tasks")
    ap.add_argument("--rows", type=int, default=70_000, help="example: trips a month")
    ap.add_argument("--no-example", dest="example", action="store_false")
    args = ap.parse_args()
    os.environ.setdefault("NB2FLOW_STORE", "off")
    os.environ["NB2FLOW_CACHE"] = "off"  # every run of the example computes (workers too)
    work_dir = Path(tempfile.mkdtemp(prefix="nb2flow-bench-"))
    os.chdir(work_dir)  # data/, mlflow.db, models/ of the example; the workers start here
    if args.example:
        from nb2flow.examples import taxi

        for month in ("2021-01", "2021-02"):
            taxi.write_month(work_dir / "data", month, rows=args.rows)

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
        example = load_example_flow() if args.example else None
        if example is not None:
            example.with_options(task_runner="sequential")()  # warm: imports, mlflow's db
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
            ex_wall = None
            if example is not None:
                ex_wall = float("inf")
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    result = example.with_options(task_runner=runner)()
                    ex_wall = min(ex_wall, time.perf_counter() - t)
                assert result["rmse"] > 0, result
            rows.append((label, wall, ex_wall))
        raw, ours = overhead(cluster, args.overhead_tasks)
    finally:
        cluster.close()
    kernel = run_in_kernel(fan_out_notebook(args.tasks, loops), work_dir, args.repeat)
    ex_kernel = None
    if args.example:
        ex_kernel = run_in_kernel(example_notebook(work_dir), work_dir, args.repeat)

    base, ex_base = rows[0][1], rows[0][2]
    print(
        "\n| runner | fan-out (s) | speed-up | example flow (s) | speed-up |"
        "\n|---|---:|---:|---:|---:|"
    )

    def example_cells(wall: float | None) -> str:
        if wall is None or ex_base is None:
            return "- | -"
        return f"{wall:.2f} | {ex_base / wall:.2f}x"

    print(
        f"| notebook cells in a Jupyter kernel | {kernel:.2f} | {base / kernel:.2f}x "
        f"| {example_cells(ex_kernel)} |"
    )
    for label, wall, ex_wall in rows:
        print(f"| {label} | {wall:.2f} | {base / wall:.2f}x | {example_cells(ex_wall)} |")
    print(f"\nDask LocalCluster start-up (once, not in the runs above): {startup:.2f} s")
    n = args.overhead_tasks
    print(
        f"\n{n} trivial tasks on the same cluster: plain client.map + gather {raw:.2f} s "
        f"({raw / n * 1e3:.2f} ms/task), nb2flow flow on Dask {ours:.2f} s "
        f"({ours / n * 1e3:.2f} ms/task): ratio {ours / raw:.2f}"
    )


if __name__ == "__main__":
    main()
