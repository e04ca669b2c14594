"""Notebook -> plan: cells grouped into tasks, their inputs and outputs, and the task graph.

Stages, each a function of the previous one's result (as nbconvert chains preprocessors):

1. :func:`prepare` turns every cell into a :class:`Unit`: tags parsed, magics translated,
   syntax checked, names analysed.
2. :func:`group` decides what each code cell is (module level, setup, parameters, skipped,
   or part of a task) and groups task cells into :class:`Task` objects.
3. :func:`build_plan` follows the data through the tasks in notebook order and returns the
   plan: a ``networkx.DiGraph`` whose nodes are task names (attributes: the task's data)
   and whose edges carry the variable names that flow along them.

Graph attributes (``plan.graph``): ``notebook`` (path label), ``sha256``, ``flow_name``,
``split`` (the mode used), ``parameters``, ``module`` (module-level code blocks),
``imports`` (import statements for the top of the script), ``outputs`` (the final values
the flow returns: name -> task), ``order`` (task names in call order), ``warnings``.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2flow.analysis.effects import TRIGGERS, Pin, files_named, files_written, pinned_imports
from nb2flow.analysis.names import Names, analyse, declared_globals, sequence
from nb2flow.errors import Nb2flowError, where
from nb2flow.notebook.identifiers import identifier, unique
from nb2flow.notebook.magics import is_nb2flow_cell, nb2flow_lines_only, to_python
from nb2flow.notebook.reader import Notebook, read_notebook
from nb2flow.notebook.tags import CellTags, parse_tags

SPLIT_MODES = ("auto", "tags", "headings", "cells")

BUILTIN_NAMES = frozenset(dir(builtins)) | {
    "__name__",
    "__file__",
    "__doc__",
    "__builtins__",
    "__spec__",
    "__loader__",
    "__package__",
    "__annotations__",
}

#: names the generated script itself uses at module level
SCRIPT_NAMES = frozenset({"flow", "task", "run_cli", "nb2flow", "main"})

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
_MODULE_STATEMENTS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)


@dataclass
class Unit:
    """One code cell, ready for grouping."""

    cell: int
    code: str  # plain Python (magics translated)
    tree: ast.Module
    names: Names
    tags: CellTags
    markdown: list[str]  # markdown cells directly above (since the previous code cell)
    heading: str | None  # the last heading in that markdown
    needs: list[str] = field(default_factory=list)  # modules the magic translation uses
    pins: dict[ast.stmt, Pin] = field(default_factory=dict)  # imports that stay in place

    @property
    def empty(self) -> bool:
        return not self.tree.body

    @property
    def imports_only(self) -> bool:
        """Nothing but (hoisted) imports, or nothing at all."""
        return all(
            isinstance(s, ast.Import | ast.ImportFrom) and s not in self.pins
            for s in self.tree.body
        )

    @property
    def definitions_only(self) -> bool:
        """Imports, def and class only (a docstring-like string allowed)."""
        body = [
            s
            for s in self.tree.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]
        return bool(body) and all(isinstance(s, _MODULE_STATEMENTS) for s in body)


@dataclass
class Task:
    name: str
    cells: list[int]
    units: list[Unit]
    explicit: bool
    options: dict[str, Any] = field(default_factory=dict)
    after: list[tuple[str, int]] = field(default_factory=list)  # (task name, cell)
    doc: str = ""
    func: str = ""
    code: str = ""  # the body, hoisted imports removed
    names: Names = field(default_factory=Names)
    inputs: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # input -> task | "param" | "module"
    outputs: list[str] = field(default_factory=list)
    helper_reads: list[str] = field(default_factory=list)  # globals its notebook functions read
    declared: list[str] = field(default_factory=list)  # names the task body declares global


@dataclass
class Param:
    name: str
    default: str  # a literal, as source
    hint: str | None
    cell: int  # the last parameters cell setting it
    cells: list[int] = field(default_factory=list)  # every parameters cell setting it


@dataclass
class Grouping:
    intro: list[str]  # markdown cells above the first code cell: the flow's description
    parameters_doc: str  # markdown above the parameters cells
    tasks: list[Task]
    module: list[dict[str, Any]]  # {"cell", "kind": "definitions" | "setup", "code", "doc"}
    parameters: list[Param]
    skipped: list[int]
    split: str
    warnings: list[str]
    units: list[Unit]


# -- stage 1: cells -> units -----------------------------------------------------------------


def prepare(nb: Notebook) -> tuple[list[Unit], list[str]]:
    """Parse tags, translate magics, check syntax and analyse names of every code cell."""
    warnings: list[str] = list(nb.warnings)
    units: list[Unit] = []
    markdown: list[str] = []
    for cell in nb.cells:
        loc = where(nb.path, cell.number)
        if cell.kind == "markdown":
            if cell.source.strip():
                markdown.append(cell.source.strip())
            tags = parse_tags(cell.tags, loc)
            warnings.extend(tags.warnings)
            if tags.role or tags.options or tags.after:
                warnings.append(f"{loc}: tags on a markdown cell are ignored")
            continue
        if cell.kind != "code":
            continue
        tags = parse_tags(cell.tags, loc)
        warnings.extend(tags.warnings)
        if tags.role != "skip" and is_nb2flow_cell(cell.source):
            # %load_ext nb2flow / %nb2flow run drive nb2flow from the notebook: not flow code
            if not nb2flow_lines_only(cell.source):
                warnings.append(
                    f"{loc}: holds %nb2flow lines, so the whole cell is left out of the flow; "
                    "move its other code to a cell of its own"
                )
            tags.role = "skip"
        if tags.role == "skip":
            # left out of the flow: it need not even be valid Python (EDA in another
            # language, a deliberate error)
            translation, code, tree, names = None, "", ast.Module(body=[], type_ignores=[]), Names()
        else:
            translation = to_python(cell.source, loc)
            warnings.extend(translation.warnings)
            code = translation.code
            tree = _parse(code, nb.path, cell.number)
            try:
                names = analyse(tree)
            except RecursionError:
                raise Nb2flowError(
                    f"{loc}: the cell's code is nested too deeply to analyse"
                ) from None
        headings = [m.group(2).strip() for text in markdown for m in _HEADING.finditer(text)]
        units.append(
            Unit(
                cell=cell.number,
                code=code,
                tree=tree,
                names=names,
                tags=tags,
                markdown=markdown,
                heading=headings[-1] if headings else None,
                needs=translation.imports if translation else [],
            )
        )
        markdown = []
    flow_units = [u for u in units if u.tags.role != "skip"]
    pins = pinned_imports(
        [(u.cell, u.tree) for u in flow_units], {u.cell: u.names.all_reads for u in flow_units}
    )
    for unit in units:
        unit.pins = {stmt: pins[stmt] for stmt in unit.tree.body if stmt in pins}
    return units, warnings


#: words whose misuse only compile() reports (parsing accepts them): a cell containing one
#: is compiled too, to name the cell in the error; the rest are only parsed (faster)
_COMPILE_CHECKED = re.compile(
    r"\b(return|yield|await|async|nonlocal|global|break|continue|lambda|def|__debug__)\b"
)


def _parse(code: str, path: Path, cell: int) -> ast.Module:
    try:
        tree = ast.parse(code)
        if _COMPILE_CHECKED.search(code):
            compile(tree, f"cell {cell}", "exec")  # 'return'/'await'... outside a function
    except SyntaxError as exc:
        message = exc.msg
        if "await" in message:
            message += " (top-level await is not supported in a flow)"
        raise Nb2flowError(f"{where(path, cell, exc.lineno)}: syntax error: {message}") from None
    except (ValueError, RecursionError) as exc:  # null bytes, absurd nesting
        raise Nb2flowError(f"{where(path, cell)}: cannot parse the cell ({exc})") from None
    return tree


# -- stage 2: units -> tasks -----------------------------------------------------------------


def group(nb: Notebook, units: list[Unit], split: str = "auto") -> Grouping:
    """Decide the role of every code cell and group the task cells into tasks."""
    if split not in SPLIT_MODES:
        raise Nb2flowError(f"unknown split mode {split!r} (choose from {', '.join(SPLIT_MODES)})")
    path = nb.path
    warnings: list[str] = []
    if split == "auto":
        if any(u.tags.role == "task" for u in units):
            split = "tags"
        elif any(cell.kind == "markdown" and _HEADING.search(cell.source) for cell in nb.cells):
            split = "headings"
        else:
            split = "cells"

    tasks: list[Task] = []
    module: list[dict[str, Any]] = []
    parameters: dict[str, Param] = {}
    skipped: list[int] = []
    dynamic: set[str] = set()  # names bound by code that is not module level, so far
    in_flow: set[int] = set()  # cells placed in tasks, so far
    current: Task | None = None
    explicit_names: dict[str, int] = {}

    # The heading above cells that start no task (module level, skipped...) carries over
    # to the next task: it still names and starts that section (its text documents them).
    carried_heading: str | None = None
    # Markdown above the first code cell describes the notebook: the flow's docstring.
    # Other markdown documents the code cell below it: a task's docstring is the markdown
    # above its first cell; markdown above module-level code becomes comments there.
    intro = _intro(nb)
    parameters_doc: list[str] = []

    # Cells that leave nothing where they stand (empty, or imports only: those move to the
    # top of the script) pass their markdown on to the next task: it introduces that section.
    carried_markdown: list[str] = []

    def doc(unit: Unit) -> str:
        return "" if units and unit is units[0] else "\n\n".join(unit.markdown)

    def start(unit: Unit, name: str | None, *, explicit: bool) -> Task:
        task = Task(name=name or "", cells=[], units=[], explicit=explicit)
        task.doc = "\n\n".join(d for d in [*carried_markdown, doc(unit)] if d)
        tasks.append(task)
        return task

    for unit in units:
        loc = where(path, unit.cell)
        role = unit.tags.role
        heading = unit.heading or carried_heading
        # imports of files or import paths a task changes run in the flow, after that task
        module_level = (
            role is None
            and unit.definitions_only
            and not (set(unit.names.reads) & dynamic)
            and not any(pin.cells & in_flow for pin in unit.pins.values())
        )
        helper = role is None and (unit.empty or module_level)
        if helper or role in ("skip", "setup", "parameters"):
            carried_heading = heading
        if helper and doc(unit) and unit.imports_only:
            carried_markdown.append(doc(unit))
        if role == "skip":
            skipped.append(unit.cell)
            continue
        if role == "setup":
            reads = [r for r in unit.names.reads if r in dynamic]
            if reads:
                warnings.append(
                    f"{loc}: setup cell reads {_quote(reads)}, which task code defines; "
                    "setup code runs once at import, before any task"
                )
            written = {w for pin in unit.pins.values() if pin.cells & in_flow for w in pin.why}
            if written:
                warnings.append(
                    f"{loc}: setup cell imports what task code writes ({_quote(written)}); "
                    "setup code runs once at import, before any task"
                )
            module.append(
                {
                    "cell": unit.cell,
                    "kind": "setup",
                    "code": unit.code,
                    "unit": unit,
                    "doc": doc(unit),
                }
            )
            continue
        if role == "parameters":
            text = doc(unit)
            if _HEADING.sub("", text).strip():  # a bare "## Parameters" adds nothing
                parameters_doc.append(text)
            rest = _parameters(unit, parameters, path, warnings)
            dynamic.update(parameters)  # flow arguments, not module globals
            if rest is None:
                continue
            dynamic.update(rest.names.writes)
            current = start(rest, "derived_parameters", explicit=False)
            carried_heading, carried_markdown = None, []
            current.cells.append(unit.cell)
            in_flow.add(unit.cell)
            current.units.append(rest)
            continue
        if unit.empty and role != "task":
            continue
        if module_level:
            module.append(
                {
                    "cell": unit.cell,
                    "kind": "definitions",
                    "code": unit.code,
                    "unit": unit,
                    "doc": doc(unit),
                }
            )
            continue
        if (
            role == "task"
            or current is None
            or split == "cells"
            or (split == "headings" and heading is not None)
        ):
            explicit = unit.tags.task_name is not None
            name = unit.tags.task_name
            if explicit:
                if name in explicit_names:
                    raise Nb2flowError(
                        f"{loc}: task name {name!r} is already used by cell "
                        f"{explicit_names[name]} (task names must be unique)"
                    )
                explicit_names[name] = unit.cell  # type: ignore[index]
            elif heading:
                name = heading_name(heading, fallback=f"cell_{unit.cell}")
            else:
                name = f"cell_{unit.cell}"
            current = start(unit, name, explicit=explicit)
        carried_heading, carried_markdown = None, []
        current.cells.append(unit.cell)
        in_flow.add(unit.cell)
        current.units.append(unit)
        current.options.update(unit.tags.options)
        current.after.extend((name, unit.cell) for name in unit.tags.after)
        dynamic.update(unit.names.writes)

    # Unique names: explicit task:NAME first, then derived names made unique around them.
    taken = set(explicit_names)
    for task in tasks:
        if not task.explicit:
            task.name = unique(task.name, taken)

    return Grouping(
        intro=intro,
        parameters_doc="\n\n".join(parameters_doc),
        tasks=tasks,
        module=module,
        parameters=list(parameters.values()),
        skipped=skipped,
        split=split,
        warnings=warnings,
        units=units,
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


def _literal_hint(value: Any) -> str | None:
    for kind in (bool, int, float, str, list, dict, tuple, set):
        if type(value) is kind:
            return kind.__name__
    return None


def _parameters(
    unit: Unit, parameters: dict[str, Param], path: Path, warnings: list[str]
) -> Unit | None:
    """Take the literal assignments of a ``parameters`` cell; return the rest as a unit."""
    rest: list[ast.stmt] = []
    for stmt in unit.tree.body:
        target = value = annotation = None
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
        earlier = parameters[name].cells if name in parameters else []
        parameters[name] = Param(name, ast.unparse(value), hint, unit.cell, [*earlier, unit.cell])
    if not rest:
        return None
    warnings.append(
        f"{where(path, unit.cell)}: parameters cell holds code other than literal "
        "assignments; that code runs as task `derived_parameters`"
    )
    module = ast.Module(body=rest, type_ignores=[])
    code = "\n".join(ast.unparse(s) for s in rest)
    return Unit(
        cell=unit.cell,
        code=code,
        tree=module,
        names=analyse(code),
        tags=CellTags(),
        markdown=[],
        heading=None,
        needs=unit.needs,
        pins={stmt: pin for stmt, pin in unit.pins.items() if stmt in rest},
    )


_MISSING = object()


# -- stage 3: tasks -> plan ------------------------------------------------------------------


def markdown_comment(text: str) -> str:
    """Markdown as comment lines: every line (by any line break Python or ``splitlines``
    knows) starts with ``#``, unprintable characters dropped, so text can never become code."""
    lines = []
    for line in text.strip().splitlines():
        line = "".join(ch for ch in line if ch.isprintable() or ch == "\t").rstrip()
        lines.append(f"# {line}" if line else "#")
    return "\n".join(lines)


def _movable_functions(tasks: list[Task], module: list[dict[str, Any]]) -> set[ast.stmt]:
    """Functions of task cells that set globals (``def bump(): global counter; ...``) and
    need nothing of the task: they move to module level, so that every task (and every
    worker process) calls the one function writing the module's global, instead of a copy
    passed along as data with globals of its own.

    A function moves when it has no decorator, its name is bound by no other statement of
    the notebook, and every free name it reads (defaults included) is a builtin, a global it
    declares, or a module-level name (imports, definitions, setup code)."""
    module_level: set[str] = set()
    for block in module:
        module_level.update(block["unit"].names.writes)
    binders: dict[str, int] = {}
    units = [b["unit"] for b in module] + [u for t in tasks for u in t.units]
    for unit in units:
        for name in unit.names.bound:
            binders[name] = binders.get(name, 0) + 1
        for stmt in unit.tree.body:
            if isinstance(stmt, ast.Import | ast.ImportFrom) and stmt not in unit.pins:
                module_level.update(analyse(ast.Module(body=[stmt], type_ignores=[])).imported)
    candidates: dict[ast.FunctionDef | ast.AsyncFunctionDef, set[str]] = {}
    for task in tasks:
        for unit in task.units:
            if unit.tags.role == "parameters":
                continue  # its code is re-written: no source positions to cut at
            for stmt in unit.tree.body:
                if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                names = analyse(ast.Module(body=[stmt], type_ignores=[]))
                if stmt.decorator_list or not names.global_writes or binders[stmt.name] != 1:
                    continue
                declared = declared_globals(stmt)
                candidates[stmt] = {
                    r for r in names.reads if r not in BUILTIN_NAMES and r not in declared
                } - {stmt.name}
    # functions calling each other may move together
    moved = set(candidates)
    changed = True
    while changed:
        changed = False
        movable_names = module_level | {f.name for f in moved}
        for stmt in list(moved):
            if not candidates[stmt] <= movable_names:
                moved.discard(stmt)
                changed = True
    return set(moved)


def _hoist(tasks: list[Task], module: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Move top-level imports of task and definition cells to the script's import block,
    and the task functions :func:`_movable_functions` picks to module level.

    Returns (import statements, modules needed by translated magics). Setup cells keep
    their imports in place: their order may matter (``sys.path`` changes, ``matplotlib.use``).
    """
    imports: list[str] = []
    needs: list[str] = []
    moved = _movable_functions(tasks, module)
    moved_blocks: list[dict[str, Any]] = []

    def take(units_code: list[tuple[Unit, str]]) -> list[str]:
        out = []
        for unit, _ in units_code:
            for module_name in unit.needs:
                if module_name not in needs:
                    needs.append(module_name)
            defs = [s for s in unit.tree.body if s in moved]
            if defs:
                lines = unit.code.split("\n")
                text = "\n\n\n".join("\n".join(lines[s.lineno - 1 : s.end_lineno]) for s in defs)
                tree = ast.Module(body=defs, type_ignores=[])
                moved_blocks.append(
                    {
                        "cell": unit.cell,
                        "kind": "definitions",
                        "code": text,
                        "unit": Unit(unit.cell, text, tree, analyse(tree), CellTags(), [], None),
                        "doc": "",
                    }
                )
            out.append(_strip_statements(unit, imports, moved))
        return out

    for block in module:
        if block["kind"] == "definitions":
            block["code"] = take([(block["unit"], block["code"])])[0]
        else:
            for module_name in block["unit"].needs:
                if module_name not in needs:
                    needs.append(module_name)
    for task in tasks:
        parts = take([(u, u.code) for u in task.units])
        # markdown above a task's later cells stays with them, as comments
        task.code = "\n\n".join(
            f"{markdown_comment(doc)}\n{part}" if i and (doc := "\n\n".join(u.markdown)) else part
            for i, (u, part) in enumerate(zip(task.units, parts, strict=True))
            if part.strip()
        )
        # names of the body as it will run: re-analyse only the cells that lost statements
        task.names = sequence(
            [
                u.names if part is u.code else analyse(part)
                for u, part in zip(task.units, parts, strict=True)
            ]
        )
    module.extend(moved_blocks)
    module.sort(key=lambda block: block["cell"])  # notebook order (stable)
    return imports, needs


def _strip_statements(unit: Unit, imports: list[str], moved: set[ast.stmt] | None = None) -> str:
    """The unit's code without top-level imports (added to ``imports``), ``global``s and
    ``moved`` functions; pinned imports (see :mod:`nb2flow.analysis.effects`) stay."""
    body = unit.tree.body
    moved = moved or set()
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
            text = ast.unparse(stmt)
            if text not in imports:
                imports.append(text)
    lines = unit.code.split("\n")
    # Remove whole lines when every dropped statement has its lines to itself; otherwise
    # (``import os; x = 1``) fall back to the unparsed code of the rest.
    spans = [(s.lineno, s.end_lineno or s.lineno) for s in body]
    keep = [True] * len(lines)
    for i, stmt in enumerate(body):
        if stmt not in drop:
            continue
        start, end = spans[i]
        shares = (i > 0 and spans[i - 1][1] >= start) or (
            i + 1 < len(body) and spans[i + 1][0] <= end
        )
        if shares:
            return "\n".join(ast.unparse(s) for s in body if s not in drop)
        for n in range(start - 1, end):
            keep[n] = False
    return "\n".join(line for line, k in zip(lines, keep, strict=True) if k).strip("\n")


def build_plan(
    notebook: str | Path | Notebook,
    *,
    split: str = "auto",
    cache_all: bool = False,
    label: str | None = None,
) -> Any:
    """The plan of ``notebook`` as a ``networkx.DiGraph`` (see the module docstring)."""
    import networkx as nx

    nb = notebook if isinstance(notebook, Notebook) else read_notebook(notebook)
    path = nb.path
    units, warnings = prepare(nb)
    grouping = group(nb, units, split)
    warnings.extend(grouping.warnings)
    tasks = grouping.tasks
    imports, needs = _hoist(tasks, grouping.module)
    # Jupyter imports from the working directory ('' on sys.path); a script does not.
    imports_written_files = any(
        why != "sys.path" for unit in units for pin in unit.pins.values() for why in pin.why
    )
    if imports_written_files and "sys" not in needs:
        needs.append("sys")
    for task in tasks:
        if cache_all:
            task.options["cache"] = True

    # Names that exist at module level: imports, definitions and setup code.
    module_names: set[str] = set()
    module_objects: set[str] = set(needs)  # imports, def and class: global, never data
    for text in imports:
        module_names |= analyse(text).imported
    module_objects |= module_names
    star: list[str] = []
    for block in grouping.module:
        names = block["unit"].names
        # a function's `global x` binds x only when called: not a module-level name
        module_names.update(
            w for w in names.writes if w not in names.global_writes or w in names.definite
        )
        module_objects |= names.imported | names.defined
        star.extend(names.star_imports)
    for text in imports:
        star.extend(analyse(text).star_imports)
    # setup code calling a notebook function that sets globals (`h()` with `def h(): global
    # a`) binds them at module level
    effects = _function_effects(grouping.module, tasks, module_objects)
    for block in grouping.module:
        if block["kind"] != "definitions":
            for function in block["unit"].names.all_reads & effects.keys():
                module_names.update(effects[function][1])
    if star:
        warnings.append(
            f"{path}: `from {star[0]} import *` hides which names it defines; names no "
            "cell defines are assumed to come from it"
        )
    task_writes = {w for task in tasks for w in task.names.writes}
    task_writes |= {p.name for p in grouping.parameters}
    for block in grouping.module:
        unit = block["unit"]
        reads = unit.names.reads
        if block["kind"] == "definitions":
            # functions read globals when called: the calling task passes task values in
            reads = [r for r in reads if r not in task_writes]
        _warn_unknown(unit, reads, module_names, task_writes, star, path, warnings)

    params = {p.name: p for p in grouping.parameters}
    _add_argument_changes(tasks, grouping.module)
    _add_function_effects(tasks, grouping.module, module_objects)
    # Data flow in notebook order: the producer of each name's current version.
    producer: dict[str, str] = {name: "module" for name in module_names}
    readers: dict[str, list[str]] = {}
    # `a = b` makes two names for one object: changing it through one changes the other.
    # aliases: name -> the set of names sharing its object; mutator: name -> the task that
    # last changed its object through another name (later readers wait for it).
    aliases: dict[str, set[str]] = {}
    mutator: dict[str, str] = {}
    global_user: dict[str, str] = {}  # name -> the last task that set it as a module global
    # A parameter's value is the current version from its `parameters` cell on (a task
    # above that cell may set the same name, as papermill's injected cell comes later).
    pending = sorted((cell, p.name) for p in grouping.parameters for cell in p.cells)

    def parameters_until(cell: float) -> None:
        while pending and pending[0][0] <= cell:
            name = pending.pop(0)[1]
            producer[name] = "param"
            readers[name] = []
            mutator.pop(name, None)

    graph = nx.DiGraph()
    for index, task in enumerate(tasks):
        parameters_until(task.cells[0])
        graph.add_node(task.name)
        n = task.names
        mutated = [m for m in n.mutated if m not in module_objects]
        writes = [w for w in n.writes if w in n.bound or w in mutated or w in n.deleted]
        changed = set(writes)
        unknown: list[str] = []
        for name in n.reads:
            source = producer.get(name)
            if source is None:
                if name not in BUILTIN_NAMES:
                    unknown.append(name)
                continue
            if source == "module" and name not in changed:
                continue  # a global the task reads as is
            task.inputs.append(name)
            task.sources[name] = source
        for name in n.writes:
            # Written on some paths only: the old value must come in, as the notebook keeps it.
            # (`del name` reads it; an `except E as name` target is not data: Python deletes it)
            if name in n.bound and name not in n.definite and name not in n.deleted:
                source = producer.get(name)
                if source is not None and name not in task.sources:
                    task.inputs.append(name)
                    task.sources[name] = source
        if unknown:
            later = {w for t in tasks[index:] for w in t.names.writes}
            _warn_unknown(task, unknown, module_names, later, star, path, warnings)
        for name, source in task.sources.items():
            if source not in ("param", "module"):
                _edge(graph, source, task.name, "data", name)
            readers.setdefault(name, []).append(task.name)
        # Globals the notebook functions it calls read when they run (`def scale(v): return
        # v * factor`): the task sets them as module globals, from its inputs when another
        # task made the current version (see _function_effects).
        declared = list(n.global_writes)
        for name in task.helper_reads:
            source = producer.get(name)
            if name in n.bound:
                _add_once(declared, name)  # the task's own value is the one they see
            if source not in (None, "module", task.name):
                _add_once(declared, name)  # the current value comes in (it may be read first)
                if name not in task.sources:
                    task.inputs.append(name)
                    task.sources[name] = source
                    if source != "param":
                        _edge(graph, source, task.name, "data", name)
                    readers.setdefault(name, []).append(task.name)
        task.declared = declared
        # Tasks that set the same module global take turns, in notebook order: on the
        # threads runner they share the module.
        for name in declared:
            previous = global_user.get(name)
            if previous is not None and previous != task.name:
                _edge(graph, previous, task.name, "order", name)
            global_user[name] = task.name
        for name in n.reads:
            if mutator.get(name, task.name) != task.name:
                _edge(graph, mutator[name], task.name, "order", name)
        for name in mutated:
            for other in sorted(aliases.get(name, set()) - {name} - changed):
                if producer.get(other) in (None, "param", "module"):
                    continue
                _after_readers(graph, readers, other, task.name)
                mutator[other] = task.name
                readers[other] = []
        for name in n.bound:
            mutator.pop(name, None)
            group_ = aliases.pop(name, None)
            if group_ is not None:
                group_.discard(name)
        for target, source in n.copies:
            shared = aliases.setdefault(source, {source})
            shared.add(target)
            aliases[target] = shared
        for name in writes:
            if name in mutated or name in n.deleted:
                _after_readers(graph, readers, name, task.name)
            readers[name] = []
            producer[name] = task.name  # maybe unbound now: see _maybe_unbound
        graph.nodes[task.name]["index"] = index

    _order_file_access(graph, tasks)
    # An import that stays in place runs after the task writing its file (or changing
    # sys.path): an ordering edge, labelled with the file.
    cell_task = {cell: task.name for task in tasks for cell in task.cells}
    for task in tasks:
        for unit in task.units:
            for pin in unit.pins.values():
                for cell in sorted(pin.cells):
                    writer = cell_task.get(cell)
                    if writer is not None and writer != task.name:
                        for why in pin.why:
                            _edge(graph, writer, task.name, "order", why)

    by_name = {task.name: task for task in tasks}
    for task in tasks:
        for name, cell in task.after:
            if name not in by_name:
                raise Nb2flowError(
                    f"{where(path, cell)}: tag after:{name} names no task "
                    f"(tasks: {', '.join(by_name) or 'none'})"
                )
            if name == task.name:
                raise Nb2flowError(f"{where(path, cell)}: tag after:{name} names its own task")
            _edge(graph, name, task.name, "after", None)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        names = [a for a, _ in cycle] + [cycle[0][0]]
        cells = sorted({c for t in names for _, c in by_name[t].after})
        raise Nb2flowError(
            f"{where(path, cells[0] if cells else None)}: `after:` tags make a cycle: "
            + " -> ".join(names)
        )

    parameters_until(float("inf"))

    # Outputs: what a later task reads from this one, and the notebook's final values.
    finals: dict[str, str] = {}
    for name, source in producer.items():
        if source in ("module", "param"):
            continue
        task = by_name[source]
        n = task.names
        if name.startswith("_") or name in n.imported | n.defined | n.resources | n.loop_only:
            continue  # not data: private names, modules, functions, open files, loop variables
        finals[name] = source
    needed: dict[str, set[str]] = {t.name: set() for t in tasks}
    for task in tasks:
        for name, source in task.sources.items():
            if source in needed:
                needed[source].add(name)
    for name, source in finals.items():
        needed[source].add(name)
    for task in tasks:
        task.outputs = [w for w in task.names.writes if w in needed[task.name]]
    unbound_outputs, unbound_inputs = _maybe_unbound(tasks)

    _name_functions(tasks, module_names, params)
    order = list(nx.lexicographical_topological_sort(graph, key=lambda t: graph.nodes[t]["index"]))
    first_written: dict[str, None] = {}  # final values in the order the notebook first sets them
    for task in tasks:
        first_written.update(dict.fromkeys(w for w in task.names.writes if w in finals))
    final_order = list(first_written)
    for task in tasks:
        graph.nodes[task.name].update(
            name=task.name,
            func=task.func,
            cells=list(task.cells),
            doc=task.doc,
            code=task.code,
            inputs=list(task.inputs),
            sources=dict(task.sources),
            outputs=list(task.outputs),
            # names functions of this task set with `global`: the task body declares them
            # global too, so that it sees what those functions set, as the notebook does
            # and the globals the notebook functions it calls read (set from its inputs)
            globals=list(task.declared),
            # outputs the task may leave unbound (it returns UNSET for them), and inputs that
            # may come in as UNSET (the task unbinds them first)
            maybe_unbound=unbound_outputs[task.name],
            maybe_unbound_inputs=unbound_inputs[task.name],
            options=dict(task.options),
            after=[name for name, _ in task.after],
        )
    graph.graph.update(
        notebook=label if label is not None else str(path),
        sha256=nb.sha256,
        flow_name=path.stem,
        flow_doc="\n\n".join(grouping.intro),
        # the module docstring describes the script with the first of them (the title cell)
        flow_summary=grouping.intro[0] if grouping.intro else "",
        parameters_doc=grouping.parameters_doc,
        split=grouping.split,
        requested_split=split,
        cache_all=cache_all,
        parameters=grouping.parameters,
        module=[{k: v for k, v in b.items() if k != "unit"} for b in grouping.module],
        imports=imports,
        needs=needs,
        imports_written_files=imports_written_files,
        module_names=sorted(module_names),
        outputs={name: finals[name] for name in final_order},
        order=order,
        skipped=grouping.skipped,
        warnings=warnings,
        star_imports=star,
        used_names=sorted(
            module_names
            | {n for b in grouping.module for n in b["unit"].names.all_reads}
            | {n for t in tasks for n in t.names.all_reads | set(t.names.writes)}
        ),
    )
    return graph


def _maybe_unbound(tasks: list[Task]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per task, (outputs it may leave unbound, inputs that may arrive unbound).

    An output may be unbound when the task binds it on some paths only with no earlier
    value, deletes it on some path (``del x``, an ``except E as x`` target), or gets it as
    an input that may itself be unbound and does not surely bind it. Sources always come
    earlier in notebook order, so one pass in that order suffices."""
    outputs: dict[str, list[str]] = {}
    inputs: dict[str, list[str]] = {}
    for task in tasks:
        n = task.names
        unset_in = [
            name
            for name in task.inputs
            if name in outputs.get(task.sources[name], ())  # param and module are bound
        ]
        inputs[task.name] = unset_in
        outputs[task.name] = [
            o
            for o in task.outputs
            if o not in n.definite and (o not in task.sources or o in n.deleted or o in unset_in)
        ]
    return outputs, inputs


def _changed_parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[int | str]:
    """Positions and names of the parameters ``fn`` changes in place (``df['x'] = ...``,
    ``lst.append(v)``...), unless it rebinds them first (``df = df.copy()``)."""
    names = analyse(ast.Module(body=fn.body, type_ignores=[]))
    positional = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
    every = set(positional) | {a.arg for a in fn.args.kwonlyargs}
    changed = {m for m in names.mutated if m in every and m not in names.bound}
    return {positional.index(m) for m in changed if m in positional} | changed


def _add_argument_changes(tasks: list[Task], module: list[dict[str, Any]]) -> None:
    """``add_features(df)`` changes ``df`` when ``add_features`` changes its parameter:
    record it as an in-place change by the calling task."""
    functions: dict[str, set[int | str]] = {}
    trees = [b["unit"].tree for b in module] + [u.tree for t in tasks for u in t.units]
    for tree in trees:
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                changed = _changed_parameters(stmt)
                if changed:
                    functions.setdefault(stmt.name, set()).update(changed)
    if not functions:
        return
    for task in tasks:
        for unit in task.units:
            for node in ast.walk(unit.tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                    continue
                params = functions.get(node.func.id)
                if not params:
                    continue
                args: list[tuple[int | str, ast.expr]] = list(enumerate(node.args))
                args += [(k.arg, k.value) for k in node.keywords if k.arg]
                for key, arg in args:
                    if key in params and isinstance(arg, ast.Name):
                        for target in (task.names.writes, task.names.mutated):
                            if arg.id not in target:
                                target.append(arg.id)


def _function_effects(
    module: list[dict[str, Any]], tasks: list[Task], module_objects: set[str]
) -> dict[str, tuple[set[str], set[str]]]:
    """Notebook function name -> (globals it reads when called, globals it sets with
    ``global``), through the notebook functions it calls too.

    A module-level function reads every free name of its body from the module; a function
    a task cell defines is a closure over the task's names, so only the names it declares
    ``global`` count."""
    direct: dict[str, tuple[set[str], set[str], set[str]]] = {}
    trees = [(b["unit"].tree, True) for b in module]  # definitions and setup cells
    trees += [(u.tree, False) for t in tasks for u in t.units]
    # a cell holding just the def: its names are the def's (no second analysis)
    unit_names = {id(b["unit"].tree): b["unit"].names for b in module}
    unit_names.update({id(u.tree): u.names for t in tasks for u in t.units})
    for tree, module_level in trees:
        for stmt in tree.body:
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            only = len(tree.body) == 1
            names = unit_names[id(tree)] if only else analyse(ast.Module([stmt], []))
            free = {r for r in names.reads if r not in BUILTIN_NAMES and r != stmt.name}
            reads, writes, calls = direct.setdefault(stmt.name, (set(), set(), set()))
            reads |= (free if module_level else free & declared_globals(stmt)) - module_objects
            writes.update(names.global_writes)
            calls |= free
    effects: dict[str, tuple[set[str], set[str]]] = {}
    for name in direct:
        seen, stack = {name}, [name]
        reads, writes = set(), set()
        while stack:
            own_reads, own_writes, calls = direct[stack.pop()]
            reads |= own_reads
            writes |= own_writes
            for call in calls:
                if call in direct and call not in seen:
                    seen.add(call)
                    stack.append(call)
        effects[name] = (reads - set(direct), writes)
    return effects


def _add_function_effects(
    tasks: list[Task], module: list[dict[str, Any]], module_objects: set[str]
) -> None:
    """A task that calls (or passes on) a notebook function reads the globals the function
    reads, and changes the globals it sets with ``global``: ``bump()`` with ``def bump():
    global counter; counter += 1`` reads and writes ``counter``."""
    effects = _function_effects(module, tasks, module_objects)
    if not effects:
        return
    for task in tasks:
        n = task.names
        reads: set[str] = set()
        writes: set[str] = set()
        for function in n.all_reads & effects.keys():
            reads |= effects[function][0]
            writes |= effects[function][1]
        for name in sorted(writes):
            if name not in n.definite:
                _add_once(n.reads, name)
            n.all_reads.add(name)
            for target in (n.writes, n.bound, n.global_writes):
                _add_once(target, name)
        task.helper_reads = sorted(reads - writes)


def _order_file_access(graph: Any, tasks: list[Task]) -> None:
    """Files as data: a task naming (as a string literal) a file an earlier task writes
    waits for that writer; a task writing a file waits for the earlier tasks naming it
    (they may read the old contents) and for its earlier writer. Edges are labelled with
    the path. Only literal paths are seen (see :mod:`nb2flow.analysis.effects`)."""
    writes: dict[str, set[str]] = {}
    for task in tasks:
        paths: set[str] = set()
        for unit in task.units:
            if not TRIGGERS.isdisjoint(unit.names.all_reads):
                paths |= files_written(unit.tree)
        writes[task.name] = paths
    if not any(writes.values()):
        return
    writer: dict[str, str] = {}  # path -> the last task writing it
    named_by: dict[str, list[str]] = {}  # path -> tasks naming it since that write
    for task in tasks:
        named: set[str] = set()
        for unit in task.units:
            named |= files_named(unit.tree)
        for path in sorted(named):
            source = writer.get(path)
            if source is not None and source != task.name:
                _edge(graph, source, task.name, "order", path)
        for path in sorted(writes[task.name]):
            for other in [*named_by.get(path, []), writer.get(path)]:
                if other is not None and other != task.name:
                    _edge(graph, other, task.name, "order", path)
            writer[path] = task.name
            named_by[path] = []
        for path in named - writes[task.name]:
            named_by.setdefault(path, []).append(task.name)


def _add_once(items: list[str], name: str) -> None:
    if name not in items:
        items.append(name)


def _after_readers(graph: Any, readers: dict[str, list[str]], name: str, task: str) -> None:
    """``task`` changes ``name``'s object in place: every reader of the old version must
    finish first (ordering edges, no data)."""
    for reader in readers.get(name, []):
        if reader != task:
            _edge(graph, reader, task, "order", name)


def _edge(graph: Any, a: str, b: str, kind: str, var: str | None) -> None:
    rank = {"data": 0, "after": 1, "order": 2}
    if graph.has_edge(a, b):
        data = graph.edges[a, b]
        if var and var not in data["vars"]:
            data["vars"].append(var)
        if rank[kind] < rank[data["kind"]]:
            data["kind"] = kind
    else:
        graph.add_edge(a, b, kind=kind, vars=[var] if var else [])


def _warn_unknown(
    owner: Unit | Task,
    names: list[str],
    module_names: set[str],
    known: set[str],
    star: list[str],
    path: Path,
    warnings: list[str],
) -> None:
    if star:
        return
    units = owner.units if isinstance(owner, Task) else [owner]
    for name in names:
        if name in BUILTIN_NAMES or name in module_names or name == "display":
            continue  # (the script defines a stand-in for IPython's display: see codegen)
        cell = next((u.cell for u in units if name in u.names.all_reads), units[0].cell)
        hint = " (an IPython built-in)" if name in ("get_ipython", "In", "Out") else ""
        which = "no earlier cell defines" if name in known else "no cell defines"
        warnings.append(f"{where(path, cell)}: reads `{name}`{hint}, which {which}")


def _name_functions(tasks: list[Task], module_names: set[str], params: dict[str, Param]) -> None:
    """Task function names: the task name, unless it would shadow a name the code uses."""
    avoid = set(module_names) | set(params) | BUILTIN_NAMES | SCRIPT_NAMES
    for task in tasks:
        avoid |= task.names.all_reads | set(task.names.writes)
    taken: set[str] = set()
    for task in tasks:
        base = task.name if task.name not in avoid else f"{task.name}_task"
        task.func = unique(base, taken | avoid)
        taken.add(task.func)
