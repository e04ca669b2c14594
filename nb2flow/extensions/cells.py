"""What nb2flow makes of each cell: the per-cell summary behind the JupyterLab badges, the
``/nb2flow/analyze`` server endpoint and ``%nb2flow inspect``.

:func:`summarize` runs the converter's own analysis (``build_plan``) on a notebook, saved or
not, and answers per cell: its role (``task``, ``module``, ``setup``, ``parameters``,
``skip``, ``nb2flow`` for a cell that drives nb2flow, ``error``, ``markdown``, ``empty``),
its task, the names it receives and hands on, and its problems. A notebook the converter
refuses still gets a summary: the error goes on the cell it names, the offending tags (or,
failing that, the cell) are set aside, and the rest is analysed again, so one bad tag
never blanks the other badges.

This is the one place that reads the plan for the front end: when the plan's shape changes,
only this module changes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nb2flow.errors import Nb2flowError
from nb2flow.notebook.magics import is_nb2flow_cell
from nb2flow.notebook.reader import Cell, Notebook
from nb2flow.notebook.tags import parse_tags

if TYPE_CHECKING:
    from nb2flow.analysis.plan import Plan

#: how many times a refused notebook is re-analysed with one more problem set aside
MAX_RETRIES = 40


def summarize(nb: Notebook, *, split: str = "auto") -> dict[str, Any]:
    """The summary of ``nb`` as JSON-able data::

        {"ok": bool, "flow": str, "split": str,
         "cells": [{"cell": N, "index": N-1, "role": ..., "task": name | None,
                    "first": bool, "last": bool, "inputs": [...], "outputs": [...],
                    "options": {...}, "after": [...], "parameters": [...],
                    "problems": [{"level": "error" | "warning", "message": str}]}],
         "tasks": [{"name", "cells", "inputs", "outputs", "options", "after"}],
         "edges": [{"from", "to", "kind", "vars"}], "outputs": [...],
         "problems": [...notebook-level problems...]}

    Cells are numbered from 1, as in every message; ``index`` is the 0-based position.
    """
    from nb2flow.analysis.pipeline import build_plan

    label = str(nb.path)
    problems: dict[int, list[dict[str, str]]] = {}
    general: list[dict[str, str]] = []
    errored: set[int] = set()
    current = nb
    plan = None
    for _ in range(MAX_RETRIES):
        try:
            plan = build_plan(current, split=split, label=label)
            break
        except Nb2flowError as exc:
            message = str(exc)
            cell, text = _locate(message, label)
            if cell is None:
                general.append({"level": "error", "message": message})
                break
            problems.setdefault(cell, []).append({"level": "error", "message": text})
            relaxed = _set_aside(current, cell)
            if relaxed is None:
                break
            if relaxed.cells[cell - 1].tags == ("skip",):
                errored.add(cell)
            current = relaxed
    cells = [_cell_entry(c, errored) for c in nb.cells]
    result: dict[str, Any] = {
        "ok": plan is not None and not problems and not general,
        "flow": nb.path.stem,
        "split": split,
        "cells": cells,
        "tasks": [],
        "edges": [],
        "outputs": [],
        "problems": general,
    }
    if plan is not None:
        _fill_from_plan(result, plan, errored)
        for message in plan.warnings:
            cell, text = _locate(message, label)
            entry = {"level": "warning", "message": text}
            if cell is None or not 1 <= cell <= len(cells):
                general.append(entry)
            elif entry not in problems.setdefault(cell, []):
                problems[cell].append(entry)
    for number, found in problems.items():
        if 1 <= number <= len(cells):
            cells[number - 1]["problems"].extend(found)
    return result


def _locate(message: str, label: str) -> tuple[int | None, str]:
    """(cell number, the message without the ``file, cell N[, line M]: `` prefix)."""
    m = re.match(re.escape(label) + r", cell (\d+)((?:, line \d+)?): ", message)
    if m is None:
        return None, message.removeprefix(label + ": ")
    line = m.group(2).removeprefix(", ")
    return int(m.group(1)), (f"{line}: " if line else "") + message[m.end() :]


def _tag_fails(tag: str) -> bool:
    try:
        parse_tags([tag], "tag")
    except Nb2flowError:
        return True
    return False


def _set_aside(nb: Notebook, number: int) -> Notebook | None:
    """``nb`` with the problem of cell ``number`` set aside, most gently first: its malformed
    tags dropped, else its ``after:`` tags, else its task name, else the cell skipped.
    None when nothing is left to set aside."""
    cell = nb.cells[number - 1]
    tags = list(cell.tags)
    role_tags = [t for t in tags if t.partition(":")[0].strip().lower() in _ROLES]
    candidates = [
        [t for t in tags if not _tag_fails(t)],
        [t for t in tags if t not in role_tags[1:]],  # conflicting roles: keep the first
        [t for t in tags if not t.strip().lower().startswith("after")],
        ["task" if t.strip().lower().startswith("task:") else t for t in tags],
        ["skip"],
    ]
    for new in candidates:
        if new != tags:
            cells = list(nb.cells)
            cells[number - 1] = replace(cell, tags=tuple(new))
            return replace(nb, cells=cells)
    return None


_ROLES = ("task", "parameters", "setup", "skip")


def _entry(cell: Cell, role: str) -> dict[str, Any]:
    return {
        "cell": cell.number,
        "index": cell.number - 1,
        "role": role,
        "task": None,
        "first": False,
        "last": False,
        "inputs": [],
        "outputs": [],
        "options": {},
        "after": [],
        "parameters": [],
        "problems": [],
    }


def _cell_entry(cell: Cell, errored: set[int]) -> dict[str, Any]:
    if cell.kind != "code":
        return _entry(cell, cell.kind)
    if cell.number in errored:
        return _entry(cell, "error")
    if is_nb2flow_cell(cell.source):
        return _entry(cell, "nb2flow")
    if not cell.source.strip():
        return _entry(cell, "empty")
    return _entry(cell, "module")  # refined from the plan: module unless a task claims it


def _fill_from_plan(result: dict[str, Any], plan: Plan, errored: set[int]) -> None:
    cells = result["cells"]

    def at(number: int) -> dict[str, Any] | None:
        entry = cells[number - 1] if 1 <= number <= len(cells) else None
        return entry if entry is not None and entry["role"] not in ("error", "nb2flow") else None

    for number in plan.skipped:
        entry = at(number)
        if entry is not None:
            entry["role"] = "skip"
    for block in plan.module:
        entry = at(block.cell)
        if entry is not None:
            entry["role"] = "setup" if block.kind == "setup" else "module"
    for p in plan.parameters:
        for number in p.cells or [p.cell]:
            entry = at(number)
            if entry is not None:
                entry["role"] = "parameters"
                if p.name not in entry["parameters"]:
                    entry["parameters"].append(p.name)
    for t in plan.tasks.values():
        result["tasks"].append(
            {
                "name": t.name,
                "cells": list(t.cells),
                "inputs": list(t.inputs),
                "outputs": list(t.outputs),
                "options": dict(t.options),
                "after": list(t.after),
            }
        )
        numbers = [n for n in t.cells if at(n) is not None]
        for number in numbers:
            entry = cells[number - 1]
            entry.update(
                role="task",
                task=t.name,
                first=number == numbers[0],
                last=number == numbers[-1],
                options=dict(t.options),
                after=list(t.after),
            )
            if number == numbers[0]:
                entry["inputs"] = list(t.inputs)
            if number == numbers[-1]:
                entry["outputs"] = list(t.outputs)
    result["edges"] = [
        {"from": e.source, "to": e.target, "kind": e.kind, "vars": list(e.vars)}
        for e in plan.edges()
    ]
    result["outputs"] = list(plan.outputs)


def plan_svg(summary: dict[str, Any], direction: str = "auto") -> str:
    """The task graph of a summary as SVG (the panel's renderer): one ``g.nb2f-node`` per task
    (``data-task`` = its name, for the front end to select its cells), edges labelled with
    the variables flowing along them, each node subtitled with its cells. ``direction``:
    ``TB`` for a narrow side panel, ``LR``, or ``auto`` (LR while it fits a notebook)."""
    from nb2flow.commands.convert import cells_text
    from nb2flow.jupyter.render import graph_svg
    from nb2flow.runtime.core.model import RunView, TaskRunView

    view = RunView(id="plan:" + summary["flow"], flow_name=summary["flow"])
    upstream: dict[str, dict[str, list[str]]] = {t["name"]: {} for t in summary["tasks"]}
    for e in summary["edges"]:
        names = e["vars"] if e["kind"] == "data" else [*e["vars"], f"({e['kind']})"]
        upstream[e["to"]][e["from"]] = names
    for t in summary["tasks"]:
        up = upstream[t["name"]]
        view.tasks[t["name"]] = TaskRunView(
            id=t["name"], name=t["name"], upstream=list(up), edge_names=up
        )
    subtitles = {t["name"]: cells_text(t["cells"]) for t in summary["tasks"]}
    return graph_svg(view, subtitles=subtitles, direction=direction)
