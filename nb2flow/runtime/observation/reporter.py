"""The terminal reporter of flows run from the command line: a live rich display of the
task runs on a terminal, log lines above it, and a one-line summary at the end.

It is a run-event subscriber like the store and the panel. On the hot path it only appends
the event to a deque; the display thread folds the events into a
:class:`~nb2flow.runtime.core.model.RunView` a few times a second. Everything goes to stderr,
so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

from nb2flow.console import printable
from nb2flow.runtime.core.events import RunEvent, subscribe, unsubscribe
from nb2flow.runtime.core.model import format_duration, progress_text
from nb2flow.runtime.core.observers import Attachment, RunStart
from nb2flow.runtime.core.states import (
    CACHED,
    CANCELLED,
    COMPLETED,
    CRASHED,
    FAILED,
    FAILED_STATES,
    NOT_RUN,
    PENDING,
    RETRYING,
    RUNNING,
    TIMED_OUT,
    colour,
)
from nb2flow.runtime.observation import capture
from nb2flow.runtime.observation.logs import format_log

MARK = {
    PENDING: "·",
    RUNNING: "▶",
    RETRYING: "↻",
    COMPLETED: "✓",
    CACHED: "✓",
    FAILED: "✗",
    TIMED_OUT: "✗",
    CRASHED: "✗",
    CANCELLED: "■",
    NOT_RUN: "-",
}
#: rows of task runs shown live (running and retrying first, then the latest finished)
MAX_ROWS = 12


def summary_line(view: Any) -> str:
    """``flow run-name State in 1.2s: 5 of 5 tasks completed (run 1a2b3c4d)``."""
    duration = f" in {format_duration(view.elapsed())}" if view.start is not None else ""
    return (
        f"{view.flow_name} {view.run_name} {view.state}{duration}: "
        f"{progress_text(view)} (run {view.id[:8]})"
    )


class TerminalReporter:
    """Subscriber for one top-level flow run started by ``run_cli``.

    ``mode``: ``"live"`` (rich display on a terminal), ``"plain"`` (log lines, summary
    line at the end) or ``"quiet"`` (warnings and errors only).
    """

    def __init__(self, mode: str = "live", stream: Any = None) -> None:
        self.mode = mode
        # the terminal itself: what the reporter prints is never a run's captured output
        self.stream = capture.underlying(stream or sys.stderr)
        self.flow_run_id: str | None = None
        self._pending: deque[RunEvent] = deque()
        self._view: Any = None
        self._live: Any = None
        self._console: Any = None
        self._names: dict[str, str] = {}

    def observe(self, run: RunStart) -> Attachment | None:
        """The reporter as an observer (``run_cli`` registers it): it reports the first
        top-level run that starts, and shows that run's logs."""
        if self.flow_run_id is not None:
            return None
        self.flow_run_id = run.id
        subscribe(self)
        return Attachment(shows_logs=True, close=lambda: unsubscribe(self))

    # -- subscriber (hot path) -----------------------------------------------------------

    def __call__(self, ev: RunEvent) -> None:
        if self.flow_run_id is None:
            if ev.kind != "flow_run" or ev.data.get("parent_flow_run_id"):
                return
            self.flow_run_id = ev.flow_run_id
        if ev.flow_run_id != self.flow_run_id:
            return
        if ev.kind == "log":
            self._log(ev)
        elif ev.kind == "task_run":
            self._names[ev.task_run_id or ""] = ev.data.get("task_key", "?")
        if self.mode == "live":
            self._pending.append(ev)

    def _log(self, ev: RunEvent) -> None:
        level = int(ev.data.get("level", 20))
        stream = ev.data.get("logger")
        if self.mode != "live" and stream in (capture.STDOUT, capture.STDERR):
            # not a terminal, or --quiet: what the flow printed goes where it would have gone
            # without nb2flow (stdout stays stdout: `script.py > out.txt` keeps the prints)
            target = sys.stdout if stream == capture.STDOUT else sys.stderr
            print(printable(str(ev.data.get("message", ""))), file=capture.underlying(target),
                  flush=True)  # fmt: skip
            return
        if self.mode == "quiet" and level < 30:
            return
        who = self._names.get(ev.task_run_id or "", "flow") if ev.task_run_id else "flow"
        line = format_log(ev, who)
        if self._console is not None:
            style = "red" if level >= 40 else "yellow" if level >= 30 else None
            self._console.print(line, style=style, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    # -- display -------------------------------------------------------------------------

    def start(self) -> None:
        if self.mode != "live":
            return
        from rich.live import Live

        from nb2flow.console import rich_console
        from nb2flow.runtime.core.model import RunView

        self._view = RunView("")
        self._console = rich_console(file=self.stream)  # its text goes through printable()
        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=8,
            transient=False,
            # what anything else writes to the terminal meanwhile (a library's warnings,
            # Dask's) is printed above the display, which stays whole below it
            redirect_stdout=True,
            redirect_stderr=True,
        )
        _print_under_the_live_lock(self._console, self._live)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            try:
                self._live.refresh()
            finally:
                self._live.stop()
                self._live = None

    def _fold(self) -> Any:
        view = self._view
        pending = self._pending
        while pending:
            ev = pending.popleft()
            if view.id != ev.flow_run_id:
                view.id = ev.flow_run_id
            view.apply(ev)
        return view

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        view = self._fold()
        now = time.time()
        counts = view.counts()
        total = len(view.tasks)
        final = sum(1 for t in view.tasks.values() if t.final)
        bad = sum(counts.get(s, 0) for s in FAILED_STATES)
        head = Text.assemble(
            (view.flow_name or "flow", "bold"),
            " · ",
            (view.run_name or "", "cyan"),
            " · ",
            (view.state, colour(view.state).terminal),
            f" · {format_duration(view.elapsed(now)) or '0s'} · run {view.id[:8]}",
            no_wrap=True,
            overflow="ellipsis",
        )
        # the bar fills as task runs end; it is green, and red once one failed
        style = "red" if bad else "green"
        bar = ProgressBar(
            total=max(total, 1),
            completed=final,
            width=40,
            complete_style=style,
            finished_style=style,
        )
        line = Table.grid(padding=(0, 1))
        line.add_row(bar, Text(progress_text(view), style="bold red" if bad else "", no_wrap=True))
        table = Table.grid(padding=(0, 2))
        for t in _rows(view):
            attempts = f"attempt {t.attempts}" if t.attempts > 1 else ""
            table.add_row(
                Text(MARK.get(t.state, "?"), style=colour(t.state).terminal),
                Text(t.task_key or t.name, no_wrap=True, overflow="ellipsis"),
                Text(t.state, style=colour(t.state).terminal),
                Text(format_duration(t.elapsed(now)), style="dim"),
                Text(attempts, style="yellow"),
                Text(
                    (t.error or "").splitlines()[0][:200] if t.error else "",
                    style="red",
                    no_wrap=True,
                    overflow="ellipsis",
                ),  # fmt: skip
            )
        hidden = total - table.row_count
        parts: list[Any] = [head, line, table]
        if hidden > 0:
            parts.append(Text(f"  … {hidden} more", style="dim"))
        return Group(*parts)


def _print_under_the_live_lock(console: Any, live: Any) -> None:
    """Make every print to the live display's console hold the display's lock throughout.

    rich places the display again after each print (the cursor moves up by the height of
    the last frame drawn, the printed lines and a new frame follow) but takes its lock only
    to compute that move, not while the print renders and writes (Textualize/rich#1530,
    #1903: live display and console printing are not thread safe). Prints from several
    threads at once (log lines of task runs, a library's handler writing from its own
    thread, the display's own refresh) then move up by a stale height and leave copies of
    old frames on the screen. The lock is the display's own re-entrant one: its refresh
    already holds it while printing, so the order in which the two are taken is the same
    everywhere."""
    lock = getattr(live, "_lock", None)
    if lock is None:  # another rich: leave it as it is
        return
    plain = console.print

    def print_locked(*args: Any, **kwargs: Any) -> None:
        with lock:
            plain(*args, **kwargs)

    console.print = print_locked


def _rows(view: Any) -> list[Any]:
    tasks = list(view.tasks.values())
    if len(tasks) <= MAX_ROWS:
        return tasks
    active = [t for t in tasks if t.state in (RUNNING, RETRYING)]
    bad = [t for t in tasks if t.state in FAILED_STATES]
    done = [t for t in tasks if t.final and t not in bad]
    done.sort(key=lambda t: t.end or 0)
    rows = (bad + active)[:MAX_ROWS]
    room = MAX_ROWS - len(rows)
    if room > 0:
        rows += done[-room:]
    order = {t.id: i for i, t in enumerate(tasks)}
    return sorted(rows, key=lambda t: order[t.id])
