"""Process pool overhead: nb2flow's ``processes`` runner against the standard library's pool.

    .venv/bin/python benchmarks/bench_processes.py              # 300 trivial tasks, 2 workers
    .venv/bin/python benchmarks/bench_processes.py --tasks 1000 --workers 2

The baseline is ``concurrent.futures.ProcessPoolExecutor`` (``spawn``, the same width)
calling the same function once per item, pool start-up included; nb2flow runs a flow of
``--tasks`` independent task runs on ``processes:W`` (pool start-up, events, states and
outcomes included; the run store off). Wall times are the best of ``--repeat``, printed
with their ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nb2flow import flow, task  # noqa: E402


def work(i: int) -> int:
    return i * i


@task
def work_task(i: int) -> int:
    return i * i


@flow(persist=False)
def many(tasks: int) -> int:
    return sum(f.result() for f in work_task.map(range(tasks)))


def baseline(tasks: int, workers: int) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        total = sum(pool.map(work, range(tasks)))
    assert total == sum(i * i for i in range(tasks))
    return time.perf_counter() - t0


def nb2flow_run(tasks: int, workers: int) -> float:
    t0 = time.perf_counter()
    total = many.with_options(task_runner=f"processes:{workers}")(tasks)
    assert total == sum(i * i for i in range(tasks))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = min(baseline(args.tasks, args.workers) for _ in range(args.repeat))
    ours = min(nb2flow_run(args.tasks, args.workers) for _ in range(args.repeat))
    print(f"{args.tasks} trivial tasks on {args.workers} worker processes (best of {args.repeat})")
    print(f"  ProcessPoolExecutor (baseline)   {base:6.2f} s")
    print(f"  nb2flow processes:{args.workers}            {ours:6.2f} s  ({ours / base:.2f}x)")
    per_task = (ours - base) / args.tasks * 1e3
    print(f"  nb2flow's cost per task run      {per_task:6.2f} ms")


if __name__ == "__main__":
    main()
