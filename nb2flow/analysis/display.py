"""What a notebook cell shows: the value Jupyter displays below it (its last expression),
and the variables that value names.

IPython displays the value of a cell's last statement when it is an expression and the
cell does not end with ``;``; ``!cmd`` (``subprocess.run(...)`` once translated) shows the
command's output, not a value. A cell *shows variables* when that expression is a name
(``rmse``), names (``rmse, r2``), or a ``print(...)`` / ``display(...)`` of names: the
converter's default for what the flow returns (:mod:`nb2flow.analysis.dataflow`).
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

#: calls whose text, not their value, is what the cell shows (they return None)
PRINTERS = frozenset({"print", "display"})


@dataclass(frozen=True)
class Shown:
    """The cell's last expression, whose value the notebook displayed."""

    stmt: ast.Expr
    names: tuple[str, ...]  # the variables it shows, in order (may be none)
    printed: bool  # a print()/display() call: it shows text itself, its value is None


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
