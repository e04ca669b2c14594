"""How long the processes nb2flow starts live: never longer than the process that started them.

A child nb2flow starts to run tasks (a process-pool worker, the child of a ``hard_timeout``
attempt) calls :func:`own_group` and :func:`die_with_parent` first: it leads a process
group of its own, so whatever the task starts (``subprocess.run(["sleep", "123"])``) is in
that group, and a thread waits on the parent's sentinel (the pipe multiprocessing keeps
from the parent, which the operating system closes however the parent ends, ``kill -9``
included), then kills the whole group. Stopping a child (a timeout, a cancelled run) is
:func:`kill_group`: the child and everything it started.

Not ``PR_SET_PDEATHSIG``: Linux sends it when the parent *thread* that started the child
ends (a flow run in a short-lived thread would kill its workers), and its SIGKILL would
end the child before it could kill its group.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

_HAS_GROUPS = hasattr(os, "setpgid") and hasattr(os, "killpg")


def own_group() -> None:
    """Make this process the leader of a new process group (POSIX; no-op elsewhere).

    Ctrl-C at a terminal then reaches the flow process only, which stops its children."""
    if _HAS_GROUPS:
        try:
            os.setpgid(0, 0)
        except OSError:  # already a session or group leader
            pass


def die_with_parent() -> None:
    """In a multiprocessing child: kill this process's group once the parent is gone."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        _kill_own_group()

    threading.Thread(target=watch, name="nb2flow-parent-watch", daemon=True).start()


def _kill_own_group() -> None:
    if _HAS_GROUPS and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)  # not a group leader: this process at least


def kill_group(proc: Any) -> None:
    """Kill a child started by multiprocessing and every process of its group (the child
    leads it when it called :func:`own_group`), then reap the child."""
    pid = proc.pid
    if pid is None:
        return
    if _HAS_GROUPS:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # not (yet) a group of its own: the child alone
    try:
        proc.kill()
    except (OSError, ValueError):  # gone already, or closed
        pass
    proc.join()


def allow_children() -> None:
    """Let this process start child processes although multiprocessing started it as a
    daemon (daemonic processes may not have children; nb2flow's children are stopped by
    :func:`die_with_parent`, not by that rule)."""
    import multiprocessing

    proc = multiprocessing.current_process()
    if proc.daemon:
        proc._config["daemon"] = False  # type: ignore[attr-defined]
