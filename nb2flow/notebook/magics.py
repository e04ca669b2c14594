"""IPython syntax (``%magics``, ``%%cell magics``, ``!shell``, ``x?``) -> plain Python.

Two stages, so that the generated script never needs IPython:

1. IPython's own input transformers (when IPython is importable) rewrite the cell into
   calls such as ``get_ipython().run_line_magic('time', 'f(x)')``; without IPython a careful
   line-based fallback produces the same calls.
2. Those calls are replaced, by their exact source span, with plain Python
   (``subprocess.run``, ``os.chdir``, the timed statement itself, ...) or, where no
   equivalent exists, a ``# nb2flow:`` comment and a warning naming the cell and line.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

#: quick test: does the cell possibly contain IPython-only syntax?
_MAYBE_IPYTHON = re.compile(r"^\s*[%!]|=\s*[%!]|\?\s*$", re.MULTILINE)

#: line magics that only affect the interactive session: dropped silently
_SESSION_ONLY = {
    "matplotlib",
    "pylab",
    "config",
    "load_ext",
    "reload_ext",
    "unload_ext",
    "autoreload",
    "aimport",
    "precision",
    "xmode",
    "pdb",
    "who",
    "whos",
    "who_ls",
    "lsmagic",
    "magic",
    "quickref",
    "history",
    "hist",
    "pinfo",
    "pinfo2",
    "pdef",
    "pdoc",
    "psource",
    "pfile",
    "colors",
    "pprint",
    "automagic",
    "autocall",
    "autoawait",
    "doctest_mode",
    "notebook",
    "clear",
    "cls",
    "page",
    "dhist",
    "dirs",
    "bookmark",
    "alias",
    "unalias",
    "rehashx",
    "tb",
    "connect_info",
    "qtconsole",
    "killbgscripts",
    "recall",
    "rerun",
    "logstart",
    "logstop",
    "logon",
    "logoff",
    "logstate",
    "env_list",
    "time_it_off",
    "load",
    "loadpy",
    "paste",
    "cpaste",
    "save",
    "edit",
    "ed",
    "macro",
    "pycat",
    "less",
    "more",
    "man",
    "store",
    "debug",
    "conda_env",
    "sc",
}
#: line magics whose argument is a statement to run (timing, profiling): keep the statement.
#: Each with the options that take a value (the others are flags): ``%timeit -n 10 f(x)``
#: (IPython; line_profiler's lprun; memory_profiler's memit and mprun).
_RUN_ARGUMENT = {
    "time": frozenset(),
    "timeit": frozenset("nrp"),
    "prun": frozenset("DlsT"),
    "lprun": frozenset("fmDTu"),
    "memit": frozenset("rti"),
    "mprun": frozenset("fT"),
}
#: of those, the ones that run their statement in the notebook's namespace (they bind what it
#: assigns) and the one whose value is the statement's (``t = %time f(x)``; the others give
#: None: ``%timeit`` times the code in a function of its own, binding nothing)
_VALUE_OF_STATEMENT = "time"
#: cell magics whose body is Python to run as is (in the notebook's namespace)
_CELL_PYTHON = {"time", "timeit", "capture", "prun", "memit", "lprun", "mprun"}
#: cell magics whose first line holds a statement run before the body (``%%prun -s time f()``)
_CELL_STATEMENT = {"prun", "lprun", "mprun", "memit"}
#: cell magics that only display something: the cell is dropped
_CELL_DISPLAY = {"html", "markdown", "latex", "javascript", "js", "svg", "md"}
_CELL_SHELL = {"bash": "/bin/bash", "sh": "/bin/sh", "script": None}
#: IPython's script magics for other interpreters: the cell goes to the program's stdin, in
#: a process of its own (``%%python`` binds nothing in the notebook)
_CELL_PROGRAM = {
    "python": "python",
    "python2": "python2",
    "python3": "python3",
    "pypy": "pypy",
    "perl": "perl",
    "ruby": "ruby",
}
#: IPython's default shell aliases (POSIX): ``%mkdir data`` runs ``mkdir data``
_ALIASES = {
    "mkdir": "mkdir",
    "rmdir": "rmdir",
    "mv": "mv",
    "rm": "rm",
    "cp": "cp",
    "cat": "cat",
    "ls": "ls -F",
    "ll": "ls -F -o",
    "lf": "ls -F -o | grep -v '^d'",
    "lk": "ls -F -o | grep ^l",
    "ldir": "ls -F -o | grep /$",
    "lx": "ls -F -o | grep ^-..x",
}
_INSTALLERS = {"pip", "conda", "mamba", "micromamba"}


@dataclass
class Translation:
    """The cell as plain Python, what it needs imported, and what was lost."""

    code: str
    imports: list[str] = field(default_factory=list)  # modules the new code uses
    warnings: list[str] = field(default_factory=list)
    changed: bool = False


#: a line that drives nb2flow from the notebook itself (``%load_ext nb2flow``, ``%nb2flow run``)
_NB2FLOW_LINE = re.compile(
    r"^[ \t]*(?:%(?:load_ext|reload_ext)[ \t]+nb2flow\b|%%?nb2flow\b)", re.MULTILINE
)


def is_nb2flow_cell(source: str) -> bool:
    """True when the cell holds a ``%nb2flow`` / ``%%nb2flow`` or ``%load_ext nb2flow`` line:
    such a cell drives nb2flow from the notebook, so the converter leaves it out of the flow
    (the flow must not convert and run itself)."""
    return "nb2flow" in source and _NB2FLOW_LINE.search(source) is not None


def nb2flow_lines_only(source: str) -> bool:
    """True when every line of the cell is an nb2flow line, a comment or blank."""
    return all(
        not line.strip() or line.lstrip().startswith("#") or _NB2FLOW_LINE.match(line)
        for line in source.splitlines()
    )


def has_ipython_syntax(source: str) -> bool:
    return bool(_MAYBE_IPYTHON.search(source))


def to_python(source: str, loc: str, folder: Path | None = None) -> Translation:
    """Translate one cell. ``loc`` (``file, cell N``) prefixes warnings; ``folder`` is where
    the notebook's kernel runs (its folder), where ``%run x.py`` finds the file to read what
    it binds (None: not read)."""
    if not has_ipython_syntax(source):
        return Translation(source)
    transformed = _ipython_transform(source)
    if transformed is None:
        transformed = fallback_transform(source)
    if "get_ipython()" not in transformed:
        return Translation(source)
    try:
        tree = ast.parse(transformed)
    except SyntaxError:
        return Translation(source)  # the syntax check reports it with the original lines
    result = Translation(transformed, changed=True)
    _Rewriter(transformed, tree, loc, result, folder).run()
    result.warnings.sort(key=_line_of)
    return result


def _line_of(message: str) -> int:
    m = re.search(r", line (\d+):", message)
    return int(m[1]) if m else 0


def _ipython_transform(source: str) -> str | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except Exception:  # IPython is optional: the fallback below needs nothing
        return None
    try:
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


_LINE_MAGIC = re.compile(r"^(?P<indent>[ \t]*)(?P<kind>%|!)(?P<rest>.*)$")
_ASSIGN_MAGIC = re.compile(
    r"^(?P<indent>[ \t]*)(?P<target>[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*"
    r"(?P<kind>%|!)(?P<rest>.*)$"
)
_HELP = re.compile(r"^(?P<indent>[ \t]*)(?P<obj>[A-Za-z_][\w.]*)\s*\?\??\s*$")


def fallback_transform(source: str) -> str:
    """Line-based stand-in for IPython's transformers (used when IPython is missing).

    It recognises magics at the start of a line only and does not look inside multi-line
    strings; IPython's transformers, when importable, are used instead.
    """
    lines = source.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        head = lines[first].lstrip()[2:]
        name, _, arg = head.partition(" ")
        body = "\n".join(lines[first + 1 :])
        return f"get_ipython().run_cell_magic({name!r}, {arg.strip()!r}, {body!r})\n"
    out = []
    for line in lines:
        m = _ASSIGN_MAGIC.match(line)
        if m and not line.rstrip().endswith("%"):
            call = _call(m["kind"], m["rest"], getoutput=True)
            out.append(f"{m['indent']}{m['target']} = {call}")
            continue
        m = _LINE_MAGIC.match(line)
        if m:
            out.append(m["indent"] + _call(m["kind"], m["rest"], getoutput=False))
            continue
        m = _HELP.match(line)
        if m:
            out.append(f"{m['indent']}get_ipython().run_line_magic('pinfo', {m['obj']!r})")
            continue
        out.append(line)
    return "\n".join(out)


def _call(kind: str, rest: str, *, getoutput: bool) -> str:
    if kind == "!":
        method = "getoutput" if getoutput else "system"
        return f"get_ipython().{method}({rest.lstrip('!').strip()!r})"
    name, _, arg = rest.strip().partition(" ")
    return f"get_ipython().run_line_magic({name!r}, {arg.strip()!r})"


def _edit(node: ast.expr | ast.stmt, text: str) -> tuple[int, int, int, int, str]:
    """The edit replacing ``node``'s source with ``text`` (a parsed node has its end)."""
    assert node.end_lineno is not None and node.end_col_offset is not None
    return (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, text)


def _ipython_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """``get_ipython().method('a', 'b')`` -> ``("method", ["a", "b"])``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
        and not owner.args
    ):
        return None
    args = []
    for arg in node.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return None
        args.append(arg.value)
    return node.func.attr, args


def _indented(lines: list[str]) -> list[str]:
    """``lines`` (a block of code) indented one level, to be a compound statement's body; the
    inside of a multi-line string is left as it is (its text would change)."""
    inside: set[int] = set()  # lines (from 0) that continue a multi-line string
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return [
        f"    {line}" if line.strip() and i not in inside else line for i, line in enumerate(lines)
    ]


def _has_statements(code: str) -> bool:
    """Whether ``code`` holds a statement (not only comments), to be a block's body."""
    try:
        return bool(ast.parse(code).body)
    except SyntaxError:  # reported with the cell's lines later; the block is not empty
        return bool(code.strip())


def _own_scope(lines: list[str]) -> list[str]:
    """Code run once in a function scope of its own: IPython times ``%timeit`` and
    ``%%timeit`` code inside a function, so what it assigns is bound nowhere after."""
    return ["def _nb2flow_timeit():", *_indented(lines), "", "", "_nb2flow_timeit()"]


def _without_options(name: str, arg: str) -> str:
    """``%timeit -n 10 -r3 -q f(x)`` -> ``f(x)``: the options of magic ``name`` (those of
    :data:`_RUN_ARGUMENT` taking a value take the next word, unless attached: ``-r3``)."""
    valued = _RUN_ARGUMENT.get(name, frozenset())
    code = arg.strip()
    while code.startswith("-") and not code.startswith("--"):
        option, _, code = code.partition(" ")
        if len(option) == 2 and option[1] in valued:
            _, _, code = code.strip().partition(" ")
        code = code.strip()
    return code


def _file_bindings(path: Path) -> tuple[list[str], list[str], bool] | None:
    """What running the Python file ``path`` binds at its top level, in order: (names it
    always binds, names it binds only under a condition (``if``, a loop), whether it star
    imports); None when it cannot be read or parsed. Dunder names (``__all__``...) are left
    out, as IPython's ``%run`` leaves out ``__name__`` and keeps the notebook's ``__file__``."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    always: dict[str, None] = {}
    sometimes: dict[str, None] = {}
    star = False

    def bind(name: str, sure: bool) -> None:
        if name.startswith("__") and name.endswith("__"):
            return
        (always if sure else sometimes)[name] = None

    def targets(node: ast.AST, sure: bool) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                bind(sub.id, sure)

    def block(body: list[ast.stmt], sure: bool) -> None:
        nonlocal star
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bind(stmt.name, sure)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name == "*":
                        star = True
                    else:
                        bind(alias.asname or alias.name.partition(".")[0], sure)
            elif isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
                if not (isinstance(stmt, ast.AnnAssign) and stmt.value is None):
                    for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                        targets(target, sure)
            elif isinstance(stmt, ast.If):
                main = _is_main_test(stmt.test)  # run_name='__main__': that block runs
                block(stmt.body, sure and main)
                block(stmt.orelse, False)
            elif isinstance(stmt, ast.For | ast.AsyncFor | ast.While):
                if not isinstance(stmt, ast.While):
                    targets(stmt.target, False)
                block(stmt.body, False)
                block(stmt.orelse, False)
            elif isinstance(stmt, ast.With | ast.AsyncWith):
                for item in stmt.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars, sure)
                block(stmt.body, sure)
            elif isinstance(stmt, ast.Try | ast.TryStar):
                block(stmt.body, sure)
                for handler in stmt.handlers:
                    block(handler.body, False)
                block(stmt.orelse, sure)  # (runs when the body did)
                block(stmt.finalbody, sure)
            elif isinstance(stmt, ast.Match):
                for case in stmt.cases:
                    for sub in ast.walk(case.pattern):  # captures: MatchAs, MatchStar, rest
                        captured = getattr(sub, "name", None) or getattr(sub, "rest", None)
                        if isinstance(captured, str):
                            bind(captured, False)
                    block(case.body, False)
            # names a walrus binds at the top level
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.NamedExpr):
                        targets(sub.target, False)
            if isinstance(stmt, ast.Delete):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        always.pop(target.id, None)

    block(tree.body, True)
    names = [n for n in always if not keyword.iskeyword(n)]
    return names, [n for n in sometimes if n not in always], star


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``"""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _words(arg: str) -> list[str]:
    """A magic's argument split as IPython's option parser does (quotes honoured)."""
    import shlex

    try:
        return shlex.split(arg)
    except ValueError:  # an unbalanced quote: the words as they are
        return arg.split()


def _comment(text: str) -> str:
    return "# nb2flow: " + " ".join(text.split())


class _Rewriter:
    """Replace each ``get_ipython()`` call in the transformed cell by plain Python."""

    def __init__(
        self, text: str, tree: ast.Module, loc: str, result: Translation, folder: Path | None
    ) -> None:
        self.lines = text.split("\n")
        self.tree = tree
        self.loc = loc
        self.result = result
        self.folder = folder
        self.edits: list[tuple[int, int, int, int, str]] = []  # line, col, end_line, end_col

    def warn(self, line: int, message: str) -> None:
        self.result.warnings.append(f"{self.loc}, line {line}: {message}")

    def need(self, module: str) -> None:
        if module not in self.result.imports:
            self.result.imports.append(module)

    def run(self) -> None:
        handled: set[int] = set()
        for parent in ast.walk(self.tree):
            for name in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(parent, name, None)
                if not isinstance(block, list):
                    continue
                for stmt in block:
                    if isinstance(stmt, ast.Expr) and _ipython_call(stmt.value):
                        handled.add(id(stmt.value))
                        alone = len(block) == 1 and not isinstance(parent, ast.Module)
                        self._statement(stmt, alone)
        for node in ast.walk(self.tree):
            if id(node) not in handled and isinstance(node, ast.Call) and _ipython_call(node):
                self._expression(node)
        self._apply()

    # -- statements -------------------------------------------------------------------
    def _statement(self, stmt: ast.Expr, alone: bool) -> None:
        call = _ipython_call(stmt.value)
        assert call is not None  # the caller found it
        method, args = call
        lines = self._statement_lines(method, args, stmt.lineno)
        if all(line.startswith("#") for line in lines) and alone:
            lines = ["pass  " + lines[0]] + lines[1:]
        indent = " " * stmt.col_offset
        text = ("\n" + indent).join(lines)
        self.edits.append(_edit(stmt, text))

    def _statement_lines(self, method: str, args: list[str], line: int) -> list[str]:
        if method == "system" and args:
            return [self._shell(args[0], line)]
        if method == "run_line_magic" and len(args) == 2:
            return self._line_magic(args[0], args[1], line, statement=True)
        if method == "run_cell_magic" and len(args) == 3:
            return self._cell_magic(args[0], args[1], args[2], line)
        expression = self._expression_text(method, args, line)
        return [expression]

    def _shell(self, command: str, line: int) -> str:
        words = command.split()
        if words and (
            words[0] in _INSTALLERS or words[:3] == ["python", "-m", "pip"] or words[0] == "apt"
        ):
            self.warn(line, f"`!{command}` dropped: install dependencies before running the flow")
            return _comment(f"removed install command: !{command}")
        self._warn_expansion(command, line, "!")
        self.need("subprocess")
        return f"subprocess.run({command!r}, shell=True)"

    def _warn_expansion(self, command: str, line: int, prefix: str) -> None:
        if "{" in command or "$" in command:
            self.warn(
                line,
                f"`{prefix}{command}`: IPython would expand {{...}} and $name here; "
                "the script runs the command text as written",
            )

    def _line_magic(self, name: str, arg: str, line: int, *, statement: bool) -> list[str]:
        if name in _RUN_ARGUMENT:
            code = _without_options(name, arg)  # "-n 10 -r 3 f(x)": options come first
            try:
                ast.parse(code)
            except SyntaxError:
                self.warn(line, f"`%{name} {arg}`: not understood; dropped")
                return [_comment(f"removed %{name} {arg}")]
            if name != "time":
                self.warn(line, f"`%{name}` runs its statement once in the script")
            if not code:
                return [_comment(f"removed %{name}")]
            return _own_scope(code.split("\n")) if name == "timeit" else [code]
        if name in _SESSION_ONLY:
            if name in ("debug", "store", "load", "paste", "cpaste", "edit", "ed", "macro"):
                self.warn(line, f"`%{name} {arg}`: interactive-only magic dropped")
            return [_comment(f"removed %{name} {arg}".strip())]
        if name in _INSTALLERS:
            self.warn(
                line, f"`%{name} {arg}` dropped: install dependencies before running the flow"
            )
            return [_comment(f"removed install command: %{name} {arg}")]
        if name in ("env", "set_env"):
            return self._env(arg, line, statement=True)
        if name == "cd":
            words = _words(arg)
            if words and words[0] == "-q":  # (quiet: prints nothing)
                words = words[1:]
            if words and words[0].startswith("-"):
                self.warn(line, f"`%cd {arg}`: directory history and bookmarks dropped")
                return [_comment(f"removed %cd {arg}")]
            self.need("os")
            path = " ".join(words) or "~"
            return [f"os.chdir(os.path.expanduser({path!r}))"]
        if name in _ALIASES:
            return [self._shell(f"{_ALIASES[name]} {arg}".strip(), line)]
        if name == "pwd":
            self.need("os")
            return ["os.getcwd()"]
        if name in ("sx", "system"):
            return [self._getoutput(arg, line)]
        if name == "run":
            return [self._run(arg, line)]
        self.warn(line, f"`%{name} {arg}`: unknown IPython magic dropped".replace(" `", "`"))
        return [_comment(f"removed %{name} {arg}".strip())]

    def _run(self, arg: str, line: int) -> str:
        """``%run x.py``: IPython runs the file as ``__main__`` in a namespace of its own,
        then copies its globals into the notebook's. When the file is there at conversion
        time, what it binds is read from it (its top-level bindings) and bound from the
        namespace ``runpy.run_path`` gives back; otherwise it is only run (warning)."""
        words = _words(arg)
        if not words or words[0].startswith("-"):
            self.warn(line, f"`%run {arg}` dropped: run that script before the flow")
            return _comment(f"removed %run {arg}")
        path, *argv = words
        if argv:
            self.warn(line, f"`%run {arg}`: command-line arguments are not passed")
        self.need("runpy")
        call = f"runpy.run_path({path!r}, run_name='__main__')"
        found = _file_bindings(self.folder / path) if self.folder and path.endswith(".py") else None
        if found is None:
            self.warn(
                line,
                f"`%run {arg}` runs the script, but the names it defines are not visible "
                "to the flow (the file was not there to read when converting); import them "
                "instead",
            )
            return call
        bound, conditional, star = found
        if conditional:
            self.warn(
                line,
                f"`%run {arg}`: {path} binds {', '.join(conditional)} only conditionally; "
                "the script does not bind them",
            )
        if star:
            self.warn(line, f"`%run {arg}`: the names {path} imports with `*` are not bound")
        if not bound:
            return call
        self.need("operator")
        getter = f"operator.itemgetter({', '.join(repr(n) for n in bound)})"
        return f"{', '.join(bound)} = {getter}({call})"

    def _env(self, arg: str, line: int, *, statement: bool) -> list[str]:
        text = arg.strip()
        if not text:
            return [_comment("removed %env")]
        m = re.match(r"^([A-Za-z_]\w*)\s*(?:=\s*|\s+)(.*)$", text)
        self.need("os")
        if m:
            return [f"os.environ[{m[1]!r}] = {m[2]!r}"]
        if statement:
            return [_comment(f"removed %env {text}")]
        return [f"os.environ.get({text!r})"]

    def _getoutput(self, command: str, line: int) -> str:
        self._warn_expansion(command, line, "!")
        self.need("subprocess")
        return (
            f"subprocess.run({command!r}, shell=True, capture_output=True, text=True)"
            ".stdout.splitlines()"
        )

    def _python(self, code: str) -> str:
        """A cell magic's body (Python, perhaps with magics of its own) as plain Python."""
        inner = to_python(code, self.loc, self.folder)
        for module in inner.imports:
            self.need(module)
        self.result.warnings.extend(inner.warnings)
        return inner.code.rstrip("\n")

    def _cell_magic(self, name: str, arg: str, body: str, line: int) -> list[str]:
        if name == "timeit":
            self.warn(line, "`%%timeit` runs its cell once in the script")
            setup = _without_options("timeit", arg)
            code = self._python(f"{setup}\n{body}" if setup else body)
            if not _has_statements(code):
                return [_comment("removed %%timeit")]
            return _own_scope(code.split("\n"))
        if name == "capture":
            captured = self._capture(arg, line)
            if captured is not None:
                code = self._python(body)
                lines = code.split("\n") if code.strip() else []
                return [captured, *_indented(lines if _has_statements(code) else [*lines, "pass"])]
        if name in _CELL_PYTHON:
            statement = _without_options(name, arg) if name in _CELL_STATEMENT else ""
            code = self._python(f"{statement}\n{body}" if statement else body)
            return code.split("\n") if code.strip() else [_comment(f"removed %%{name}")]
        if name in ("writefile", "file"):
            words = arg.split()
            append = "-a" in words or "--append" in words
            paths = [w for w in words if not w.startswith("-")]
            if not paths:
                self.warn(line, "`%%writefile` without a file name dropped")
                return [_comment("removed %%writefile")]
            mode = "a" if append else "w"
            return [
                f"with open({paths[0]!r}, {mode!r}) as _nb2flow_file:",
                f"    _nb2flow_file.write({body!r})",
            ]
        if name in _CELL_SHELL:
            executable = _CELL_SHELL[name]
            if name == "script":
                executable = arg.split()[0] if arg.split() else None
                if executable is None:
                    self.warn(line, "`%%script` without a program dropped")
                    return [_comment("removed %%script cell")]
            self.need("subprocess")
            return [f"subprocess.run({body!r}, shell=True, executable={executable!r})"]
        if name in _CELL_PROGRAM:
            self.need("subprocess")
            return [f"subprocess.run([{_CELL_PROGRAM[name]!r}], input={body!r}, text=True)"]
        if name in _CELL_DISPLAY:
            return [_comment(f"removed %%{name} cell (display only)")]
        self.warn(line, f"`%%{name}` cell magic has no Python equivalent; the cell is dropped")
        return [_comment(f"removed %%{name} {arg}".strip())] + [
            "# " + body_line for body_line in body.rstrip("\n").split("\n")
        ]

    def _capture(self, arg: str, line: int) -> str | None:
        """The ``with`` line for ``%%capture [--no-stdout] [--no-stderr] [--no-display]
        [var]``: the body runs in the notebook's namespace with its output held (not shown)
        and ``var`` bound to what was held, as IPython's ``CapturedIO``. It is
        ``nb2flow.artifacts.capture_output``, since the script does not need IPython. None
        (and a warning) when the options are not understood: the body runs as it is."""
        words = _words(arg)
        off = {"--no-stdout": "stdout", "--no-stderr": "stderr", "--no-display": "display"}
        options = ", ".join(f"{off[w]}=False" for w in words if w in off)
        rest = [w for w in words if w not in off]
        target = rest[0] if len(rest) == 1 else None
        if len(rest) > 1 or (
            target is not None and (not target.isidentifier() or keyword.iskeyword(target))
        ):
            self.warn(line, f"`%%capture {arg}` not understood: the cell runs uncaptured")
            return None
        self.need("nb2flow.artifacts")
        bound = f" as {target}" if target else ""
        return f"with nb2flow.artifacts.capture_output({options}){bound}:"

    # -- expressions ------------------------------------------------------------------
    def _expression(self, node: ast.Call) -> None:
        call = _ipython_call(node)
        assert call is not None  # the caller found it
        method, args = call
        text = self._expression_text(method, args, node.lineno)
        self.edits.append(_edit(node, text))

    def _expression_text(self, method: str, args: list[str], line: int) -> str:
        if method in ("getoutput", "system") and args:
            return self._getoutput(args[0], line)
        if method == "run_line_magic" and len(args) == 2:
            name, arg = args
            if name in ("sx", "system"):
                return self._getoutput(arg, line)
            if name == "pwd":
                self.need("os")
                return "os.getcwd()"
            if name == "env":
                return self._env(arg, line, statement=False)[0]
            if name in _RUN_ARGUMENT:
                code = _without_options(name, arg)
                try:
                    ast.parse(code, mode="eval")
                except SyntaxError:
                    pass
                else:
                    if name == _VALUE_OF_STATEMENT:
                        return f"({code})"
                    # run once; IPython gives None (without -o, -r: no result objects here)
                    self.warn(line, f"`%{name}` runs its statement once; its value is None")
                    return f"({code}, None)[1]"
        self.warn(line, f"IPython call get_ipython().{method}{tuple(args)!r} replaced by None")
        return "None"

    def _apply(self) -> None:
        # Edits never overlap (statements hold their calls); apply from the end so that
        # earlier offsets stay valid. Offsets are in UTF-8 bytes, as ast reports them.
        encoded = [line.encode("utf-8") for line in self.lines]
        for line, col, end_line, end_col, text in sorted(self.edits, reverse=True):
            head = encoded[line - 1][:col]
            tail = encoded[end_line - 1][end_col:]
            encoded[line - 1 : end_line] = [head + text.encode("utf-8") + tail]
        self.result.code = "\n".join(part.decode("utf-8") for part in encoded)
