"""Save a side's final values for the check: one pickle per name, in a folder.

Self-contained on purpose (the standard library, and cloudpickle when installed): its text
is also run inside the notebook's kernel, whose Python may not have nb2flow installed.

Two things are recorded beyond what cloudpickle does by itself:

- functions the notebook (or the flow's script) defines carry their normalised source
  (``__nb2flow_source__``): the checker, in another process, has neither the kernel's cells
  nor the script, and compares functions by what they say, not by their bytecode (which
  differs when the converter moved a ``def`` into a task, for instance);
- a class whose module exists but was never imported (``numpy.rec``: ``np.recarray`` is
  reachable without it) is pickled by reference, after importing that module, rather than by
  value; a copy of ``recarray`` made by value breaks every method that calls ``super()``.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import linecache
import os
import pickle
import sys
import types
from typing import Any

#: where the notebook's own functions and classes live on each side: the kernel's __main__,
#: and the module the check imports the generated script as
USER_MODULES = frozenset({"__main__", "_nb2flow_checked_flow"})

SOURCE_ATTRIBUTE = "__nb2flow_source__"

_trees: dict[str, ast.Module | None] = {}


def source_of(func: types.FunctionType) -> str | None:
    """The function's definition as ``ast.unparse`` writes it (comments, layout and
    indentation gone), found from its code's file and first line; None when unknown."""
    recorded = getattr(func, SOURCE_ATTRIBUTE, None)
    if isinstance(recorded, str):
        return recorded
    code = func.__code__
    tree = _tree(code.co_filename)
    if tree is None:
        return None
    line = code.co_firstlineno
    found: list[ast.AST]
    if code.co_name == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == line]
        if len(lambdas) > 1:  # several lambdas on one line: the one holding the code
            at = next(
                (
                    (ln, col)
                    for ln, end_ln, col, end_col in code.co_positions()
                    if ln is not None and col is not None and (end_ln, end_col) > (ln, col)
                ),  # zero-width positions (RESUME) say nothing
                None,
            )
            lambdas = [n for n in lambdas if at is not None and _holds(n.body, at)] or lambdas
        found = list(lambdas)
    else:
        found = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.name == code.co_name
            and min([n.lineno, *(d.lineno for d in n.decorator_list)]) == line
        ]
    texts = {ast.unparse(n) for n in found}
    return texts.pop() if len(texts) == 1 else None


def _holds(node: ast.expr, at: tuple[int, int]) -> bool:
    end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
    return (node.lineno, node.col_offset) <= at <= end


def _tree(filename: str) -> ast.Module | None:
    if filename not in _trees:
        text = "".join(linecache.getlines(filename))
        tree = None
        if text:
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                tree = None
        _trees[filename] = tree
    return _trees[filename]


def _import_home(cls: type) -> None:
    """Import the module a class says it lives in, when its package is loaded but that
    module is not: cloudpickle then pickles the class by reference."""
    module = getattr(cls, "__module__", None)
    if (
        not isinstance(module, str)
        or module in sys.modules
        or module in USER_MODULES
        or module.split(".")[0] not in sys.modules
    ):
        return
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - not importable: cloudpickle copies it by value
        pass


def _by_value(func: types.FunctionType) -> bool:
    """Whether cloudpickle copies the function (rather than naming it): the notebook's and
    the script's own, lambdas and functions defined inside others."""
    return func.__module__ in USER_MODULES or "<" in func.__qualname__


def _remember_source(func: types.FunctionType) -> None:
    if SOURCE_ATTRIBUTE in func.__dict__:
        return
    try:
        source = source_of(func)
    except Exception:  # noqa: BLE001 - no source: the checker says it could not compare
        source = None
    if source is not None:
        func.__dict__[SOURCE_ATTRIBUTE] = source


def _pickler_class() -> type:
    try:
        import cloudpickle
    except ImportError:
        return pickle.Pickler

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, type):
                _import_home(obj)
            elif isinstance(obj, types.FunctionType) and _by_value(obj):
                _remember_source(obj)
            return super().reducer_override(obj)

    return Pickler


def dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _pickler_class()(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def dump(values: dict[str, Any], out: str) -> None:
    """Save each of `values` to ``out/<index>.pkl``, or ``out/<index>.err`` with the reason
    it cannot be pickled (so one open file does not hide the other values), and the
    name -> index map to ``out/index.json``."""
    index = {}
    for i, (name, value) in enumerate(values.items()):
        index[name] = i
        try:
            data = dumps(value)
        except Exception as exc:  # noqa: BLE001 - e.g. a C handle, or a deep structure
            kind = type(value)
            with open(os.path.join(out, f"{i}.err"), "w") as f:
                f.write(f"{kind.__module__}.{kind.__qualname__}\n")
                f.write(f"cannot be pickled: {type(exc).__name__}: {exc}"[:300])
            continue
        with open(os.path.join(out, f"{i}.pkl"), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
