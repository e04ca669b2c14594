"""What recording what tasks show costs: output capture, figures, the example flow.

1. 10,000 trivial tasks that print nothing, called directly in a flow (store off): capture
   on against off, best of 5 each, interleaved. A task that prints nothing should pay
   almost nothing.
2. One task printing 10,000 lines, capture on (the lines become log events) against off
   (they go to a file, as a terminal would take them): cost per line.
3. A task leaving a matplotlib figure open, which capture draws as a PNG and closes: cost per
   figure, against a task that closes its figure itself.
4. The worked example (``converted_scripts/duration_prediction.py`` on generated taxi data,
   ``--num-boost-round 5``), as ``python script.py`` with capture on (the default) and with
   ``--no-capture``, alternating, medians of the processes' CPU time: what capture, result
   summaries and the record cost a real flow.

    python benchmarks/bench_capture.py [--tasks 10000] [--example-runs 3]

Targets: (1) at most 2 µs per task more with capture on; (4) at most x1.05.
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


def best_cpu_us(fl, n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        run = fl(return_state=True)
        best = min(best, time.process_time() - c0)
        assert run.state == "Completed", run.error
    return best / n * 1e6


def trivial(n: int) -> tuple[float, float]:
    from nb2flow import flow, task

    @task
    def inc(x: int) -> int:
        return x + 1

    @flow(persist=False)
    def direct() -> int:
        return sum(inc(i) for i in range(n))

    on, off = [], []
    for _ in range(3):
        os.environ["NB2FLOW_CAPTURE"] = "on"
        on.append(best_cpu_us(direct, n, 3))
        os.environ["NB2FLOW_CAPTURE"] = "off"
        off.append(best_cpu_us(direct, n, 3))
    return min(on), min(off)


def lines(n: int) -> tuple[float, float]:
    from nb2flow import flow, task

    @task
    def chatty() -> None:
        for i in range(n):
            print(f"epoch {i} loss 0.{i:04d}")

    @flow(persist=False)
    def f() -> None:
        chatty()

    out = {}
    with open(os.devnull, "w") as sink:
        for mode in ("on", "off"):
            os.environ["NB2FLOW_CAPTURE"] = mode
            saved, sys.stdout = sys.stdout, sink  # off: the lines go where a terminal would
            try:
                out[mode] = best_cpu_us(f, n, 3)
            finally:
                sys.stdout = saved
    return out["on"], out["off"]


def figures(n: int) -> tuple[float, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nb2flow import flow, task

    @task
    def draws(close: bool) -> None:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(range(100), [i * i for i in range(100)])
        if close:
            plt.close(fig)

    @flow(persist=False)
    def f(close: bool) -> None:
        for _ in range(n):
            draws(close)

    os.environ["NB2FLOW_CAPTURE"] = "on"
    f(True)  # warm-up: the first figure loads fonts
    t0 = time.perf_counter()
    run = f(False, return_state=True)
    captured = time.perf_counter() - t0
    assert len(run.view.artifacts) == n
    t0 = time.perf_counter()
    f(True)
    plain = time.perf_counter() - t0
    return captured / n * 1e3, plain / n * 1e3


def example(runs: int) -> tuple[list[float], list[float]] | None:
    try:
        import mlflow  # noqa: F401
        import xgboost  # noqa: F401
    except ImportError:
        return None
    work = Path(tempfile.mkdtemp(prefix="bench_capture_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NB2FLOW_HOME": str(work / "home")}
    env.pop("NB2FLOW_CAPTURE", None)
    subprocess.run(
        [sys.executable, "-m", "nb2flow.examples.taxi", "--out", "data", "--rows", "20000"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    script = ROOT / "converted_scripts" / "duration_prediction.py"
    base = [sys.executable, str(script), "--num-boost-round", "5", "--quiet", "--cwd", str(work)]
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    on, off = [], []
    for i in range(runs + 1):
        for flag, into in (([], on), (["--no-capture"], off)):
            c0 = cpu()
            subprocess.run(base + flag, cwd=work, env=env, check=True, capture_output=True)
            if i:  # the first pair warms the caches (disk, mlflow's database)
                into.append(cpu() - c0)  # CPU time: the machine's load moves wall time
    return on, off


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--figures", type=int, default=20)
    ap.add_argument("--example-runs", type=int, default=3)
    a = ap.parse_args()
    os.environ["NB2FLOW_HOME"] = tempfile.mkdtemp(prefix="bench_capture_home_")
    os.environ["NB2FLOW_PANEL"] = "off"
    from nb2flow.runtime.observation import hooks

    hooks.unregister("echo")  # the captured lines are measured, not printed

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"output capture, Python {sys.version.split()[0]}, load average {load:.1f}")
    on, off = trivial(a.tasks)
    print(
        f"trivial task, prints nothing:  {on:7.2f} µs CPU with capture, {off:7.2f} without "
        f"(+{on - off:.2f} µs)"
    )
    lon, loff = lines(a.lines)
    print(
        f"a printed line:                {lon:7.2f} µs CPU per line captured (a log event), "
        f"{loff:.2f} µs written to a file"
    )
    fig_ms, plain_ms = figures(a.figures)
    print(
        f"a figure left open:            {fig_ms:7.1f} ms (drawn as PNG, closed) against "
        f"{plain_ms:.1f} ms for a task closing its own"
    )
    checks = {"trivial task: at most +2 µs with capture": on - off <= 2.0}
    ex = example(a.example_runs)
    if ex is None:
        print("example flow: not measured (needs the example extra: mlflow, xgboost)")
    else:
        m_on, m_off = statistics.median(ex[0]), statistics.median(ex[1])
        print(
            f"example flow (20,000 trips):   {m_on:7.2f} s CPU with capture, {m_off:.2f} s "
            f"--no-capture: x{m_on / m_off:.3f}  (runs on: "
            f"{' '.join(f'{x:.2f}' for x in ex[0])}; off: {' '.join(f'{x:.2f}' for x in ex[1])})"
        )
        checks["example flow: capture x1.05 at most"] = m_on / m_off <= 1.05
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
