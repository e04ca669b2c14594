"""The live terminal display as a user sees it: flows run by ``run_cli`` in a real terminal
(tmux, 100x30, 256 colours) and the screen read back with ``tmux capture-pane``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

FLOW = """
import logging, sys, threading, time
from nb2flow import flow, task, run_cli

# a library's logger with a handler made before the run (as Dask's and mlflow's are): what
# it prints from its own threads during the run must not break the live display
noisy = logging.getLogger("some.library")
noisy.addHandler(logging.StreamHandler(sys.stderr))
noisy.propagate = False

@task
def load(path: str) -> int:
    time.sleep(0.3)
    return 3

@task
def train(n: int) -> float:
    print("training", n)
    time.sleep({train_seconds})
    if {fail}:
        raise ValueError("the model did not converge")
    return 6.25

@task
def report(rmse: float) -> str:
    return f"rmse {{rmse}}"

@flow(name="terminal-check")
def main(path: str = "data.csv") -> str:
    def chatter():
        for i in range(4):
            noisy.warning("background warning %d", i)
            time.sleep(0.2)
    threading.Thread(target=chatter, daemon=True).start()
    return report.submit(train.submit(load.submit(path)))

if __name__ == "__main__":
    run_cli(main)
"""


class Terminal:
    """A tmux server of our own running one command in a 100x30 pane."""

    def __init__(self, tmp: Path, command: str, width: int = 100) -> None:
        self.socket = f"nb2flow-test-{uuid.uuid4().hex[:8]}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "TERM": "xterm-256color",
            "PYTHONPATH": str(ROOT),
            "NB2FLOW_HOME": os.environ["NB2FLOW_HOME"],
        }
        exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
        script = f"cd {_quote(str(tmp))} && env -i {exports} {command}; echo __DONE__ $?"
        self.tmux(
            "new-session",
            "-d",
            "-x",
            str(width),
            "-y",
            "30",
            "-s",
            "t",
            f"sh -c {_quote(script)}; sleep 60",
        )

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def screen(self, colours: bool = False, history: int = 0) -> str:
        """What the pane shows (and ``history`` lines scrolled off above it)."""
        scroll = ["-S", str(-history)] if history else []
        return self.tmux("capture-pane", "-p", *scroll, *(["-e"] if colours else []), "-t", "t")

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _run(tmp_path: Path, fail: bool, train_seconds: float = 2.0) -> tuple[str, str, str]:
    """(screen while train runs, with colours; final screen; final screen with colours)."""
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(FLOW).format(fail=fail, train_seconds=train_seconds)
    )
    term = Terminal(tmp_path, f"{_quote(sys.executable)} flow.py")
    try:
        term.wait_for("training 3")
        time.sleep(0.5)  # a few more redraws while train runs
        during = term.screen(colours=True)
        final = term.wait_for("__DONE__")
        return during, final, term.screen(colours=True)
    finally:
        term.close()


def _bar_line(screen: str) -> str:
    (line,) = [ln for ln in screen.splitlines() if "━" in ln]
    return line


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _reds(line: str) -> bool:
    """Whether the bar is drawn red (SGR 31/91, or 256-colour 1/9/160/196)."""
    codes = re.findall(r"\x1b\[([0-9;]*)m", line)
    return any(
        c in ("31", "91") or c.endswith(("38;5;1", "38;5;9", "38;5;160", "38;5;196"))
        for code in codes
        for c in code.split(";")[:1] + [code]
    )


def test_a_healthy_run_is_readable_and_green(tmp_path):
    during, final, final_coloured = _run(tmp_path, fail=False)
    bar = _bar_line(during)
    assert not _reds(bar), repr(bar)  # a healthy run is not red
    plain = _plain(bar)
    assert "1 of 3 tasks completed, 1 running" in plain
    assert "train" not in plain and "load" not in plain  # the first task row has its own line
    lines = _plain(during).splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("terminal-check · "))
    assert re.search(r" · run [0-9a-f]{8}$", lines[head].rstrip())  # the id whole, not wrapped
    assert "━" in lines[head + 1]
    assert "training 3" in final and "background warning 3" in final
    # one header on the final screen: nothing printed meanwhile left a stale copy
    assert sum(ln.startswith("terminal-check · ") for ln in final.splitlines()) == 1
    assert "3 of 3 tasks completed" in final and "Completed in" in final
    assert "__DONE__ 0" in final


def test_a_failed_run_says_so_in_red(tmp_path):
    _, final, coloured = _run(tmp_path, fail=True, train_seconds=0.5)
    assert "__DONE__ 1" in final
    bar = _bar_line(coloured)
    assert _reds(bar)
    assert "1 of 3 tasks completed, 1 failed, 1 not run" in _plain(bar)
    assert "3/3 tasks" not in final
    assert "error: flow 'terminal-check' Failed: task 'train' failed: ValueError: the model" in (
        final.replace("\n", "")
    )
    assert sum(ln.startswith("terminal-check · ") for ln in final.splitlines()) == 1


BUSY_FLOW = """
import logging, sys, threading, time
from nb2flow import flow, task, run_cli

noisy = logging.getLogger("some.library")
noisy.addHandler(logging.StreamHandler(sys.stderr))
noisy.propagate = False

@task
def step(i: int) -> int:
    print("step", i)
    time.sleep(0.01)
    return i

@flow(name="busy-terminal")
def main(n: int = 60) -> int:
    def chatter():
        for i in range(300):
            noisy.warning("background warning %d", i)
            time.sleep(0.002)
    for _ in range(3):
        threading.Thread(target=chatter, daemon=True).start()
    futs = [step.submit(i) for i in range(n)]
    time.sleep(1.5)
    return sum(f.result() for f in futs)

if __name__ == "__main__":
    run_cli(main)
"""


@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_prints_from_many_threads_at_once_leave_no_stale_copy_of_the_display(tmp_path, runner):
    """Task runs' log lines, a library's handler writing from its own thread and the
    display's refresh all print at once: rich places its display again after each print
    by the last frame's height, which a concurrent print makes stale (rich#1530; without
    the fix this fails every time on threads, about every other time on Dask). On Dask the
    tasks' prints come back from the workers as log events, and Dask's own threads log."""
    import importlib.util

    from tests.conftest import require

    n = 60
    if runner == "dask":
        require("dask", importlib.util.find_spec("distributed") is not None, "no distributed")
    (tmp_path / "flow.py").write_text(BUSY_FLOW)
    term = Terminal(tmp_path, f"{_quote(sys.executable)} flow.py --n {n} --executor {runner}")
    try:
        term.wait_for("__DONE__", timeout=180)
        everything = term.screen(history=3000)
    finally:
        term.close()
    assert "__DONE__ 0" in everything and "background warning 0" in everything
    headers = [ln for ln in everything.splitlines() if ln.startswith("busy-terminal · ")]
    bars = [ln for ln in everything.splitlines() if "━" in ln]
    assert len(headers) == 1 and len(bars) == 1, everything
    assert f"{n} of {n} tasks completed" in bars[0]
    assert re.search(rf"INFO +step\S* \| step {n - 1}$", everything, re.M), everything
