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

from nb2flow.runtime.core.model import RunView, TaskRunView, describe_result, format_duration
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
    rows = []
    for r in runs:
        rows.append(
            [
                r.run_name or "-",
                r.flow_name or "-",
                _state(r.state),
                fmt_time(r.start if r.start is not None else r.created, seconds=wide),
                fmt_duration(r.duration),
                f"{r.done}/{r.tasks}",
                str(r.failed) if r.failed else "",
            ]
        )
    heads = ["Run", "Flow", "State", "Start", "Duration", "Tasks", "Failed"]
    if any(r.cached for r in runs):
        heads.append("Cached")
        for row, r in zip(rows, runs, strict=True):
            row.append(str(r.cached) if r.cached else "")
    right = {"Duration", "Tasks", "Failed", "Cached"}
    # what each run is and where it ran, as far as the width allows after the columns above
    # (most useful first; each cut to at most `cap` characters)
    optional = [
        ("Id", [r.id[:12] for r in runs], 12),
        ("Runner", [r.task_runner or "-" for r in runs], 16),
        ("Tags", [", ".join(r.tags) for r in runs], 24),
        ("Parameters", [" ".join(f"{k}={v}" for k, v in r.parameters.items()) for r in runs], 40),
        ("Where", [_where(r.script, r.cwd) for r in runs], 48),
    ]

    def width(head: str, values: list[Any]) -> int:
        return max([len(head)] + [len(str(getattr(v, "plain", v))) for v in values])

    used = sum(width(h, [row[i] for row in rows]) + 2 for i, h in enumerate(heads))
    extra: list[tuple[str, list[str], int]] = []
    for head, values, cap in optional:
        if not any(values):
            continue
        w = min(width(head, values), cap)
        if used + w + 2 > console.width:
            continue
        used += w + 2
        extra.append((head, values, w))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, head in enumerate(heads):
        w = width(head, [row[i] for row in rows])
        table.add_column(
            head, justify="right" if head in right else "left", no_wrap=True, min_width=w
        )
    order = [h for h, _, _ in optional]
    extra.sort(key=lambda e: order.index(e[0]) if e[0] != "Id" else len(order))  # Id last
    for head, _, w in extra:
        style = "dim" if head == "Id" else None
        table.add_column(head, no_wrap=True, overflow="ellipsis", max_width=w, style=style)
    for i, row in enumerate(rows):
        table.add_row(*row, *[values[i] for _, values, _ in extra])
    console.print(table)


def _where(script: str, cwd: str) -> str:
    """The script as the user typed it from the run's folder, and that folder:
    ``converted_scripts/x.py in ~/proj``."""
    import os

    if not script and not cwd:
        return "-"
    home = os.path.expanduser("~")

    def short(path: str) -> str:
        return "~" + path[len(home) :] if home != "/" and path.startswith(home + "/") else path

    if script and cwd and script.startswith(cwd.rstrip("/") + "/"):
        script = script[len(cwd.rstrip("/")) + 1 :]
    elif script:
        script = short(script)
    return f"{script} in {short(cwd)}" if cwd else script


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
    line.append(f"  start {fmt_time(view.start if view.start is not None else view.created)}")
    if view.end is not None:
        line.append(f"  end {fmt_time(view.end)}")
    line.append(f"  {'duration' if view.final else 'running for'} {fmt_duration(view.elapsed())}")
    console.print(line, soft_wrap=True)
    place = Text()
    if view.task_runner:
        place.append(f"runner {view.task_runner}  ")
    if view.pid:
        place.append(f"pid {view.pid}  ")
    if view.script:
        place.append(f"script {view.script}  ")
    if view.cwd:
        place.append(f"in {view.cwd}")
    if place:
        console.print(place, soft_wrap=True)
    if view.tags:
        console.print(Text("tags " + ", ".join(view.tags)), soft_wrap=True)
    if view.parameters:
        params = ", ".join(f"{k}={v}" for k, v in view.parameters.items())
        console.print(Text(f"parameters {params}"), soft_wrap=True)
    counts = view.counts()
    if counts:
        console.print(Text("tasks " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
    if view.result is not None:
        console.print(Text("returned ").append_text(_summary_text(view.result)), soft_wrap=True)

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

    results = [(t, t.result) for t in tasks if t.result is not None]
    if results:
        console.print()
        console.print(Text("Results", style="bold"))
        for t, result in results[:limit]:
            line = Text()
            line.append(f"{t.label}: ", style="bold")
            line.append_text(_summary_text(result))
            console.print(line, soft_wrap=True)
        if limit is not None and len(results) > limit:
            console.print(f"... {len(results) - limit} more results (--all lists them)")

    if view.artifacts:
        console.print()
        console.print(Text("Outputs", style="bold"))
        shown = view.artifacts if limit is None else view.artifacts[:limit]
        for art in shown:
            task = view.tasks.get(art.task_run_id or "")
            title = Text()
            title.append(f"{task.label if task else 'flow'}: ", style="bold")
            title.append(f"{art.kind}{' ' + art.name if art.name else ''}")
            parts = [
                f"{mime} {_size(art.size(mime))}" for mime in art.bundle if mime != "text/plain"
            ]
            if parts:
                title.append(f"  ({', '.join(parts)})", style="dim")
            if art.truncated:
                title.append("  truncated", style="yellow")
            console.print(title, soft_wrap=True)
            text = art.text if art.kind != "image" else ""
            for row in text.splitlines()[:12]:
                console.print(Text("    " + row), soft_wrap=True)
        if len(shown) < len(view.artifacts):
            console.print(f"... {len(view.artifacts) - len(shown)} more outputs (--all lists them)")

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


def _size(n: int) -> str:
    return (
        f"{n} B"
        if n < 1024
        else f"{n / 1024:.1f} KiB"
        if n < 1 << 20
        else f"{n / (1 << 20):.1f} MiB"
    )


def _summary_text(summary: dict[str, Any]) -> Any:
    from rich.text import Text

    return Text(describe_result(summary))


def artifact_to_dict(art: Any) -> dict[str, Any]:
    """An artifact without its binary parts: kind, name, text, and each part's size (and
    file, for a recorded run)."""
    parts = {}
    for mime, part in art.bundle.items():
        if mime == "text/plain":
            continue
        entry: dict[str, Any] = {"bytes": art.size(mime)}
        path = getattr(part, "path", None)
        if path:
            entry["file"] = path
        parts[mime] = entry
    return {
        "ts": art.ts,
        "task_run_id": art.task_run_id,
        "kind": art.kind,
        "name": art.name,
        "text": art.text,
        "truncated": art.truncated,
        "parts": parts,
    }


def view_to_dict(view: RunView) -> dict[str, Any]:
    """A RunView as plain JSON-able data (``nb2flow show --json``)."""
    out = dataclasses.asdict(dataclasses.replace(view, artifacts=[]))
    out["artifacts"] = [artifact_to_dict(a) for a in view.artifacts]
    out["duration"] = view.duration
    out["tasks"] = [{**dataclasses.asdict(t), "duration": t.duration} for t in view.tasks.values()]
    out["graph_layers"] = [[t.id for t in layer] for layer in graph_layers(view)]
    return out
