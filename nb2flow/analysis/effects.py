"""Which imports depend on files or import paths that earlier notebook code changes.

A notebook may write a module and import it (``%%writefile helper.py`` then
``from helper import f``), or extend ``sys.path`` and import from there. Such an import
must run where the notebook runs it, after the code it depends on: it is *pinned* (not
moved to the top of the script).

The rule, over code cells in notebook order (skipped cells do not run, so they count for
nothing), statement by statement:

* a statement *creates* module ``m`` when it writes a file named ``m.py`` or a file under
  a folder ``m/``: ``open(path, 'w'|'a'|'x'|'+...')`` (what ``%%writefile``/``%%file``
  become), ``Path(path).write_text/write_bytes(...)``, ``shutil.copy*(src, path)``, or a
  shell command (``!cmd``, ``%%bash``, ``subprocess``, ``os.system``) naming a ``.py``
  file (``!wget .../m.py``, ``!cp src/m.py .``);
* a statement *changes the import path* when it changes ``sys.path``, calls ``os.chdir``
  (``%cd``), ``site.addsitedir`` or ``importlib.invalidate_caches``;
* an import of a module created earlier, or of any module outside the standard library
  after the import path changed, is pinned to the cells that did it.

Paths are only seen when they are literals; a file the code names through a variable is
not seen (tag the cells, or keep the import in the writing cell).
"""

from __future__ import annotations

import ast
import posixpath
import sys
from collections.abc import Mapping, Set
from dataclasses import dataclass
from pathlib import PurePosixPath

_SHELL_CALLS = {"run", "call", "check_call", "check_output", "Popen", "system", "getoutput"}
_COPY_CALLS = {"copy", "copy2", "copyfile", "copytree", "move"}
_PATH_CHANGES = {"chdir", "addsitedir", "invalidate_caches"}


@dataclass(frozen=True)
class Pin:
    """An import statement that must stay where the notebook runs it."""

    cells: frozenset[int]  # the cells it depends on
    why: tuple[str, ...]  # file names, or "sys.path"


def module_names_of_path(path: str) -> set[str]:
    """Top-level module names a file at ``path`` may be imported as."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in (".", "")]
    if not parts:
        return set()
    names: set[str] = set()
    last = PurePosixPath(parts[-1])
    if last.suffix in (".py", ".pyc", ".so", ".pyd") or len(parts) == 1:
        names.add(last.name.split(".")[0])  # the module itself (with its folder on the path)
    if len(parts) > 1 and not PurePosixPath(path).is_absolute() and parts[0] != "..":
        names.add(parts[0])  # a package (or namespace package) in the working directory
    return {n for n in names if n.isidentifier()}


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _func_name(node: ast.Call) -> tuple[str | None, str]:
    """(owner, name) of the called function: ``sys.path.append`` -> ("sys.path", "append")."""
    func = node.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        try:
            return ast.unparse(func.value), func.attr
        except Exception:  # pragma: no cover - unparse handles every expression
            return None, func.attr
    return None, ""


def _written_paths(call: ast.Call) -> list[str]:
    owner, name = _func_name(call)
    args = call.args
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if name == "open" and (owner is None or owner in ("io", "codecs")):
        mode = _literal(args[1] if len(args) > 1 else keywords.get("mode"))
        path = _literal(args[0] if args else keywords.get("file"))
        if path and mode and any(c in mode for c in "wax+"):
            return [path]
    if name in ("write_text", "write_bytes") and isinstance(call.func, ast.Attribute):
        target = call.func.value
        if isinstance(target, ast.Call) and target.args:
            path = _literal(target.args[0])
            if path:
                return [path]
    if name in _COPY_CALLS and owner == "shutil" and len(args) > 1:
        path = _literal(args[1])
        if path:
            source = _literal(args[0]) or ""
            is_dir = path.endswith("/") or path in (".", "..")
            return [f"{path.rstrip('/')}/{PurePosixPath(source).name}" if is_dir else path]
    if name in _SHELL_CALLS and owner in ("subprocess", "os") and args:
        command = _literal(args[0])
        if command:
            return [w for w in command.replace(";", " ").split() if ".py" in w]
    return []


def _changes_path(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        owner, name = _func_name(node)
        if owner == "sys.path" or (name in _PATH_CHANGES and owner in ("os", "site", "importlib")):
            return True
    if isinstance(node, ast.Assign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(
            isinstance(sub, ast.Attribute) and ast.unparse(sub) == "sys.path"
            for target in targets
            for sub in ast.walk(target)
        )
    return False


#: names one of which code must read to write a file or change the import path as seen here
TRIGGERS = frozenset(
    {"open", "io", "codecs", "Path", "pathlib", "shutil", "subprocess", "os", "sys", "site"}
    | {"importlib"}
)


def pinned_imports(
    cells: list[tuple[int, ast.Module]], reads: Mapping[int, Set[str]] | None = None
) -> dict[ast.stmt, Pin]:
    """The top-level import statements of ``cells`` ((number, tree) in notebook order) that
    must stay in place, each with its :class:`Pin`. ``reads`` (cell -> every name its code
    reads) lets cells that read none of :data:`TRIGGERS` skip the search for writers."""
    created: dict[str, tuple[int, str]] = {}  # module -> (cell, file) that made it
    path_cells: set[int] = set()
    out: dict[ast.stmt, Pin] = {}
    for cell, tree in cells:
        search = reads is None or not TRIGGERS.isdisjoint(reads.get(cell, TRIGGERS))
        for stmt in tree.body:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                pin = _pin(stmt, created, path_cells) if created or path_cells else None
                if pin is not None:
                    out[stmt] = pin
                continue
            if not search:
                continue
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call):
                    for path in _written_paths(node):
                        for module in module_names_of_path(path):
                            created[module] = (cell, path)
                if _changes_path(node):
                    path_cells.add(cell)
    return out


def _pin(
    stmt: ast.Import | ast.ImportFrom, created: dict[str, tuple[int, str]], path_cells: set[int]
) -> Pin | None:
    if isinstance(stmt, ast.Import):
        modules = [alias.name for alias in stmt.names]
    else:
        modules = [stmt.module or "."] if not stmt.level else ["."]
    cells: set[int] = set()
    why: dict[str, None] = {}  # an ordered set
    for module in modules:
        top = module.split(".")[0]
        if top in created:
            cell, path = created[top]
            cells.add(cell)
            why[path] = None
        if path_cells and (top == "" or top not in sys.stdlib_module_names):
            cells |= path_cells
            why["sys.path"] = None
    return Pin(frozenset(cells), tuple(why)) if cells else None


def _normal(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def files_written(tree: ast.Module) -> set[str]:
    """Files the code writes, by literal path (normalised): ``open(p, 'w')``,
    ``Path(p).write_text(...)``, ``shutil.copy(src, p)``, shell commands naming ``.py`` files."""
    return {
        _normal(p)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for p in _written_paths(node)
    }


def files_named(tree: ast.Module) -> set[str]:
    """Every string literal of the code, as a normalised path: a task naming a file an
    earlier task writes (``pd.read_parquet('out.parquet')``) may read it."""
    return {
        _normal(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and 0 < len(node.value) < 4096
    }
