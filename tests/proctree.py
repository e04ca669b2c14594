"""Process-tree checks for the tests that kill things: read from the OS (psutil), not
from what nb2flow believes it started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants now."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def processes(pids: list[int]) -> list[psutil.Process]:
    """The processes of those pids that exist now (one gone already is not an error)."""
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def survivors(procs: list[psutil.Process], timeout: float) -> list[str]:
    """Wait up to ``timeout`` seconds for ``procs`` to end (zombies count as ended: only
    their parent can reap them); describe those still running."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.1)
        alive = [p for p in alive if _running(p)]
    return [_describe(p) for p in alive if _running(p)]


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline())[:120]}"
    except psutil.Error:
        return str(p.pid)


def wait_for_file(path: Path, timeout: float, proc: object = None) -> str:
    """The text of ``path`` once it exists (written by a task), polling; fails after
    ``timeout`` seconds or when ``proc`` (a Popen) ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        if proc is not None and proc.poll() is not None:  # type: ignore[attr-defined]
            raise AssertionError(f"the flow ended (exit {proc.returncode}) before {path.name}")
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout}s")


def write_line(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` and a newline atomically (a reader never sees half of it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)
