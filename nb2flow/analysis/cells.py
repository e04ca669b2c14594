"""Stage 1 of the converter: every code cell becomes a :class:`Unit` (tags parsed, magics
translated, syntax checked, names analysed, imports that must stay in place found)."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from nb2flow.analysis.display import Shown, shown
from nb2flow.analysis.effects import Pin, pinned_imports
from nb2flow.analysis.names import Names, analyse
from nb2flow.errors import Nb2flowError, where
from nb2flow.notebook.magics import is_nb2flow_cell, nb2flow_lines_only, to_python
from nb2flow.notebook.markdown import headings
from nb2flow.notebook.reader import Notebook
from nb2flow.notebook.tags import CellTags, parse_tags

_MODULE_STATEMENTS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)


@dataclass(frozen=True, eq=False)
class Unit:
    """One code cell, ready for grouping (never changed once built)."""

    cell: int
    code: str  # plain Python (magics translated)
    tree: ast.Module
    names: Names
    tags: CellTags
    markdown: tuple[str, ...]  # markdown cells directly above (since the previous code cell)
    heading: str | None  # the last heading in that markdown
    needs: tuple[str, ...] = ()  # modules the magic translation uses
    pins: Mapping[ast.stmt, Pin] = field(default_factory=dict)  # imports that stay in place

    @cached_property
    def shown(self) -> Shown | None:
        """The value the notebook displays below the cell (its last expression), if any."""
        return shown(self.code, self.tree)

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
            if tags.role or tags.options or tags.after or tags.outputs:
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
            tags = replace(tags, role="skip")
        if tags.role == "skip":
            # left out of the flow: it need not even be valid Python (EDA in another
            # language, a deliberate error)
            code, tree, names = "", ast.Module(body=[], type_ignores=[]), Names()
            needs: tuple[str, ...] = ()
        else:
            translation = to_python(cell.source, loc, nb.path.parent)
            warnings.extend(translation.warnings)
            code, needs = translation.code, tuple(translation.imports)
            tree = _parse(code, nb.path, cell.number)
            try:
                names = analyse(tree, source=code)
            except RecursionError:
                raise Nb2flowError(
                    f"{loc}: the cell's code is nested too deeply to analyse"
                ) from None
        found = headings(markdown)
        units.append(
            Unit(
                cell=cell.number,
                code=code,
                tree=tree,
                names=names,
                tags=tags,
                markdown=tuple(markdown),
                heading=found[-1] if found else None,
                needs=needs,
            )
        )
        markdown = []
    return _with_pins(units), warnings


def _with_pins(units: list[Unit]) -> list[Unit]:
    """The units, each with the imports of its own that must stay in place."""
    flow_units = [u for u in units if u.tags.role != "skip"]
    pins = pinned_imports(
        [(u.cell, u.tree) for u in flow_units], {u.cell: u.names.all_reads for u in flow_units}
    )
    if not pins:
        return units
    out = []
    for unit in units:
        own = {stmt: pins[stmt] for stmt in unit.tree.body if stmt in pins}
        out.append(replace(unit, pins=own) if own else unit)
    return out


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
