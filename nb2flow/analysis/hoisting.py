"""Stage 3 of the converter: what moves to the script's module level.

Top-level imports of task and definition cells move to the script's import block (shared by
all tasks; ``import *`` is only legal there), except those pinned in place (see
:mod:`nb2flow.analysis.effects`); cell-level ``global`` statements are dropped (no-ops in a
notebook); functions of task cells that set globals and need nothing of the task move to
module level (:func:`movable_functions`). Setup cells keep their imports in place: their
order may matter (``sys.path`` changes, ``matplotlib.use``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace

from nb2flow.analysis.cells import Unit
from nb2flow.analysis.display import record_shown
from nb2flow.analysis.grouping import Grouping, ModuleCode, Task
from nb2flow.analysis.names import BUILTIN_NAMES, analyse, declared_globals, sequence
from nb2flow.notebook.identifiers import unique
from nb2flow.notebook.markdown import markdown_comment
from nb2flow.notebook.tags import CellTags

_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Hoisted:
    tasks: tuple[Task, ...]  # with the code and names of their bodies
    module: tuple[ModuleCode, ...]  # notebook order, moved functions included
    imports: tuple[str, ...]  # import statements for the top of the script
    needs: tuple[str, ...]  # modules the translated magics use
    #: the script's name for nb2flow.artifacts, when a task records a cell's displayed value
    artifacts: str | None = None


def hoist(grouping: Grouping) -> Hoisted:
    """Cut the imports and movable functions out of the task and definition cells."""
    cutter = _Cutter(movable_functions(grouping.tasks, grouping.module))
    module: list[ModuleCode] = []
    for block in grouping.module:
        if block.kind == "definitions":
            module.append(replace(block, code=cutter.take(block.unit)))
        else:
            cutter.need(block.unit)
            module.append(block)
    artifacts = artifacts_name(grouping.units)
    tasks = tuple(
        _task_body(task, [cutter.take(u) for u in task.units], artifacts) for task in grouping.tasks
    )
    module.extend(cutter.moved)
    module.sort(key=lambda block: block.cell)  # notebook order (stable)
    shows = any(task.shows for task in tasks)
    return Hoisted(
        tasks,
        tuple(module),
        tuple(cutter.imports),
        tuple(cutter.needs),
        artifacts if shows else None,
    )


def artifacts_name(units: tuple[Unit, ...]) -> str:
    """The script's name for :mod:`nb2flow.artifacts`: ``artifacts``, unless the notebook
    uses that name."""
    used = {n for u in units for n in (*u.names.all_reads, *u.names.writes)}
    return "artifacts" if "artifacts" not in used else unique("_nb2flow_artifacts", used)


def _task_body(task: Task, parts: list[str], artifacts: str) -> Task:
    """``task`` with the code its function runs: the cells' code, each cell's displayed value
    recorded (:func:`~nb2flow.analysis.display.record_shown`), markdown above its later cells
    kept as comments, and the names of that code (the cells' own: recording reads nothing
    of the notebook's)."""
    # re-analyse only the cells that lost statements
    names = sequence(
        [
            u.names if part is u.code else analyse(part)
            for u, part in zip(task.units, parts, strict=True)
        ]
    )
    parts, shows = list(parts), []
    for i, u in enumerate(task.units):
        recorded = (
            record_shown(parts[i], u.shown, u.cell, artifacts, u.names.writes) if u.shown else None
        )
        if recorded is not None:
            parts[i] = recorded
            shows.append(u.cell)
    code = "\n\n".join(
        f"{markdown_comment(doc)}\n{part}" if i and (doc := "\n\n".join(u.markdown)) else part
        for i, (u, part) in enumerate(zip(task.units, parts, strict=True))
        if part.strip()
    )
    return replace(task, code=code, names=names, shows=tuple(shows))


class _Cutter:
    """Collects the imports and moved functions cut out of units, in notebook order."""

    def __init__(self, moved: set[ast.stmt]) -> None:
        self.movable = moved
        self.imports: dict[str, None] = {}  # ordered sets
        self.needs: dict[str, None] = {}
        self.moved: list[ModuleCode] = []

    def need(self, unit: Unit) -> None:
        self.needs.update(dict.fromkeys(unit.needs))

    def take(self, unit: Unit) -> str:
        """The unit's code without what moves; what moves is collected."""
        self.need(unit)
        defs = [s for s in unit.tree.body if s in self.movable]
        if defs:
            lines = unit.code.split("\n")
            text = "\n\n\n".join("\n".join(lines[s.lineno - 1 : s.end_lineno]) for s in defs)
            tree = ast.Module(body=defs, type_ignores=[])
            moved = Unit(unit.cell, text, tree, analyse(tree), CellTags(), (), None)
            self.moved.append(ModuleCode("definitions", moved, text, ""))
        return strip_statements(unit, self.imports, self.movable)


def movable_functions(tasks: tuple[Task, ...], module: tuple[ModuleCode, ...]) -> set[ast.stmt]:
    """Functions of task cells that set globals (``def bump(): global counter; ...``) and
    need nothing of the task: they move to module level, so that every task (and every
    worker process) calls the one function writing the module's global, instead of a copy
    passed along as data with globals of its own.

    A function moves when it has no decorator, its name is bound by no other statement of
    the notebook, and every free name it reads (defaults included) is a builtin, a global it
    declares, or a module-level name (imports, definitions, setup code)."""
    module_level: set[str] = set()
    for block in module:
        module_level.update(block.unit.names.writes)
    binders: dict[str, int] = {}
    units = [b.unit for b in module] + [u for t in tasks for u in t.units]
    for unit in units:
        for name in unit.names.bound:
            binders[name] = binders.get(name, 0) + 1
        for stmt in unit.tree.body:
            if isinstance(stmt, ast.Import | ast.ImportFrom) and stmt not in unit.pins:
                module_level.update(analyse(ast.Module(body=[stmt], type_ignores=[])).imported)
    candidates: dict[ast.stmt, set[str]] = {}
    for task in tasks:
        for unit in task.units:
            if unit.tags.role == "parameters":
                continue  # its code is re-written: no source positions to cut at
            for stmt in unit.tree.body:
                if isinstance(stmt, _Function):
                    free = _free_names_if_movable(stmt, binders)
                    if free is not None:
                        candidates[stmt] = free
    # functions calling each other may move together
    moved = set(candidates)
    changed = True
    while changed:
        changed = False
        movable_names = module_level | {f.name for f in moved if isinstance(f, _Function)}
        for stmt in list(moved):
            if not candidates[stmt] <= movable_names:
                moved.discard(stmt)
                changed = True
    return moved


def _free_names_if_movable(stmt: _Function, binders: dict[str, int]) -> set[str] | None:
    """The free names ``stmt`` needs, when it sets globals and nothing else binds its name."""
    names = analyse(ast.Module(body=[stmt], type_ignores=[]))
    if stmt.decorator_list or not names.global_writes or binders[stmt.name] != 1:
        return None
    declared = declared_globals(stmt)
    return {r for r in names.reads if r not in BUILTIN_NAMES and r not in declared} - {stmt.name}


def strip_statements(
    unit: Unit, imports: dict[str, None], moved: set[ast.stmt] | frozenset[ast.stmt] = frozenset()
) -> str:
    """The unit's code without top-level imports (added to ``imports``), ``global``s and
    ``moved`` functions; pinned imports (see :mod:`nb2flow.analysis.effects`) stay."""
    body = unit.tree.body
    drop = [
        s
        for s in body
        if (isinstance(s, ast.Import | ast.ImportFrom | ast.Global) and s not in unit.pins)
        or s in moved
    ]
    if not drop:
        return unit.code
    for stmt in drop:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            imports[ast.unparse(stmt)] = None
    lines = unit.code.split("\n")
    # Remove whole lines when every dropped statement has its lines to itself; otherwise
    # (``import os; x = 1``) fall back to the unparsed code of the rest.
    spans = [(s.lineno, s.end_lineno or s.lineno) for s in body]
    keep = [True] * len(lines)
    dropped = set(drop)
    for i, stmt in enumerate(body):
        if stmt not in dropped:
            continue
        start, end = spans[i]
        shares = (i > 0 and spans[i - 1][1] >= start) or (
            i + 1 < len(body) and spans[i + 1][0] <= end
        )
        if shares:
            return "\n".join(ast.unparse(s) for s in body if s not in dropped)
        for n in range(start - 1, end):
            keep[n] = False
    return "\n".join(line for line, k in zip(lines, keep, strict=True) if k).strip("\n")
