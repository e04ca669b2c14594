"""How recorded runs look in a terminal: the ``nb2flow runs`` table and the ``nb2flow show``
page (rich), in the states' colours and the durations every surface shares.

rich and networkx are imported inside the functions that use them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nb2flow.runtime.core.model import RunView, TaskRunView, format_duration
from nb2flow.runtime.core.states import colour
from nb2flow.store.db import RunSummary


def fmt_time(ts: float | None, seconds: bool = True) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(ts))


def fmt_duration(seconds: float | None) -> str:
    return format_duration(seconds) or "-"


def _task_duration(t: TaskRunView) -> str:
    if t.start is not None and not t.final:  # still running: how long so far
        return f"{fmt_duration(time.time() - t.start)}..."
    return fmt_duration(t.duration)


def _state(state: str) -> Any:
    from rich.text import Text

    return Text(state, style=colour(state).terminal)


def _console() -> Any:
    from nb2flow.console import rich_console

    return rich_console(highlight=False)


def print_runs(runs: Sequence[RunSummary], path: Path) -> None:
    """The ``nb2flow runs`` table."""
    from rich.table import Table

    console = _console()
    if not runs:
        console.print(f"No matching runs in {path}.", markup=False)
        return
    wide = console.width >= 110
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("Run", no_wrap=True, min_width=max(len(r.run_name) for r in runs))
    table.add_column("Flow", no_wrap=True, overflow="ellipsis")
    table.add_column("State", no_wrap=True, min_width=9)
    table.add_column("Start", no_wrap=True, min_width=16)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Tasks", justify="right", no_wrap=True)
    table.add_column("Failed", justify="right", no_wrap=True)
    if wide:
        table.add_column("Id", style="dim", no_wrap=True)
    for r in runs:
        row = [
            r.run_name or "-",
            r.flow_name or "-",
            _state(r.state),
            fmt_time(r.start if r.start is not None else r.created, seconds=wide),
            fmt_duration(r.duration),
            f"{r.done}/{r.tasks}",
            str(r.failed) if r.failed else "",
        ]
        table.add_row(*row, *([r.id[:12]] if wide else []))
    console.print(table)


def graph_layers(view: RunView) -> list[list[TaskRunView]]:
    """The task runs in layers: each layer depends only on earlier ones (creation order
    inside a layer). Edges to unknown task runs are ignored."""
    import networkx as nx

    g = view.graph()
    order = {tid: i for i, tid in enumerate(view.tasks)}
    try:
        generations = list(nx.topological_generations(g))
    except nx.NetworkXUnfeasible:  # a cycle cannot come from a run, but never crash on one
        generations = [list(view.tasks)]
    return [
        [view.tasks[tid] for tid in sorted(layer, key=order.__getitem__)] for layer in generations
    ]


def graph_text(view: RunView, limit: int | None = None) -> list[str]:
    """The graph as text, one line per task run, grouped by layer::

    1  load_data   Completed
       other       Cached
    2  features    Completed  <- load_data (df_train, df_val)
    """
    lines: list[str] = []
    width = max((len(t.label) for t in view.tasks.values()), default=0)
    for depth, layer in enumerate(graph_layers(view), 1):
        for i, t in enumerate(layer):
            if limit is not None and len(lines) >= limit:
                lines.append(f"... {len(view.tasks) - limit} more task runs (--all lists them)")
                return lines
            ups = []
            for up in t.upstream:
                if up in view.tasks:
                    names = t.edge_names.get(up) or []
                    label = view.tasks[up].label
                    ups.append(f"{label} ({', '.join(names)})" if names else label)
            prefix = f"{depth:>3}  " if i == 0 else "     "
            line = f"{prefix}{t.label:<{width}}  {t.state:<9}"
            if ups:
                line += "  <- " + ", ".join(ups)
            lines.append(line.rstrip())
    return lines


def print_run(view: RunView, limit: int | None = 200) -> None:
    """The ``nb2flow show`` page: header, tasks, graph, error, logs."""
    from rich.table import Table
    from rich.text import Text

    console = _console()
    head = Text()
    head.append(view.run_name or view.id, style="bold")
    head.append(f"  flow {view.flow_name or '?'}  id {view.id}")
    console.print(head, soft_wrap=True)
    line = Text("state ")
    line.append_text(_state(view.state))
    line.append(
        f"  start {fmt_time(view.start if view.start is not None else view.created)}"
        f"  {'duration' if view.final else 'running for'} {fmt_duration(view.elapsed())}"
    )
    if view.task_runner:
        line.append(f"  runner {view.task_runner}")
    if view.pid:
        line.append(f"  pid {view.pid}")
    console.print(line, soft_wrap=True)
    if view.parameters:
        params = ", ".join(f"{k}={v}" for k, v in view.parameters.items())
        console.print(Text(f"parameters {params}"), soft_wrap=True)
    counts = view.counts()
    if counts:
        console.print(Text("tasks " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))

    tasks = list(view.tasks.values())
    if tasks:
        console.print()
        table = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
        table.add_column("Task", no_wrap=True)
        table.add_column("State", no_wrap=True)
        table.add_column("Start", justify="right", no_wrap=True)
        table.add_column("Duration", justify="right", no_wrap=True)
        table.add_column("Attempts", justify="right", no_wrap=True)
        table.add_column("Error", overflow="ellipsis", no_wrap=True)
        origin = view.start if view.start is not None else view.created
        for t in tasks[:limit]:
            offset = "-"
            if t.start is not None and origin is not None:
                offset = f"+{fmt_duration(max(t.start - origin, 0.0))}"
            note = t.error or (f"cached from {t.cached_from}" if t.cached_from else "")
            table.add_row(
                Text(t.label),
                _state(t.state),
                offset,
                _task_duration(t),
                str(t.attempts),
                Text(note.splitlines()[0] if note else ""),
            )
        console.print(table)
        if limit is not None and len(tasks) > limit:
            console.print(f"... {len(tasks) - limit} more task runs (--all lists them)")

        console.print()
        console.print(Text("Graph", style="bold"))
        for text in graph_text(view, limit):
            console.print(Text(text))

    failed = [t for t in tasks if t.traceback]
    if view.error or failed:
        console.print()
        console.print(Text("Error", style="bold red"))
        if view.error:
            console.print(Text(view.error))
        for t in failed[:5]:
            console.print(Text(f"task {t.label}:", style="bold"))
            console.print(Text((t.traceback or "").rstrip()))
        if not failed and view.traceback:
            console.print(Text(view.traceback.rstrip()))

    if view.logs:
        console.print()
        console.print(Text("Logs", style="bold"))
        logs = view.logs if limit is None else view.logs[-limit:]
        if len(logs) < len(view.logs):
            console.print(f"... {len(view.logs) - len(logs)} earlier lines (--all shows them)")
        for log in logs:
            task = view.tasks.get(log.task_run_id or "")
            where = task.label if task else "flow"
            style = "red" if log.level >= 40 else "yellow" if log.level >= 30 else ""
            line = Text(time.strftime("%H:%M:%S ", time.localtime(log.ts)))
            line.append(f"{log.levelname:<8} ", style=style)
            line.append(f"{where}: {log.message}")
            console.print(line)


def view_to_dict(view: RunView) -> dict[str, Any]:
    """A RunView as plain JSON-able data (``nb2flow show --json``)."""
    out = dataclasses.asdict(view)
    out["duration"] = view.duration
    out["tasks"] = [{**dataclasses.asdict(t), "duration": t.duration} for t in view.tasks.values()]
    out["graph_layers"] = [[t.id for t in layer] for layer in graph_layers(view)]
    return out
