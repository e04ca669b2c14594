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
from nb2flow.analysis.effects import (
    configured_state,
    draws_figures,
    global_state_used,
    may_hold_state,
    module_aliases,
)
from nb2flow.analysis.grouping import Grouping, ModuleCode, Task
from nb2flow.analysis.names import BUILTIN_NAMES, Names, analyse, declared_globals, sequence
from nb2flow.analysis.plan import CELL_END
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
    #: statements of task cells moved to the flow's setup (no longer run by their task)
    configuration: frozenset[ast.stmt] = frozenset()


def hoist(grouping: Grouping) -> Hoisted:
    """Cut the imports and movable functions out of the task and definition cells, and the
    process-wide configuration out of the task cells (it goes to the flow's setup)."""
    units = [b.unit for b in grouping.module] + [u for t in grouping.tasks for u in t.units]
    aliases = module_aliases([u.tree for u in units], list(_needs(units)))
    config = configuration(grouping, aliases)
    cutter = _Cutter(movable_functions(grouping.tasks, grouping.module), config)
    module: list[ModuleCode] = []
    for block in grouping.module:
        if block.kind == "definitions":
            module.append(replace(block, code=cutter.take(block.unit)))
        else:
            cutter.need(block.unit)
            module.append(replace(block, code=cutter.take_from_setup(block.unit)))
    artifacts = artifacts_name(grouping.units)
    tasks = []
    for task in grouping.tasks:
        configured = len(cutter.configured)
        plotting = {u for u in task.units[:-1] if draws_figures(u.tree, aliases)}
        body = _task_body(task, [cutter.take(u) for u in task.units], artifacts, plotting)
        if len(cutter.configured) > configured and not _runs_anything(body, grouping.tasks):
            # nothing but configuration: the task is gone, its markdown goes with the code
            first = cutter.configured[configured]
            cutter.configured[configured] = replace(first, doc=task.doc)
            continue
        tasks.append(body)
    module.extend(cutter.moved)
    module.extend(cutter.configured)
    module.sort(key=lambda block: block.cell)  # notebook order (stable)
    shows = any(task.shows for task in tasks)
    return Hoisted(
        tuple(tasks),
        tuple(module),
        tuple(cutter.imports),
        tuple(cutter.needs),
        artifacts if shows else None,
        frozenset(config),
    )


def _runs_anything(task: Task, tasks: tuple[Task, ...]) -> bool:
    """Whether a task left with ``task.code`` is still one: it runs a statement, is named
    by a ``task:NAME`` tag, or another task's ``after:`` tag names it."""
    if task.explicit or ast.parse(task.code).body:
        return True
    return any(name == task.name for other in tasks for name, _ in other.after)


def configuration(grouping: Grouping, aliases: dict[str, str]) -> set[ast.stmt]:
    """Statements of task cells that configure process-wide state and nothing else
    (``mlflow.set_experiment(name)``, ``plt.style.use("ggplot")``, ``np.random.seed(0)``,
    ``os.environ["K"] = "v"``: :func:`~nb2flow.analysis.effects.configured_state`): they
    move to the flow's setup, which runs in every process before its tasks, so that the
    tasks of every worker see the configuration, as every cell of the notebook does.

    A statement moves when it is at the top level of its cell, no code that stays in the
    tasks used the same state before it (moving it earlier changes nothing then), and all
    it reads exists before the setup runs: imports, module-level definitions, earlier
    ``setup`` cells, and flow parameters from their ``parameters`` cell on, none of them
    bound or changed by task code above it. ``aliases``: :func:`module_aliases` of the
    notebook's flow cells."""
    units = [b.unit for b in grouping.module] + [u for t in grouping.tasks for u in t.units]
    stateful = {name for name, path in aliases.items() if may_hold_state(path)}
    if not any(not stateful.isdisjoint(u.names.all_reads) for t in grouping.tasks for u in t.units):
        return set()
    hoisted_imports: set[str] = set()
    for unit in units:
        for stmt in unit.tree.body:
            if isinstance(stmt, ast.Import | ast.ImportFrom) and stmt not in unit.pins:
                hoisted_imports |= analyse(ast.Module(body=[stmt], type_ignores=[])).imported
    definitions: set[str] = set()
    setup_binds: list[tuple[int, frozenset[str]]] = []
    for block in grouping.module:
        if block.kind == "definitions":
            definitions |= block.unit.names.defined
        else:
            setup_binds.append((block.cell, frozenset(block.unit.names.bound)))
    since = {p.name: min(p.cells) for p in grouping.parameters}
    written: set[str] = set()  # bound or changed by task code so far
    used: set[str] = set()  # states used by code that stays in the tasks, so far
    moved: set[ast.stmt] = set()

    def available(name: str, cell: int) -> bool:
        if name in written:
            return False
        return (
            name in BUILTIN_NAMES
            or name in hoisted_imports
            or name in definitions
            or any(c < cell and name in bound for c, bound in setup_binds)
            or since.get(name, cell) < cell
        )

    for task in grouping.tasks:
        for unit in task.units:
            if stateful.isdisjoint(unit.names.all_reads):
                written |= _changed(unit.names, hoisted_imports)
                continue
            for stmt in unit.tree.body:
                part = analyse(ast.Module(body=[stmt], type_ignores=[]))
                states = configured_state(stmt, aliases)
                if (
                    states is not None
                    and used.isdisjoint(states)
                    and all(available(name, unit.cell) for name in part.reads)
                ):
                    moved.add(stmt)
                    continue
                used |= global_state_used(ast.Module(body=[stmt], type_ignores=[]), aliases)
                written |= _changed(part, hoisted_imports)
    return moved


def _changed(names: Names, modules: set[str]) -> set[str]:
    """What code binds or changes, except the modules it only uses (``plt.plot(x)``)."""
    return set(names.bound) | (set(names.mutated) - (modules - set(names.bound)))


def _needs(units: list[Unit]) -> dict[str, None]:
    return {m: None for u in units for m in u.needs}


def artifacts_name(units: tuple[Unit, ...]) -> str:
    """The script's name for :mod:`nb2flow.artifacts`: ``artifacts``, unless the notebook
    uses that name."""
    used = {n for u in units for n in (*u.names.all_reads, *u.names.writes)}
    return "artifacts" if "artifacts" not in used else unique("_nb2flow_artifacts", used)


def _task_body(
    task: Task, parts: list[str], artifacts: str, plotting: set[Unit] | None = None
) -> Task:
    """``task`` with the code its function runs: the cells' code, each cell's displayed value
    recorded (:func:`~nb2flow.analysis.display.record_shown`), markdown above its later cells
    kept as comments, and the names of that code (the cells' own: recording reads nothing
    of the notebook's). A cell of ``plotting`` followed by more code ends with
    :data:`~nb2flow.analysis.plan.CELL_END` (its figures are shown and closed there, as
    Jupyter does after each cell)."""
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
    kept = [(u, part) for u, part in zip(task.units, parts, strict=True) if part.strip()]
    code = "\n\n".join(
        (f"{markdown_comment(doc)}\n{part}" if i and (doc := "\n\n".join(u.markdown)) else part)
        + (f"\n{CELL_END}" if plotting and u in plotting and i + 1 < len(kept) else "")
        for i, (u, part) in enumerate(kept)
    )
    return replace(task, code=code, names=names, shows=tuple(shows))


class _Cutter:
    """Collects the imports, moved functions and configuration cut out of units, in notebook
    order."""

    def __init__(self, moved: set[ast.stmt], configuration: set[ast.stmt]) -> None:
        self.movable = moved
        self.configuration = configuration
        self.imports: dict[str, None] = {}  # ordered sets
        self.needs: dict[str, None] = {}
        self.moved: list[ModuleCode] = []
        self.configured: list[ModuleCode] = []

    def need(self, unit: Unit) -> None:
        self.needs.update(dict.fromkeys(unit.needs))

    def take(self, unit: Unit) -> str:
        """The unit's code without what moves; what moves is collected."""
        self.need(unit)
        defs = [s for s in unit.tree.body if s in self.movable]
        if defs:
            self.moved.append(ModuleCode("definitions", *_unit_of(unit, defs), ""))
        config = [s for s in unit.tree.body if s in self.configuration]
        if config:
            self.configured.append(ModuleCode("configuration", *_unit_of(unit, config, "\n"), ""))
        comments = {s: _moved_comment(unit.code, s) for s in config}
        return strip_statements(unit, self.imports, self.movable, comments)

    def take_from_setup(self, unit: Unit) -> str:
        """A setup cell's code without what only the module level may hold (``from
        __future__`` and ``*`` imports go to the top of the script) and its cell-level
        ``global`` statements (no-ops in a notebook); the rest runs in the setup function."""
        body = unit.tree.body
        drop = [
            s
            for s in body
            if isinstance(s, ast.Global)
            or (
                isinstance(s, ast.ImportFrom)
                and (s.module == "__future__" or any(a.name == "*" for a in s.names))
            )
        ]
        if not drop:
            return unit.code
        for stmt in drop:
            if isinstance(stmt, ast.ImportFrom):
                self.imports[import_text(unit, stmt)] = None
        return _without(unit, set(drop), {})


def _unit_of(unit: Unit, stmts: list[ast.stmt], sep: str = "\n\n\n") -> tuple[Unit, str]:
    """A unit of ``stmts`` (top-level statements of ``unit``), with their source text."""
    lines = unit.code.split("\n")
    text = sep.join("\n".join(lines[s.lineno - 1 : s.end_lineno]) for s in stmts)
    if any(_shares_lines(unit.tree.body, s) for s in stmts):
        text = "\n".join(ast.unparse(s) for s in stmts)
    tree = ast.Module(body=stmts, type_ignores=[])
    return Unit(unit.cell, text, tree, analyse(tree), CellTags(), (), None), text


def _moved_comment(code: str, stmt: ast.stmt) -> str:
    """The line left where a configuration statement was."""
    first = code.split("\n")[stmt.lineno - 1].strip()
    more = " ..." if (stmt.end_lineno or stmt.lineno) > stmt.lineno else ""
    return f"# nb2flow: moved to the flow's setup: {first}{more}"


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
    unit: Unit,
    imports: dict[str, None],
    moved: set[ast.stmt] | frozenset[ast.stmt] = frozenset(),
    comments: dict[ast.stmt, str] | None = None,
) -> str:
    """The unit's code without top-level imports (added to ``imports``), ``global``s,
    ``moved`` functions and the statements of ``comments`` (each replaced by its comment
    line); pinned imports (see :mod:`nb2flow.analysis.effects`) stay."""
    comments = comments or {}
    body = unit.tree.body
    drop = [
        s
        for s in body
        if (isinstance(s, ast.Import | ast.ImportFrom | ast.Global) and s not in unit.pins)
        or s in moved
        or s in comments
    ]
    if not drop:
        return unit.code
    for stmt in drop:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            imports[import_text(unit, stmt)] = None
    return _without(unit, set(drop), comments)


def import_text(unit: Unit, stmt: ast.Import | ast.ImportFrom) -> str:
    """An import of ``unit`` as it goes to the top of the script, ``# noqa`` when the notebook
    marked it so (an import for its side effects: the script keeps it unused)."""
    lines = unit.code.split("\n")[stmt.lineno - 1 : stmt.end_lineno]
    noqa = any("# noqa" in line for line in lines)
    return ast.unparse(stmt) + ("  # noqa: F401" if noqa else "")


def _shares_lines(body: list[ast.stmt], stmt: ast.stmt) -> bool:
    """Whether ``stmt`` (of ``body``) shares a line with its neighbour (``import os; x = 1``)."""
    i = body.index(stmt)
    start, end = stmt.lineno, stmt.end_lineno or stmt.lineno
    before = body[i - 1] if i > 0 else None
    after = body[i + 1] if i + 1 < len(body) else None
    return (before is not None and (before.end_lineno or before.lineno) >= start) or (
        after is not None and after.lineno <= end
    )


def _without(unit: Unit, dropped: set[ast.stmt], comments: dict[ast.stmt, str]) -> str:
    """The unit's code without the ``dropped`` top-level statements, those of ``comments``
    replaced by their comment line."""
    body = unit.tree.body
    lines = unit.code.split("\n")
    # Remove whole lines when every dropped statement has its lines to itself; otherwise
    # (``import os; x = 1``) fall back to the unparsed code of the rest.
    if any(_shares_lines(body, s) for s in body if s in dropped):
        return "\n".join(
            comments[s] if s in comments else ast.unparse(s)
            for s in body
            if s not in dropped or s in comments
        )
    keep = [True] * len(lines)
    for stmt in body:
        if stmt not in dropped:
            continue
        start, end = stmt.lineno, stmt.end_lineno or stmt.lineno
        for n in range(start - 1, end):
            keep[n] = False
        if stmt in comments:
            lines[start - 1], keep[start - 1] = comments[stmt], True
    return "\n".join(line for line, k in zip(lines, keep, strict=True) if k).strip("\n")
