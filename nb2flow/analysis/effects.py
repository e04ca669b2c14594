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


#: process-wide state that library calls read and change (module path prefix -> the name
#: of the state). Tasks using the same state run one after the other, in notebook order.
GLOBAL_STATE = {
    "mlflow": "mlflow",  # tracking URI, experiment, active run, autolog
    "matplotlib.pyplot": "pyplot",  # the current figure and axes, style, rcParams
    "matplotlib.rcParams": "pyplot",
    "matplotlib.rc": "pyplot",
    "matplotlib.style": "pyplot",
    "matplotlib.use": "pyplot",
    "seaborn": "pyplot",  # draws on pyplot's current axes, sets its style
    "numpy.random": "numpy.random",  # the global generator (not default_rng & co, below)
    "random": "random",
    "os.chdir": "working directory",
    "os.getcwd": "working directory",
    "os.environ": "environment",
    "os.getenv": "environment",
    "os.putenv": "environment",
    "sys.path": "sys.path",
    "warnings": "warnings filters",
    "pandas.set_option": "pandas options",
    "pandas.reset_option": "pandas options",
    "pandas.options": "pandas options",
}
#: calls under those paths that make an object of their own (no process-wide state)
_OWN_STATE = {
    "numpy.random.default_rng",
    "numpy.random.Generator",
    "numpy.random.RandomState",
    "numpy.random.SeedSequence",
    "random.Random",
    "random.SystemRandom",
    "mlflow.MlflowClient",
}


#: calls that make a random generator of the notebook's own (``rng = np.random.default_rng(0)``)
GENERATOR_CONSTRUCTORS = frozenset(
    {
        "numpy.random.default_rng",
        "numpy.random.Generator",
        "numpy.random.RandomState",
        "random.Random",
        "sklearn.utils.check_random_state",
    }
)


def random_generators(trees: list[ast.Module], aliases: dict[str, str]) -> set[str]:
    """Names the code binds to a random generator of its own (``rng = np.random.
    RandomState(0)``): a library call given one (``train_test_split(X, random_state=rng)``,
    ``rng.shuffle`` inside ``sklearn``) draws from it, which changes it in place."""
    return {
        target.id
        for tree in trees
        for node in statements(tree)  # assignments are statements: no need to enter expressions
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and _dotted(node.value.func, aliases) in GENERATOR_CONSTRUCTORS
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def passed_to_calls(tree: ast.Module, names: set[str]) -> list[str]:
    """Those of ``names`` the code passes as an argument to a call (not of a builtin:
    ``print(rng)`` draws nothing), in order."""
    out: dict[str, None] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in _BUILTIN_CALLS:
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Starred):
                arg = arg.value
            if isinstance(arg, ast.Name) and arg.id in names:
                out[arg.id] = None
    return list(out)


_BUILTIN_CALLS = frozenset(dir(__import__("builtins")))


def may_hold_state(path: str) -> bool:
    """Could a name bound to ``path`` lead to one of the GLOBAL_STATE paths?"""
    return any(
        path == prefix or path.startswith(prefix + ".") or prefix.startswith(path + ".")
        for prefix in GLOBAL_STATE
    )


#: calls that only configure process-wide state (module path; ``mlflow.<flavour>.autolog``
#: too): the statement ``plt.style.use("ggplot")`` sets what later code reads, and returns
#: nothing anyone needs. Calls that also *use* the state (``plt.plot``) are not here.
CONFIGURATION_CALLS = frozenset(
    {
        "mlflow.set_tracking_uri",
        "mlflow.set_registry_uri",
        "mlflow.set_experiment",
        "mlflow.autolog",
        "matplotlib.use",
        "matplotlib.rc",
        "matplotlib.rcParams.update",
        "matplotlib.style.use",
        "matplotlib.pyplot.rc",
        "matplotlib.pyplot.rcParams.update",
        "matplotlib.pyplot.style.use",
        "matplotlib.pyplot.switch_backend",
        "seaborn.set",
        "seaborn.set_theme",
        "seaborn.set_style",
        "seaborn.set_context",
        "seaborn.set_palette",
        "numpy.random.seed",
        "random.seed",
        "os.environ.update",
        "os.environ.setdefault",
        "os.putenv",
        "warnings.filterwarnings",
        "warnings.simplefilter",
        "pandas.set_option",
        "pandas.reset_option",
        "sys.path.append",
        "sys.path.insert",
        "sys.path.extend",
    }
)
#: objects whose items or attributes configure process-wide state when assigned
#: (``plt.rcParams["font.size"] = 12``, ``os.environ["K"] = "v"``, ``pd.options.a.b = 1``)
CONFIGURATION_OBJECTS = (
    "matplotlib.rcParams",
    "matplotlib.pyplot.rcParams",
    "os.environ",
    "pandas.options",
)


def configured_state(stmt: ast.stmt, aliases: dict[str, str]) -> set[str] | None:
    """The process-wide states (:data:`GLOBAL_STATE`) a statement configures, when that is
    all it does: a call of :data:`CONFIGURATION_CALLS` as a statement, or an assignment
    into :data:`CONFIGURATION_OBJECTS`; None for any other statement."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        path = _dotted(stmt.value.func, aliases)
        if path is None:
            return None
        parts = path.split(".")
        autolog = parts[0] == "mlflow" and parts[-1] == "autolog" and len(parts) == 3
        if path not in CONFIGURATION_CALLS and not autolog:
            return None
    elif isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if not isinstance(target, ast.Subscript | ast.Attribute):
                return None
            path = _dotted(target.value if isinstance(target, ast.Subscript) else target, aliases)
            if path is None or not any(
                path == p or path.startswith(p + ".") for p in CONFIGURATION_OBJECTS
            ):
                return None
    else:
        return None
    return global_state_used(ast.Module(body=[stmt], type_ignores=[]), aliases) or None


def module_aliases(trees: list[ast.Module], modules: list[str]) -> dict[str, str]:
    """Name -> the module path an import binds it to (``plt`` -> ``matplotlib.pyplot``,
    ``seed`` -> ``numpy.random.seed``), over the import statements of ``trees``;
    ``modules`` are imported as themselves (what translated magics use)."""
    aliases = {m: m for m in modules}
    for tree in trees:
        for node in statements(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


#: the nodes that hold statements: a statement's own, a handler's, a case's
_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)


def statements(tree: ast.AST) -> list[ast.AST]:
    """``tree`` and its statements at every depth (and the except handlers and match cases
    holding some), in the order of ``ast.walk``: only expressions lie below the rest, so
    the walk need not enter them (imports are statements; expressions are most nodes)."""
    queue: list[ast.AST] = [tree]
    for node in queue:  # the queue grows while it is read: breadth-first, as ast.walk
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                queue.extend(item for item in value if isinstance(item, _BLOCKS))
    return queue


def global_state_used(tree: ast.Module, aliases: dict[str, str]) -> set[str]:
    """The process-wide states (:data:`GLOBAL_STATE`) the code uses, through the names
    ``aliases`` resolves (``plt.plot(x)``, ``np.random.seed(0)``, ``os.environ['K']``)."""
    used: set[str] = set()
    nodes = list(ast.walk(tree))
    # whole chains only: `random` in `random.Random(1)` is not a use of the module's state
    inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute)}
    for node in nodes:
        if id(node) in inner:
            continue
        path = _dotted(node, aliases)
        if path is None or any(path.startswith(own) for own in _OWN_STATE):
            continue
        for prefix, state in GLOBAL_STATE.items():
            if path == prefix or path.startswith(prefix + "."):
                used.add(state)
    return used


#: methods that draw on a pyplot figure whatever object they are called on (pandas'
#: ``df.plot()``, ``series.hist()``, an axes' ``ax.plot()``)
_PLOT_METHODS = frozenset({"plot", "hist", "boxplot", "imshow", "scatter", "bar", "barh"})


def draws_figures(
    tree: ast.Module, aliases: dict[str, str], states: Set[str] | None = None
) -> bool:
    """Whether code may leave pyplot figures open: it uses pyplot's state (``plt.plot``,
    ``sns.histplot``) or calls a plotting method (``df.plot()``, ``ax.hist(x)``).
    ``states``: :func:`global_state_used` of the code, when the caller has it already."""
    if "pyplot" in (global_state_used(tree, aliases) if states is None else states):
        return True
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and (
            node.func.attr in _PLOT_METHODS
            or (isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "plot")
        )
        for node in ast.walk(tree)
    )


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``np.random.seed`` -> ``numpy.random.seed`` for a name chain rooted at an import."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])
