"""What a notebook cell shows: the value Jupyter displays below it (its last expression),
and the variables that value names.

IPython displays the value of a cell's last statement when it is an expression and the
cell does not end with ``;``; ``!cmd`` (``subprocess.run(...)`` once translated) shows the
command's output, not a value. A cell *shows variables* when that expression is a name
(``rmse``), names (``rmse, r2``), or a ``print(...)`` / ``display(...)`` of names: the
converter's default for what the flow returns (:mod:`nb2flow.analysis.dataflow`).

In the script, a task cell's displayed value is recorded with the task run that computed it,
as the notebook showed it below the cell (:func:`record_shown`, with
:func:`nb2flow.artifacts.last_value`); ``print``/``display`` calls show themselves.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Collection
from dataclasses import dataclass

#: calls whose text, not their value, is what the cell shows (they return None)
PRINTERS = frozenset({"print", "display"})


@dataclass(frozen=True)
class Shown:
    """The cell's last expression, whose value the notebook displayed."""

    stmt: ast.Expr
    names: tuple[str, ...]  # the variables it shows, in order (may be none)
    printed: bool  # print()/display()/plt.show(): it shows something itself, its value is None


def shown(code: str, tree: ast.Module) -> Shown | None:
    """What the cell of ``code`` (parsed as ``tree``) displays, or None when it displays
    no value (its last statement is no expression, it ends with ``;``, or runs a shell
    command)."""
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    stmt = tree.body[-1]
    value = stmt.value
    if _is_shell_command(value) or _ends_with_semicolon(code):
        return None
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        if value.func.id in PRINTERS:
            names = [a.id for a in value.args if isinstance(a, ast.Name)]
            return Shown(stmt, tuple(dict.fromkeys(names)), printed=True)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        if value.func.attr == "show":  # plt.show(), fig.show(): the figure, not a value
            return Shown(stmt, (), printed=True)
    if isinstance(value, ast.Name):
        return Shown(stmt, (value.id,), printed=False)
    if isinstance(value, ast.Tuple | ast.List):
        names = [e.id for e in value.elts if isinstance(e, ast.Name)]
        return Shown(stmt, tuple(dict.fromkeys(names)), printed=False)
    return Shown(stmt, (), printed=False)


def _is_shell_command(value: ast.expr) -> bool:
    """``subprocess.run(...)``: what ``!cmd`` becomes (it shows output, not a value)."""
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "run"
        and isinstance(value.func.value, ast.Name)
        and value.func.value.id == "subprocess"
    )


def _ends_with_semicolon(code: str) -> bool:
    """IPython's rule: a cell whose last token (comments aside) is ``;`` displays nothing."""
    if ";" not in code:
        return False
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            ):
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def record_shown(
    part: str, value: Shown, cell: int, artifacts: str, changed: Collection[str] = ()
) -> str | None:
    """``part`` (the code of cell ``cell`` as its task runs it) with its displayed value
    recorded: the last expression ``e`` becomes ``<artifacts>.last_value(e, "cell N")``.
    None when there is nothing to record (a print or display call shows itself, a call
    changing one of the ``changed`` names, ``rows.append(x)``, is made for its effect) or
    ``part`` no longer ends with that expression."""
    if value.printed or any(isinstance(n, ast.Await) for n in ast.walk(value.stmt)):
        return None
    made = value.stmt.value
    if isinstance(made, ast.Call) and isinstance(made.func, ast.Attribute):
        receiver = made.func.value
        if isinstance(receiver, ast.Name) and receiver.id in changed:
            return None
    try:
        tree = ast.parse(part)
    except SyntaxError:
        return None
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr) or ast.dump(last.value) != ast.dump(value.stmt.value):
        return None
    expr = last.value
    assert expr.end_lineno is not None and expr.end_col_offset is not None
    start = _offset(part, expr.lineno, expr.col_offset)
    end = _offset(part, expr.end_lineno, expr.end_col_offset)
    text, label = part[start:end], repr(f"cell {cell}")
    call = f"{artifacts}.last_value({text}, {label})"
    if not _first_argument_is(call, expr):  # a bare tuple, a generator expression, ...
        call = f"{artifacts}.last_value(({text}), {label})"
    return part[:start] + call + part[end:]


def _first_argument_is(call: str, expr: ast.expr) -> bool:
    try:
        node = ast.parse(call, mode="eval").body
    except SyntaxError:
        return False
    return (
        isinstance(node, ast.Call)
        and len(node.args) == 2
        and ast.dump(node.args[0]) == ast.dump(expr)
    )


def _offset(text: str, lineno: int, col: int) -> int:
    """The index in ``text`` of line ``lineno`` (from 1), UTF-8 byte column ``col``."""
    # the line breaks Python's tokenizer knows (str.splitlines knows more: \x0c, \x1c, ...)
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)
    before = sum(len(line) for line in lines[: lineno - 1])
    return before + len(lines[lineno - 1].encode()[:col].decode())
