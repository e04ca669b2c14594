"""Cost of recording runs: ``python benchmarks/bench_store.py [--tasks N] [--repeat R]``.

Runs a flow of N trivial tasks called directly (sequential runner: the runtime's cheapest
path, so the store's share shows most) with the store off, then on with the recorder's
thread writing, then on with the helper process writing, each in a fresh process with a
temporary store. Prints, per task run, the wall time of the flow (``flush()`` at its end
included: every task run is in the store when the flow returns), the CPU time of the flow's
process (all its threads), and the ratio to the store off; then the hot-path cost of one
event (``deque.append`` through ``events.emit``). Best of R flows after a warm-up one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import json, os, sys, time
from nb2flow import flow, task

n, repeat = int(sys.argv[1]), int(sys.argv[2])

@task
def inc(x):
    return x + 1

@flow(task_runner="sequential")
def big():
    for i in range(n):
        inc(i)

big()  # warm-up (and, with the store on, the recorder and helper start)
walls, cpus = [], []
for _ in range(repeat):
    c0, t0 = time.process_time(), time.perf_counter()
    fr = big(return_state=True)
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
stored = None
if os.environ.get("NB2FLOW_STORE") != "off":
    from nb2flow.store.db import Store
    with Store() as store:
        stored = store.summary(fr.id).tasks
print(json.dumps({"wall": min(walls), "cpu": min(cpus), "stored": stored}))
"""


def _measure(mode: str, n: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "NB2FLOW_HOME": home, "NB2FLOW_PANEL": "off"}
        if mode == "off":
            env["NB2FLOW_STORE"] = "off"
        else:
            env.pop("NB2FLOW_STORE", None)
            env["NB2FLOW_STORE_HELPER"] = "never" if mode == "thread" else "always"
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(n), str(repeat)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _hot_path_ns(n: int = 300_000) -> tuple[float, float]:
    """CPU ns per ``events.emit`` while the events are kept (as ``FlowRun.events`` keeps
    them), without and with the recorder's ``deque.append`` subscribed."""
    from collections import deque

    from nb2flow.runtime.core import events

    def run(subscribers: list[object]) -> float:
        kept: list[object] = []
        queue: deque[object] = deque()
        fns = {"kept": kept.append, "recorder": queue.append}
        for name in subscribers:
            events.subscribe(fns[name])
        data = {"state": "Running", "attempt": 1, "message": ""}
        try:
            t0 = time.thread_time()  # CPU time: robust to other processes on the machine
            for _ in range(n):
                events.emit("task_state", "f", "t", data)
            return (time.thread_time() - t0) / n * 1e9
        finally:
            for name in subscribers:
                events.unsubscribe(fns[name])

    base = min(run(["kept"]) for _ in range(3))
    with_rec = min(run(["kept", "recorder"]) for _ in range(3))
    return base, with_rec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.tasks
    print(f"flow of {n:,} trivial tasks called directly, best of {args.repeat}, per task run")
    print(f"{'':34}{'wall':>9}{'x off':>7}{'CPU':>9}{'x off':>7}   stored")
    results = {mode: _measure(mode, n, args.repeat) for mode in ("off", "thread", "helper")}
    off = results["off"]
    labels = {
        "off": "store off",
        "thread": "store on, thread writes",
        "helper": "store on, helper writes",
    }
    for mode, r in results.items():
        stored = "-" if r["stored"] is None else f"{r['stored']:,}/{n:,}"
        print(
            f"{labels[mode]:34}{r['wall'] / n * 1e6:7.1f}us{r['wall'] / off['wall']:7.2f}"
            f"{r['cpu'] / n * 1e6:7.1f}us{r['cpu'] / off['cpu']:7.2f}   {stored}"
        )
    base, with_rec = _hot_path_ns()
    print(
        f"events.emit (events kept, as by the runtime): {base:.0f} ns, {with_rec:.0f} ns with the "
        f"recorder subscribed: {with_rec - base:.0f} ns per event on the hot path (CPU)"
    )


if __name__ == "__main__":
    main()
