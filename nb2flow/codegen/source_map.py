"""The source map at the end of a script: which notebook cell and line each line of the
(formatted) script comes from, so the runtime can tell errors in the user's terms
(``notebooks/x.ipynb, cell 5, line 3``).

It is computed from the final text's syntax tree and the cells' statements as analysis parsed
them: every statement of the script that is a statement of a cell (module level, or in a
function body: tasks, the flow) is found by its tree, which formatting does not change; its
nodes then give the lines, node by node. Generated
lines (decorators, signatures, returns) map to nothing. The format is in
:mod:`nb2flow.generated`, which the runtime reads.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from nb2flow.generated import Entry, format_source_map

#: a list field's item that is a node (the node itself follows in the walk)
_CHILD = object()
#: node types whose ``value`` is a literal (``1``, ``True``, ``1.0``: equal in Python, told
#: apart by their type, as ``ast.dump`` does by their repr)
_LITERALS = (ast.Constant, ast.MatchSingleton)


def _walk(node: ast.AST) -> tuple[tuple[object, ...], list[int | None]]:
    """A statement's tree as one flat key, blind to how a formatter may rewrite docstrings,
    and the line each of its nodes starts on, both in the order of ``ast.walk``.

    The key lists every node in that (breadth-first) order: its type, then its fields (a
    child node as a marker), as many as its type has. The sequence determines the tree, so
    two statements have equal keys if and only if their trees are equal (what ``ast.dump``
    without attributes tells), multi-line strings compared with their whitespace collapsed.
    One pass gives both: the dump, a walk to blank the strings and two more to pair the
    lines were most of a large conversion's time."""
    key: list[object] = []
    lines: list[int | None] = []
    queue = [node]
    for n in queue:  # the queue grows while it is read: breadth-first, as ast.walk
        lines.append(getattr(n, "lineno", None))
        key.append(type(n))
        for name in n._fields:
            value = getattr(n, name, None)
            if isinstance(value, ast.AST):
                queue.append(value)
                value = _CHILD
            elif isinstance(value, list):
                items = []
                for item in value:
                    if isinstance(item, ast.AST):
                        queue.append(item)
                        items.append(_CHILD)
                    else:
                        items.append(item)
                value = tuple(items)
            elif name == "value" and isinstance(n, _LITERALS):
                if isinstance(value, str) and "\n" in value:
                    value = " ".join(value.split())
                value = (type(value), value)
            key.append(value)
    return tuple(key), lines


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


def _lines(script_lines: list[int | None], cell_lines: list[int | None]) -> dict[int, int]:
    """Script line -> cell line, for the lines where a node of the statement starts (the
    first node starting there, in walk order)."""
    out: dict[int, int] = {}
    for la, lb in zip(script_lines, cell_lines, strict=True):
        if la is not None and lb is not None and la not in out:
            out[la] = lb
    return out


def source_map(tree: ast.Module, statements: Sequence[tuple[int, ast.stmt]], label: str) -> str:
    """The source map comment block for the script parsed as ``tree`` (empty when nothing
    maps); ``statements``: (cell number, statement) of the cells, in notebook order
    (:attr:`nb2flow.analysis.plan.Plan.statements`)."""
    keys: list[tuple[object, ...]] = []
    starts: list[list[int | None]] = []
    pool: dict[tuple[object, ...], list[int]] = {}  # statement key -> its indexes, in order
    shapes = set()
    for i, (_, stmt) in enumerate(statements):
        key, lines = _walk(stmt)
        keys.append(key)
        starts.append(lines)
        pool.setdefault(key, []).append(i)
        shapes.add(_shape(stmt))
    cursor = dict.fromkeys(pool, 0)  # key -> where its first index not used yet may be
    used: set[int] = set()
    mapping: dict[int, tuple[int, int]] = {}  # script line -> (cell, line)
    last = -1
    for stmt in _candidates(tree):
        if _shape(stmt) not in shapes:
            continue
        key, lines = _walk(stmt)
        found = pool.get(key)
        if found is None:
            continue
        # the statement after the previous one matched, else the first one left
        pick = last + 1
        if pick >= len(keys) or pick in used or keys[pick] != key:
            at = cursor[key]
            while at < len(found) and found[at] in used:
                at += 1
            cursor[key] = at
            if at == len(found):
                continue
            pick = found[at]
        used.add(pick)
        last = pick
        cell = statements[pick][0]
        for line, cell_line in _lines(lines, starts[pick]).items():
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
