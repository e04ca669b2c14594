"""The source map at the end of a script: which notebook cell and line each line of the
(formatted) script comes from, so the runtime can tell errors in the user's terms
(``notebooks/x.ipynb, cell 5, line 3``).

It is computed from the final text alone: every statement of the script that is a statement
of a cell (module level, or in a function body: tasks, the flow) is found by its syntax tree,
which formatting does not change; its nodes then give the lines, node by node. Generated
lines (decorators, signatures, returns) map to nothing. The format is in
:mod:`nb2flow.generated`, which the runtime reads.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from nb2flow.generated import Entry, format_source_map
from nb2flow.notebook.reader import Notebook


def _key(node: ast.AST) -> str:
    """A statement's tree, blind to how a formatter may rewrite docstrings.

    Multi-line strings are blanked in place for the dump and restored after it: copying
    every statement first made the source map most of a large conversion's time."""
    blanked = [
        (n, n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and "\n" in n.value
    ]
    try:
        for n, value in blanked:
            n.value = " ".join(value.split())
        return ast.dump(node, include_attributes=False)
    finally:
        for n, value in blanked:
            n.value = value


def _shape(node: ast.stmt) -> tuple[str, str | None]:
    """What a statement must share with a cell's before its whole tree is compared: its kind,
    and a definition's name (so the generated tasks and flow are never dumped whole)."""
    return type(node).__name__, getattr(node, "name", None)


def _candidates(tree: ast.Module) -> list[ast.stmt]:
    """The statements of a script that may come from a cell: module level, and the bodies of
    module-level functions whose definition is not itself a cell's (tasks, the flow, and the
    flow's setup function, named by ``@flow(..., setup=NAME)``)."""
    setups = {
        keyword.value.id
        for stmt in tree.body
        if isinstance(stmt, ast.FunctionDef)
        for deco in stmt.decorator_list
        if isinstance(deco, ast.Call)
        for keyword in deco.keywords
        if keyword.arg == "setup" and isinstance(keyword.value, ast.Name)
    }
    out: list[ast.stmt] = []
    for stmt in tree.body:
        out.append(stmt)
        if isinstance(stmt, ast.FunctionDef) and (stmt.decorator_list or stmt.name in setups):
            out.extend(_recorded_expression(s) for s in stmt.body)
    return out


def _recorded_expression(stmt: ast.stmt) -> ast.stmt:
    """A cell's last expression as the cell has it: the task records its value with
    ``artifacts.last_value((e), "cell N")`` (:func:`nb2flow.analysis.display.record_shown`)."""
    match stmt:
        case ast.Expr(
            value=ast.Call(
                func=ast.Attribute(value=ast.Name(), attr="last_value"),
                args=[value, ast.Constant(value=str(label))],
                keywords=[],
            )
        ) if label.startswith("cell "):
            return ast.copy_location(ast.Expr(value=value), value)
    return stmt


def _lines(script_stmt: ast.stmt, cell_stmt: ast.stmt) -> dict[int, int]:
    """Script line -> cell line, for the lines where a node of the statement starts."""
    out: dict[int, int] = {}
    for a, b in zip(ast.walk(script_stmt), ast.walk(cell_stmt), strict=False):
        la, lb = getattr(a, "lineno", None), getattr(b, "lineno", None)
        if la is not None and lb is not None and la not in out:
            out[la] = lb
    return out


def cell_statements(notebook: Path | Notebook) -> list[tuple[int, ast.stmt]]:
    """(cell number, statement) of every code cell that enters a flow, in notebook order
    (``notebook``: a path, or a notebook read already)."""
    from nb2flow.notebook.magics import to_python
    from nb2flow.notebook.reader import read_notebook
    from nb2flow.notebook.tags import parse_tags

    nb = notebook if isinstance(notebook, Notebook) else read_notebook(notebook)
    out: list[tuple[int, ast.stmt]] = []
    for cell in nb.cells:
        if cell.kind != "code" or parse_tags(cell.tags, "").role == "skip":
            continue
        try:
            tree = ast.parse(to_python(cell.source, "", nb.path.parent).code)  # as converted
        except SyntaxError:
            continue
        out.extend((cell.number, stmt) for stmt in tree.body)
    return out


def source_map(script: str, notebook: Path | Notebook, label: str) -> str:
    """The source map comment block for ``script`` (empty when nothing maps)."""
    try:
        tree = ast.parse(script)
    except SyntaxError:
        return ""
    pool: dict[str, list[int]] = defaultdict(list)  # statement key -> indexes in `cells`
    cells = cell_statements(notebook)
    shapes = set()
    for i, (_, stmt) in enumerate(cells):
        pool[_key(stmt)].append(i)
        shapes.add(_shape(stmt))
    used: set[int] = set()
    mapping: dict[int, tuple[int, int]] = {}  # script line -> (cell, line)
    last = -1
    for stmt in _candidates(tree):
        found = pool.get(_key(stmt)) if _shape(stmt) in shapes else None
        if not found:
            continue
        free = [i for i in found if i not in used]
        if not free:
            continue
        # the statement after the previous one matched, else the first one left
        pick = last + 1 if last + 1 in free else free[0]
        used.add(pick)
        last = pick
        cell, cell_stmt = cells[pick]
        for line, cell_line in _lines(stmt, cell_stmt).items():
            mapping.setdefault(line, (cell, cell_line))
    if not mapping:
        return ""
    entries: list[Entry] = []
    for line in sorted(mapping):
        cell, cell_line = mapping[line]
        if entries:
            start, count, c, first = entries[-1]
            if c == cell and start + count == line and first + count == cell_line:
                entries[-1] = (start, count + 1, c, first)
                continue
        entries.append((line, 1, cell, cell_line))
    return "\n" + format_source_map(label, entries)
