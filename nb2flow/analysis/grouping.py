"""Stage 2 of the converter: what each code cell is (module level, setup, parameters,
skipped, or part of a task), and the task cells grouped into :class:`Task` objects.

Markdown above the first code cell describes the notebook (the flow's docstring). Other
markdown documents the code cell below it: a task's docstring is the markdown above its
first cell; markdown above module-level code becomes comments there. Cells that leave
nothing where they stand (empty, or imports only: those move to the top of the script)
pass their markdown on to the next task, and the heading above cells that start no task
still names the next task.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from nb2flow.analysis.cells import Unit
from nb2flow.analysis.effects import files_written
from nb2flow.analysis.names import Names, analyse
from nb2flow.analysis.plan import Option, Param
from nb2flow.errors import Nb2flowError, where
from nb2flow.notebook.identifiers import identifier, unique
from nb2flow.notebook.markdown import has_heading, without_headings
from nb2flow.notebook.reader import Notebook
from nb2flow.notebook.tags import CellTags

SPLIT_MODES = ("auto", "tags", "headings", "cells")


@dataclass(frozen=True, eq=False)
class Task:
    """A group of cells that runs as one task (never changed once built: hoisting makes a
    new one with ``code`` and ``names`` of the body as it will run)."""

    name: str
    cells: tuple[int, ...]
    units: tuple[Unit, ...]
    explicit: bool  # named by a task:NAME tag
    options: Mapping[str, Option]
    after: tuple[tuple[str, int], ...]  # (task name, cell of the tag)
    doc: str
    code: str = ""  # the body as it will run (see nb2flow.analysis.hoisting)
    names: Names = field(default_factory=Names)  # the names of that body
    shows: tuple[int, ...] = ()  # the cells whose displayed value the body records


@dataclass(frozen=True, eq=False)
class ModuleCode:
    """Code outside the tasks: a definitions cell (imports, def, class), a ``setup`` cell,
    or the configuration statements moved out of a task cell (see hoisting)."""

    kind: Literal["definitions", "setup", "configuration"]
    unit: Unit
    code: str
    doc: str

    @property
    def cell(self) -> int:
        return self.unit.cell


@dataclass(frozen=True)
class Grouping:
    intro: tuple[str, ...]  # markdown cells above the first code cell: the flow's description
    parameters_doc: str  # markdown above the parameters cells
    tasks: tuple[Task, ...]
    module: tuple[ModuleCode, ...]
    parameters: tuple[Param, ...]
    skipped: tuple[int, ...]
    split: str
    warnings: tuple[str, ...]
    units: tuple[Unit, ...]


def group(nb: Notebook, units: list[Unit], split: str = "auto") -> Grouping:
    """Decide the role of every code cell and group the task cells into tasks."""
    if split not in SPLIT_MODES:
        raise Nb2flowError(f"unknown split mode {split!r} (choose from {', '.join(SPLIT_MODES)})")
    grouper = _Grouper(nb, units, _split_mode(nb, units, split))
    for unit in units:
        grouper.place(unit)
    return grouper.finish()


def _split_mode(nb: Notebook, units: list[Unit], split: str) -> str:
    """``auto``: by tags if any cell is tagged ``task``, else by headings if any, else by cells."""
    if split != "auto":
        return split
    if any(u.tags.role == "task" for u in units):
        return "tags"
    if any(cell.kind == "markdown" and has_heading(cell.source) for cell in nb.cells):
        return "headings"
    return "cells"


@dataclass
class _Draft:
    """A task while its cells are being collected."""

    name: str
    explicit: bool
    doc: str
    cells: list[int] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    options: dict[str, Option] = field(default_factory=dict)
    after: list[tuple[str, int]] = field(default_factory=list)

    def add(self, unit: Unit, cell: int | None = None) -> None:
        self.cells.append(unit.cell if cell is None else cell)
        self.units.append(unit)


class _Grouper:
    """The state of the walk over the units, with one method per cell role."""

    def __init__(self, nb: Notebook, units: list[Unit], split: str) -> None:
        self.path = nb.path
        self.units = units
        self.split = split
        self.intro = _intro(nb)
        self.warnings: list[str] = []
        self.drafts: list[_Draft] = []
        self.module: list[ModuleCode] = []
        self.parameters: dict[str, Param] = {}
        self.parameters_doc: list[str] = []
        self.skipped: list[int] = []
        self.dynamic: set[str] = set()  # names bound by code that is not module level, so far
        self.imported: set[str] = set()  # names bound by imports (they move to the top), so far
        self.in_flow: set[int] = set()  # cells placed in tasks, so far
        self.functions: set[str] = set()  # names of the notebook's def and class, so far
        self.bound: set[str] = set()  # names bound by any cell but by imports, so far
        self.current: _Draft | None = None
        self.explicit_names: dict[str, int] = {}  # task:NAME -> its cell
        # the heading and markdown above cells that start no task, for the next task
        self.carried_heading: str | None = None
        self.carried_markdown: list[str] = []

    def doc(self, unit: Unit) -> str:
        """The markdown documenting ``unit`` (the first cell's is the flow's intro)."""
        return "" if self.units and unit is self.units[0] else "\n\n".join(unit.markdown)

    def place(self, unit: Unit) -> None:
        if unit.tags.role != "skip":
            self.imported |= unit.names.imported
        role = unit.tags.role
        if role != "skip":
            self.functions |= unit.names.defined
        heading = unit.heading or self.carried_heading
        module_level = role is None and self.is_module_level(unit)
        helper = role is None and (unit.empty or module_level)
        if helper or role in ("skip", "setup", "parameters"):
            self.carried_heading = heading
        if helper and self.doc(unit) and unit.imports_only:
            self.carried_markdown.append(self.doc(unit))
        if role == "skip":
            self.skipped.append(unit.cell)
        elif role == "setup":
            self.setup(unit)
        elif role == "parameters":
            self.parameters_cell(unit)
        elif unit.empty and role != "task":
            pass
        elif module_level:
            self.module.append(ModuleCode("definitions", unit, unit.code, self.doc(unit)))
        else:
            self.task_cell(unit, heading)
        if role != "skip":
            self.bound |= set(unit.names.bound) - unit.names.imported

    def is_module_level(self, unit: Unit) -> bool:
        """Definitions that need nothing a task computes and bind their names first: a
        ``def add`` after a cell binding ``add`` (``add = lambda ...``, an earlier ``def add``)
        runs in the flow, so that the cells between see the earlier binding and the ones
        after see this one; imports of files or import paths a task changes run in the
        flow, after that task."""
        return (
            unit.definitions_only
            and self.dynamic.isdisjoint(unit.names.reads)
            and self.bound.isdisjoint(unit.names.defined)
            and not any(pin.cells & self.in_flow for pin in unit.pins.values())
        )

    def setup(self, unit: Unit) -> None:
        loc = where(self.path, unit.cell)
        # (the parameters set above it are the setup function's arguments)
        reads = [r for r in unit.names.reads if r in self.dynamic and r not in self.parameters]
        if reads:
            self.warnings.append(
                f"{loc}: setup cell reads {_quote(reads)}, which task code defines; "
                "setup code runs before any task"
            )
        written = {w for pin in unit.pins.values() if pin.cells & self.in_flow for w in pin.why}
        if written:
            self.warnings.append(
                f"{loc}: setup cell imports what task code writes ({_quote(written)}); "
                "setup code runs before any task"
            )
        self.module.append(ModuleCode("setup", unit, unit.code, self.doc(unit)))

    def parameters_cell(self, unit: Unit) -> None:
        text = self.doc(unit)
        if without_headings(text).strip():  # a bare "## Parameters" adds nothing
            self.parameters_doc.append(text)
        rest = _parameters(unit, self.parameters, self.path, self.warnings)
        self.dynamic.update(self.parameters)  # flow arguments, not module globals
        if rest is None:
            # no task spans a parameters cell: the cells below read the parameters' values
            self.current = None
            return
        self.dynamic.update(rest.names.writes)
        self.current = self.start(rest, "derived_parameters", explicit=False)
        self.current.add(rest, unit.cell)
        self.in_flow.add(unit.cell)

    def task_cell(self, unit: Unit, heading: str | None) -> None:
        starts = (
            unit.tags.role == "task"
            or self.current is None
            or self.split == "cells"
            or (self.split == "headings" and heading is not None)
        ) and not (unit.tags.role is None and self.only_shows(unit))
        if starts or self.current is None:
            name = self.task_name(unit, heading)
            self.current = self.start(unit, name, explicit=unit.tags.task_name is not None)
        else:
            self.carried_heading, self.carried_markdown = None, []
        current = self.current
        current.add(unit)
        self.in_flow.add(unit.cell)
        current.options.update(unit.tags.options)
        current.after.extend((name, unit.cell) for name in unit.tags.after)
        self.dynamic.update(self.task_values(unit))

    def task_values(self, unit: Unit) -> list[str]:
        """The names a task cell makes values of: not the modules it uses without binding
        them (``pd.read_parquet(...)``, ``plt.plot(x)`` leave ``pd`` and ``plt`` modules)."""
        modules = self.imported - set(unit.names.bound)
        return [w for w in unit.names.writes if w not in modules]

    def only_shows(self, unit: Unit) -> bool:
        """A cell that only shows something (``len(df_train), len(df_val)``,
        ``type(X_train)``, ``print(rmse)``, ``plt.plot(x); plt.show()``, ``!python -V``):
        expressions that bind, change and write nothing, and call none of the notebook's
        functions (they may set globals). Untagged, it joins the task above it (a task of
        its own would only ship that task's values to show them), unless that task is
        cached (a cache hit would show nothing)."""
        current = self.current
        if current is None or current.options.get("cache") or not unit.tree.body:
            return False
        if not self.functions.isdisjoint(unit.names.reads):
            return False
        if not all(isinstance(s, ast.Expr) for s in unit.tree.body):
            return False
        changed = set(unit.names.writes) - set(unit.needs)  # `!cmd` calls subprocess.run
        return not changed and not files_written(unit.tree)

    def task_name(self, unit: Unit, heading: str | None) -> str:
        """task:NAME (unique), else the heading, else ``cell_N``."""
        name = unit.tags.task_name
        if name is not None:
            if name in self.explicit_names:
                raise Nb2flowError(
                    f"{where(self.path, unit.cell)}: task name {name!r} is already used by "
                    f"cell {self.explicit_names[name]} (task names must be unique)"
                )
            self.explicit_names[name] = unit.cell
            return name
        if heading:
            return heading_name(heading, fallback=f"cell_{unit.cell}")
        return f"cell_{unit.cell}"

    def start(self, unit: Unit, name: str, *, explicit: bool) -> _Draft:
        doc = "\n\n".join(d for d in [*self.carried_markdown, self.doc(unit)] if d)
        draft = _Draft(name=name, explicit=explicit, doc=doc)
        self.drafts.append(draft)
        self.carried_heading, self.carried_markdown = None, []
        return draft

    def finish(self) -> Grouping:
        # Unique names: explicit task:NAME first, then derived names made unique around them.
        taken = set(self.explicit_names)
        tasks = tuple(
            Task(
                name=d.name if d.explicit else unique(d.name, taken),
                cells=tuple(d.cells),
                units=tuple(d.units),
                explicit=d.explicit,
                options=d.options,
                after=tuple(d.after),
                doc=d.doc,
            )
            for d in self.drafts
        )
        return Grouping(
            intro=tuple(self.intro),
            parameters_doc="\n\n".join(self.parameters_doc),
            tasks=tasks,
            module=tuple(self.module),
            parameters=tuple(self.parameters.values()),
            skipped=tuple(self.skipped),
            split=self.split,
            warnings=tuple(self.warnings),
            units=tuple(self.units),
        )


_NUMBERING = re.compile(r"^[\W_]*(?:\d+(?:\.\d+)+[.)]?\s+|(?:\d+|[ivxIVX]+|[A-Za-z])[.)]\s*)+")


def heading_name(heading: str, fallback: str) -> str:
    """Task name from a heading, its section numbering dropped: ``3.1 Train it`` -> ``train_it``."""
    stripped = _NUMBERING.sub("", heading.strip())
    return identifier(stripped or heading, fallback=fallback, lower=True)


def _intro(nb: Notebook) -> list[str]:
    """The markdown cells above the first code cell (title, introduction); none when the
    notebook has no code (then its markdown documents nothing the flow runs)."""
    texts: list[str] = []
    for cell in nb.cells:
        if cell.kind == "code":
            return texts
        if cell.kind == "markdown" and cell.source.strip():
            texts.append(cell.source.strip())
    return []


def _quote(names: list[str] | set[str]) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names) if n)


def _literal_hint(value: object) -> str | None:
    for kind in (bool, int, float, str, list, dict, tuple, set):
        if type(value) is kind:
            return kind.__name__
    return None


_MISSING = object()


def _parameters(
    unit: Unit, parameters: dict[str, Param], path: Path, warnings: list[str]
) -> Unit | None:
    """Take the literal assignments of a ``parameters`` cell into ``parameters``; return
    the rest of the cell as a unit of its own (None when nothing is left)."""
    rest: list[ast.stmt] = []
    for stmt in unit.tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        annotation: ast.expr | None = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value, annotation = stmt.target, stmt.value, stmt.annotation
        literal = _MISSING
        if isinstance(target, ast.Name) and value is not None:
            try:
                literal = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                literal = _MISSING
        if literal is _MISSING or not isinstance(target, ast.Name) or value is None:
            rest.append(stmt)
            continue
        name = target.id
        if name in parameters:
            warnings.append(
                f"{where(path, unit.cell)}: parameter `{name}` set again (cell "
                f"{parameters[name].cell}); the last value is the default"
            )
        hint = ast.unparse(annotation) if annotation is not None else _literal_hint(literal)
        earlier = parameters[name].cells if name in parameters else ()
        parameters[name] = Param(name, ast.unparse(value), hint, unit.cell, (*earlier, unit.cell))
    if not rest:
        return None
    warnings.append(
        f"{where(path, unit.cell)}: parameters cell holds code other than literal "
        "assignments; that code runs as task `derived_parameters`"
    )
    # The rest is re-written from its statements: parse that text again, so that the
    # statements' line numbers are those of the new code (hoisting cuts lines by them).
    code = "\n".join(ast.unparse(s) for s in rest)
    tree = ast.parse(code)
    pins = {
        new: unit.pins[old] for old, new in zip(rest, tree.body, strict=True) if old in unit.pins
    }
    return replace(
        unit,
        code=code,
        tree=tree,
        names=analyse(tree),
        tags=CellTags(),
        markdown=(),
        heading=None,
        pins=pins,
    )
