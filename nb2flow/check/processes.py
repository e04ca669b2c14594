"""The check's child processes: each in its own process group, none outliving the check.

Each side of a check (the notebook runner, the flow) is a Python child started in a new
session, so the whole tree under it (a kernel's shell commands, a flow's pool workers) can
be ended with one ``killpg``. A child also asks the kernel to kill it when the check dies
(``PR_SET_PDEATHSIG``, Linux), so even ``kill -9`` of the check leaves no flow running.
:class:`Supervisor` waits for the children, stops them all when asked (fail fast), and
turns SIGTERM into :class:`Terminated` so that the ``finally`` that stops them runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: the environment variable that tells a child which process it must not outlive
PARENT_ENV = "NB2FLOW_CHECK_PARENT"

#: seconds a stopped child gets to end on SIGTERM before its whole group is killed
GRACE = 2.0

_PR_SET_PDEATHSIG = 1


class Terminated(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """The check received SIGTERM (its children are being stopped)."""


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Called first thing in a child: get `signum` when the check that started it dies.

    The parent is named in the environment (:data:`PARENT_ENV`); when it is already gone
    (it died before the request took effect) the child exits at once. A child that asks
    for SIGTERM handles it by ending its whole process group (see
    :func:`end_group_on_sigterm`).
    """
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):  # no prctl: the process group still gets stopped
        return
    if os.getppid() != int(parent):
        os._exit(1)


def end_group_on_sigterm() -> None:
    """SIGTERM (from the supervisor, or the parent's death) kills this process and every
    process it started (its process group) at once: a flow's workers, a shell command."""

    def on_sigterm(signum: int, frame: object) -> None:
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_sigterm)


@dataclass
class Child:
    """One side's process, the leader of its own process group."""

    name: str
    proc: subprocess.Popen
    #: a file where the child writes the pid of a process group it started (a kernel in
    #: a session of its own), to be ended with it
    also_kill: Path | None = None
    ended: bool = False  # set by the supervisor's waiting thread

    def stop(self, grace: float = GRACE) -> None:
        """SIGTERM to the whole group, then SIGKILL to what is left of it."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while members of its group live on (workers, a shell)
        self._signal(signal.SIGKILL)
        if self.also_kill is not None:
            try:
                os.killpg(int(self.also_kill.read_text()), signal.SIGKILL)
            except (OSError, ValueError):  # not started, or already gone
                pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
            pass

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except OSError:  # the whole group is gone
            pass


class Supervisor:
    """Start children (from this thread, which PR_SET_PDEATHSIG ties them to), wait for
    whichever ends first, and stop them all on the way out."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self._changed = threading.Condition()

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        stdout: Path,
        stderr: Path,
        also_kill: Path | None = None,
    ) -> Child:
        env = dict(env, **{PARENT_ENV: str(os.getpid())})
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        child = Child(name, proc, also_kill)
        self.children.append(child)
        # a thread per child only waits: it never starts a process (see PR_SET_PDEATHSIG)
        threading.Thread(target=self._wait, args=(child,), daemon=True).start()
        return child

    def _wait(self, child: Child) -> None:
        child.proc.wait()
        with self._changed:
            child.ended = True
            self._changed.notify_all()

    def first_ended(self, children: list[Child], deadline: float | None = None) -> Child | None:
        """The first of `children` that has ended (perhaps already), or None when
        `deadline` (``time.monotonic()``) passes first."""
        with self._changed:
            while True:
                for child in children:
                    if child.ended:
                        return child
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(left)

    def stop_all(self) -> None:
        for child in self.children:
            child.stop()

    @contextmanager
    def session(self) -> Iterator[Supervisor]:
        """Children started inside are stopped on the way out, whatever the way out is;
        meanwhile SIGTERM raises :class:`Terminated` (when this is the main thread)."""
        previous = None
        if threading.current_thread() is threading.main_thread():

            def on_sigterm(signum: int, frame: object) -> None:
                raise Terminated()

            previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield self
        finally:
            if previous is not None:  # a second SIGTERM must not cut the cleanup short
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self.stop_all()
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
