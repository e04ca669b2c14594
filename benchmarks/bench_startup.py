"""Start-up benchmark: how fast a generated script answers ``--help``.

    .venv/bin/python benchmarks/bench_startup.py            # 15 runs of each, interleaved

Measured in one run, each command in a fresh process from an empty folder: ``python -c
pass`` (the interpreter alone), ``nb2flow --help``, the example script's ``--help``
(``converted_scripts/duration_prediction.py``: its first block answers before the
notebook's imports and setup), and the same script without that block (what ``--help``
cost before: pandas, mlflow, xgboost, sklearn imported, the setup cell run). Median and
best wall time; the target is the script within 100 ms of ``nb2flow --help``.
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
SCRIPT = ROOT / "converted_scripts" / "duration_prediction.py"


def without_preflight(text: str) -> str:
    """The script with its first ``__main__`` block (the early option check) cut out."""
    start = text.index('if __name__ == "__main__":')
    end = text.index("\nimport ", start)
    return text[:start] + text[end + 1 :]


def timed(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NB2FLOW_STORE="off")
    nb2flow = str(Path(sys.executable).with_name("nb2flow"))
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before" / SCRIPT.name
        old.parent.mkdir()
        old.write_text(without_preflight(SCRIPT.read_text()))
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "nb2flow --help": [nb2flow, "--help"],
            # --cwd: the copy is not beside the notebook's folder (where scripts run)
            "script --help": [sys.executable, str(SCRIPT), "--cwd", str(cwd), "--help"],
            "script --help, no early check (before)": [
                *[sys.executable, str(old), "--cwd", str(cwd), "--help"]
            ],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for cmd in commands.values():
            timed(cmd, str(cwd), env)  # warm the file cache
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, str(cwd), env))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.runs} runs each, load average {os.getloadavg()[0]:.1f}\n")
    print("| command | median (ms) | best (ms) | vs `nb2flow --help` |\n|---|---:|---:|---:|")
    ref = med["nb2flow --help"]
    for name, values in times.items():
        print(
            f"| {name} | {med[name] * 1e3:.0f} | {min(values) * 1e3:.0f} "
            f"| {(med[name] - ref) * 1e3:+.0f} ms |"
        )


if __name__ == "__main__":
    main()
