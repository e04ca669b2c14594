"""Memory benchmark: a chain of frame transformations, as notebook cells in a Jupyter kernel
and as a flow on every task runner, in one run.

    .venv/bin/python benchmarks/bench_memory.py               # a ~400 MB frame
    .venv/bin/python benchmarks/bench_memory.py --mb 100 --runners threads,processes

The cells: make a frame of ``--mb`` megabytes (float64, 5 columns), turn it into a new
one five times (``df{i} = df{i-1} + 1.0``), keep one scalar. The kernel (nbclient, the
``python3`` kernel) runs them as cells: every frame stays a global. The flow runs the same
code as 7 tasks returning only the scalar; each runner runs in a fresh process.

Figures: peak RSS (MB) of the kernel, of the flow process and of its worker processes
(pool processes, Dask workers) and of all of them together, sampled every 5 ms (the flow
and kernel processes' own peaks are exact: ``ru_maxrss``). "growth" is the peak minus
the same processes' RSS with the libraries imported and no frame, and the ratio divides
it by the size of one frame: the goal is growth <= 2.5 frames (the input and the output
of one step, plus slack), where the kernel needs 6.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = 5
COLUMNS = 5

# The notebook's cells; the flow's tasks run exactly this code.
IMPORTS = "import numpy as np\nimport pandas as pd"
MAKE = (
    "df0 = pd.DataFrame(np.random.default_rng(0).random((rows, 5)), "
    "columns=['a', 'b', 'c', 'd', 'e'])"
)
STEP = "df{i} = df{j} + 1.0"
ANSWER = "answer = float(df{n}['a'].sum())"


def rows_for(mb: float) -> int:
    return int(mb * 1e6 / (8 * COLUMNS))


def _rss(pid: int | None = None) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


class Sampler:
    """Peak RSS of this process, of its descendants (summed) and of both together."""

    def __init__(self, period: float = 0.005) -> None:
        import psutil

        self.me = psutil.Process()
        self.period = period
        self.peak_self = self.peak_children = self.peak_total = 0
        self.children_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def children_rss(self) -> int:
        import psutil

        total = 0
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
                self.children_seen.add(child.pid)
            except psutil.Error:
                pass
        return total

    def sample(self) -> None:
        own = self.me.memory_info().rss
        kids = self.children_rss()
        self.peak_self = max(self.peak_self, own)
        self.peak_children = max(self.peak_children, kids)
        self.peak_total = max(self.peak_total, own + kids)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.peak_self = max(self.peak_self, exact)
        self.peak_total = max(self.peak_total, self.peak_self)


# --------------------------------------------------------------------------- the flow


def define_flow():
    """The cells as tasks (the code of each cell is the body of its task)."""
    from nb2flow import flow, task

    def cell(code: str, inputs: tuple[str, ...], output: str):
        def run(*values):
            env = dict(zip(inputs, values, strict=True))
            exec(IMPORTS, env)
            exec(code, env)
            return env[output]

        run.__name__ = output
        return run

    make = task(name="make")(cell(MAKE, ("rows",), "df0"))
    steps = [
        task(name=f"step{i}")(cell(STEP.format(i=i, j=i - 1), (f"df{i - 1}",), f"df{i}"))
        for i in range(1, STEPS + 1)
    ]
    answer = task(name="answer")(cell(ANSWER.format(n=STEPS), (f"df{STEPS}",), "answer"))

    @task
    def worker_rss(_: int) -> int:
        import numpy  # noqa: F401 - the libraries a step imports
        import pandas  # noqa: F401

        return _rss()

    @flow(persist=False)
    def chain(rows: int) -> float:
        df = make.submit(rows)
        for step in steps:
            df = step.submit(df)  # the body drops each frame's future as it goes
        return answer.submit(df)

    @flow(persist=False)
    def idle(n: int) -> list[int]:
        return [f.result() for f in worker_rss.map(range(n))]

    return chain, idle


def child(runner_name: str, rows: int, workers: int) -> dict:
    """Run the chain on one runner in this (fresh) process; return the figures."""
    os.environ["NB2FLOW_STORE"] = "off"
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    from nb2flow.runtime.observation import hooks

    hooks.unregister("echo")  # no log lines on stderr while measuring
    chain, idle = define_flow()
    cluster = None
    if runner_name == "dask":
        from distributed import LocalCluster

        from nb2flow.runtime.runners.dask.runner import DaskRunner

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=0,  # no spilling to disk: we measure what the run holds
        )
        runner = DaskRunner(cluster=cluster)
        from distributed import Client

        with Client(cluster, set_as_default=False) as client:  # every worker imports them
            client.run(lambda: __import__("pandas") and None)
    elif runner_name == "sequential":
        runner = "sequential"
    else:
        runner = f"{runner_name}:{workers}"
    try:
        chain.with_options(task_runner=runner)(10)  # warm: imports, pools, cluster
        sampler = Sampler()
        base_self = _rss()
        if runner_name == "processes":
            # the pool starts with each flow run: its workers' idle size, measured apart
            base_children = max(idle.with_options(task_runner=runner)(workers)) * workers
        else:
            base_children = sampler.children_rss()
        with sampler:
            t = time.perf_counter()
            value = chain.with_options(task_runner=runner)(rows)
            wall = time.perf_counter() - t
        n_children = len(sampler.children_seen) if runner_name == "dask" else 0
        if runner_name == "processes":
            n_children = workers
    finally:
        if cluster is not None:
            cluster.close()
    return {
        "value": value,
        "wall": wall,
        "base_self": base_self,
        "base_children": base_children if runner_name in ("processes", "dask") else 0,
        "peak_self": sampler.peak_self,
        "peak_children": sampler.peak_children if n_children else 0,
        "peak_total": sampler.peak_total,
        "children": n_children,
    }


# ------------------------------------------------------------------------- the kernel


def kernel(rows: int) -> dict:
    """Run the cells in a Jupyter kernel; its peak RSS and its RSS after the imports."""
    import nbformat
    from nbclient import NotebookClient

    probe = "import resource, psutil\n"
    cells = [
        IMPORTS + "\n" + probe + "base = psutil.Process().memory_info().rss",
        f"rows = {rows}",
        MAKE,
        *[STEP.format(i=i, j=i - 1) for i in range(1, STEPS + 1)],
        ANSWER.format(n=STEPS),
        "import json\nprint(json.dumps({'value': answer, 'base': base, "
        "'peak': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    t = time.perf_counter()
    NotebookClient(nb, kernel_name="python3", timeout=600).execute()
    wall = time.perf_counter() - t
    out = json.loads(nb.cells[-1].outputs[0]["text"])
    return {"value": out["value"], "wall": wall, "base_self": out["base"], "peak": out["peak"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=400.0, help="size of one frame")
    ap.add_argument("--runners", default="sequential,threads,processes,dask")
    ap.add_argument("--workers", type=int, default=2, help="pool processes / Dask workers")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.workers)))
        return

    rows = rows_for(args.mb)
    frame = rows * COLUMNS * 8
    mb = 1e6
    print(
        f"one frame: {frame / mb:.0f} MB ({rows:,} rows x {COLUMNS} float64), {STEPS} steps, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    nb = kernel(rows)
    results = []
    for name in args.runners.split(","):
        with tempfile.TemporaryDirectory() as tmp:  # a clean working folder per run
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, "--rows", str(rows)]
                + ["--workers", str(args.workers)],
                capture_output=True,
                text=True,
                cwd=tmp,
                check=False,
            )
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        assert abs(r["value"] - nb["value"]) < 1e-6 * abs(nb["value"]), (name, r, nb)
        results.append((name, r))

    kernel_growth = nb["peak"] - nb["base_self"]
    print(
        "\n| where | wall (s) | peak RSS, main process (MB) | peak RSS, workers (MB) "
        "| peak RSS, all (MB) | growth (MB) | growth / frame | vs kernel |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| Jupyter kernel (cells) | {nb['wall']:.1f} | {nb['peak'] / mb:.0f} | - "
        f"| {nb['peak'] / mb:.0f} | {kernel_growth / mb:.0f} | {kernel_growth / frame:.2f} "
        "| 1.00 |"
    )
    for name, r in results:
        growth = r["peak_total"] - r["base_self"] - r["base_children"]
        workers = f"{r['peak_children'] / mb:.0f}" if r["children"] else "-"
        label = name if name == "sequential" else f"{name}:{args.workers}"
        print(
            f"| flow, {label} | {r['wall']:.1f} | {r['peak_self'] / mb:.0f} | {workers} "
            f"| {r['peak_total'] / mb:.0f} | {growth / mb:.0f} | {growth / frame:.2f} "
            f"| {growth / kernel_growth:.2f} |"
        )
    print(
        "\ngrowth = peak RSS of all the processes - their RSS with the libraries imported "
        "and no frame; the workers' peak is of their sum."
    )


if __name__ == "__main__":
    main()
