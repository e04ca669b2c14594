"""Cost of recording runs: ``python -m nb2flow.store.bench [--tasks N]``.

Emits the events of a flow of N trivial task runs (``task_run``, Running, Completed: three
events per task, as the runtime does) with and without the recorder subscribed, in the same
process, and prints per event and per task figures: the hot-path cost, the time ``flush()``
waits at the end of the flow, and the writer thread's own cost. Uses a temporary store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable


def _emit_flow(n_tasks: int) -> None:
    from nb2flow.runtime import events

    emit = events.emit
    fid = uuid.uuid4().hex
    emit("flow_run", fid, data={"flow_name": "bench", "run_name": fid[:8], "parameters": {}})
    emit("flow_state", fid, data={"state": "Running", "message": ""})
    for i in range(n_tasks):
        tid = f"{fid}-{i}"
        emit("task_run", fid, tid, {"task_name": "t", "task_key": "t", "upstream": []})
        emit("task_state", fid, tid, {"state": "Running", "attempt": 1, "message": ""})
        emit("task_state", fid, tid, {"state": "Completed", "attempt": 1, "message": ""})
    emit("flow_state", fid, data={"state": "Completed", "message": ""})


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n, reps = args.tasks, args.repeat
    n_events = 3 * n + 3

    with tempfile.TemporaryDirectory() as home:
        os.environ["NB2FLOW_HOME"] = home
        from nb2flow.store import recording

        off = [_timed(lambda: _emit_flow(n)) for _ in range(reps)]
        rec = recording.enable()
        rec.flush()
        on, waits, totals = [], [], []
        for _ in range(reps):
            t_emit = _timed(lambda: _emit_flow(n))
            t_flush = _timed(rec.flush)
            on.append(t_emit)
            waits.append(t_flush)
            totals.append(t_emit + t_flush)
        written, batches, busy = rec.written, rec.batches, rec.write_seconds
        recording.disable()
        size = os.path.getsize(os.path.join(home, "runs.db"))

    base, with_rec, total = statistics.median(off), statistics.median(on), statistics.median(totals)
    us = 1e6
    print(f"flow of {n:,} trivial task runs ({n_events:,} events), median of {reps}")
    print(f"{'':44} {'per event':>10} {'per task':>10}")
    rows = [
        ("emit, no subscriber (baseline)", base),
        ("emit, recorder subscribed", with_rec),
        ("  recorder cost on the hot path", with_rec - base),
        ("flush() at the end of the flow", statistics.median(waits)),
        ("emit + flush, recorder on", total),
        ("  recorder cost, flush included", total - base),
    ]
    for label, seconds in rows:
        print(f"{label:44} {seconds / n_events * us:8.3f}us {seconds / n * us:8.2f}us")
    print(f"ratio emit+flush / baseline: {total / base:.2f}x")
    print(
        f"writer thread: {written:,} events in {batches} transactions, "
        f"{busy / written * us:.2f} us per event, {busy / (written / 3) * us:.2f} us per task"
        f" (in the background); store size {size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
