"""What the live Jupyter panel costs a run: a 2,000-task flow with the panel on vs off.

There is no kernel here, so the runtime's hook is made to believe there is one (``ipykernel``
imported, ``in_widget_kernel`` answering yes, ``display`` a no-op): everything else is the real
path, the runtime calling ``maybe_attach``, the panel subscribing, its thread folding events
and rendering into real ipywidgets (which work without a front end). The run store is off in
both cases so only the panel differs. On and off runs alternate; medians are compared.

    python benchmarks/bench_panel.py [--tasks 2000] [--repeat 5] [--timeline-only]

Target: ratio <= 1.10.

Then the Timeline tab alone, as the live panel draws it while a run goes on: a run view fed
the events of N task runs in batches of 100, the timeline rendered after each batch; the cost
of the last renders at 200, 2,000 and 20,000 task runs, as ratios to the one at 200. Target:
the cost does not grow with the finished task runs (ratio 20,000 / 200 <= 2).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time


def build_flow(n: int, work_ms: float):
    from nb2flow import flow, task

    @task
    def source() -> int:
        return 1

    @task
    def work(x: int, i: int) -> int:
        if work_ms:  # busy CPU, holding the GIL like real Python work
            end = time.perf_counter() + work_ms / 1000
            while time.perf_counter() < end:
                pass
        return x + i

    @task
    def total(*parts: int) -> int:
        return sum(parts)

    @flow(name="bench-panel")
    def bench() -> int:
        s = source.submit()
        # ten chains side by side, each a task that waits for the previous one
        heads = [s] * 10
        for i in range(n - 2):
            heads[i % 10] = work.submit(heads[i % 10], i)
        return total.submit(*heads)

    return bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument(
        "--work-ms",
        type=float,
        nargs="*",
        default=[0.0, 0.5],
        help="CPU work per task, one scenario each (0: the runtime's own overhead only)",
    )
    ap.add_argument("--timeline-only", action="store_true", help="only the timeline figures")
    a = ap.parse_args(argv)
    if a.timeline_only:
        return 0 if timeline_costs() <= 2 else 1

    os.environ["NB2FLOW_HOME"] = tempfile.mkdtemp(prefix="bench_panel_")
    os.environ["NB2FLOW_STORE"] = "off"
    os.environ["NB2FLOW_CAPTURE"] = "on"  # as in a kernel: both sides record output
    import ipykernel  # noqa: F401 - the runtime only looks for a panel inside a kernel

    from nb2flow.jupyter import panel as P

    P.in_widget_kernel = lambda: True
    P._display = lambda obj: None
    attach_s: list[float] = []
    real_attach = P.maybe_attach

    def timed_attach(flow_run_id: str) -> P.RunPanel | None:
        t = time.perf_counter()
        try:
            return real_attach(flow_run_id)
        finally:
            attach_s.append(time.perf_counter() - t)

    P.maybe_attach = timed_attach
    worst = 0.0
    for work_ms in a.work_ms:
        worst = max(worst, scenario(a.tasks, work_ms, a.repeat, P, attach_s))
    growth = timeline_costs()
    return 0 if worst <= 1.10 and growth <= 2 else 1


def timeline_render_ms(n: int, batch: int = 100, last: int = 5) -> float:
    """Median ms of the last ``last`` timeline renders of a view fed ``n`` task runs (ten
    lanes of ``work``, as the flow above; six still running), rendered after every batch."""
    from nb2flow.jupyter import render as R
    from nb2flow.runtime.core import events as E
    from nb2flow.runtime.core import states as S
    from nb2flow.runtime.core.model import RunView

    fid = "bench-timeline"
    view = RunView(fid)
    t = 1000.0
    view.apply(E.RunEvent("flow_run", t, fid, None, {"flow_name": "bench", "run_name": "x"}))
    view.apply(E.RunEvent("flow_state", t, fid, None, {"state": S.RUNNING}))
    times: list[float] = []
    for i in range(n):
        tid = f"t{i}"
        name = "work" if 0 < i < n - 1 else ("source" if i == 0 else "total")
        data = {"task_name": name, "task_key": name, "upstream": [], "edge_names": {}}
        view.apply(E.RunEvent("task_run", t, fid, tid, data))
        view.apply(E.RunEvent("task_state", t, fid, tid, {"state": S.RUNNING, "attempt": 1}))
        t += 0.0005
        if i >= 6:  # the run six tasks back ends: six are running at any time
            end = {"state": S.COMPLETED, "attempt": 1}
            view.apply(E.RunEvent("task_state", t, fid, f"t{i - 6}", end))
        if (i + 1) % batch == 0 or i == n - 1:
            t0 = time.perf_counter()
            R.timeline_svg(view, now=t)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[-last:]) * 1000


def timeline_costs() -> float:
    """Print the timeline's render cost at 200, 2,000 and 20,000 task runs; the ratio of the
    largest to the smallest."""
    print("\ntimeline tab, rendered after every 100 task runs (median of the last 5 renders)")
    cost = {n: timeline_render_ms(n) for n in (200, 2000, 20000)}
    for n, ms in cost.items():
        print(f"  {n:6d} task runs: {ms:8.2f} ms a render, x{ms / cost[200]:.2f} the one at 200")
    growth = cost[20000] / cost[200]
    print(f"ratio 20,000 / 200 task runs: {growth:.2f}  (target <= 2)")
    return growth


def scenario(tasks: int, work_ms: float, repeat: int, P, attach_s: list[float]) -> float:
    bench = build_flow(tasks, work_ms)
    attach_s.clear()

    def one(on: bool) -> tuple[float, float, P.RunPanel | None, float]:
        os.environ["NB2FLOW_PANEL"] = "on" if on else "off"
        before = set(P._live)
        gc.collect()  # start each run with the same heap, whatever the last one left
        t0, c0 = time.perf_counter(), time.process_time()
        fr = bench(return_state=True)
        run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        assert fr.state == "Completed", fr.state
        p = None
        if on:
            new = [k for k in P._live if k not in before]
            assert new == [fr.id], "the runtime did not attach a panel"
            p = P._live[fr.id]
            assert p.wait(60), "the panel never rendered the final state"
        shown_s = time.perf_counter() - t0  # until the panel shows the end (= run_s when off)
        if p is not None:
            assert p.progress.value == tasks, (p.progress.value, tasks)
        return run_s, shown_s, p, cpu_s

    one(False)  # warm-up: imports, thread pools
    one(True)
    off, on, on_shown, renders, render_s, cpu_off, cpu_on = [], [], [], [], [], [], []
    for _ in range(repeat):
        r, _, _, c = one(False)
        off.append(r)
        cpu_off.append(c)
        r, s, p, c = one(True)
        on.append(r)
        cpu_on.append(c)
        on_shown.append(s)
        renders.append(p.renders)
        render_s.append(p.render_seconds)
    m_off, m_on, m_shown = (statistics.median(x) for x in (off, on, on_shown))
    print(f"\nflow of {tasks} tasks, {work_ms} ms of CPU work each, {repeat} runs each, medians")
    print(
        "  samples (ms) off:",
        " ".join(f"{x * 1000:.0f}" for x in off),
        "| on:",
        " ".join(f"{x * 1000:.0f}" for x in on),
    )
    print(f"  panel off:                    {m_off * 1000:8.1f} ms")
    print(f"  panel on:                     {m_on * 1000:8.1f} ms")
    print(f"  panel on, until final render: {m_shown * 1000:8.1f} ms")
    print(f"  maybe_attach (widgets built): {statistics.median(attach_s) * 1000:8.1f} ms")
    print(f"  renders per run:              {statistics.median(renders):8.0f}")
    print(f"  render time per run:          {statistics.median(render_s) * 1000:8.1f} ms")
    ratio = m_on / m_off
    print(f"ratio on/off (run): {ratio:.3f}  (target <= 1.10)")
    print(f"ratio on/off (until the panel shows the end): {m_shown / m_off:.3f}")
    # on a loaded machine wall times are mostly waiting for a CPU: the process's CPU time
    # during the run (the panel's thread included) is the steadier figure
    c_off, c_on = statistics.median(cpu_off), statistics.median(cpu_on)
    print(
        f"CPU during the run, off / on: {c_off * 1000:.1f} / {c_on * 1000:.1f} ms, ratio {c_on / c_off:.3f}"
    )
    return ratio


if __name__ == "__main__":
    sys.exit(main())
