"""``%load_ext nb2flow``: run the notebook being edited as a flow, in its own kernel.

    %nb2flow run [-p NAME=VALUE ...] [--task-runner R] [--cache] [PATH]
    %nb2flow inspect [PATH]
    %nb2flow convert [-o DIR] [--cache] [PATH]

Without ``PATH`` the magics work on the notebook this kernel runs: VS Code's
``__vsc_ipynb_file__`` when VS Code runs it, else as the Jupyter server's sessions tell it
(``/api/sessions``, matched by the kernel's id), else ``JPY_SESSION_NAME``. They read the
notebook as the front end has it: when the nb2flow JupyterLab / Notebook 7 extension is
there it hands the server the unsaved content as the cell starts (``/nb2flow/snapshot``),
else the file as last saved.

``run`` converts the notebook (the cells holding ``%nb2flow`` lines are left out), imports
the script fresh as a module of its own (every run sees the latest edit) and runs its flow
through ``run_cli`` in the notebook's folder, with the live panel. Tasks tagged ``cache``
(every task with ``--cache``) that did not change come from the cache: an edit re-runs only
its task and what depends on it. Every problem is one ``error: FILE, cell N, line M: ...``
line, never a traceback of nb2flow's own code.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import linecache
import os
import shlex
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from nb2flow.errors import Nb2flowError, where

#: seconds the kernel waits for the front end's snapshot of the notebook (extension present)
SNAPSHOT_WAIT = 3.0

USAGE = """\
%nb2flow run [-p NAME=VALUE ...] [--task-runner R] [--cache] [PATH]   run this notebook as a flow
%nb2flow inspect [PATH]                                              show the plan
%nb2flow convert [-o DIR] [--cache] [PATH]                           write the script"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> Any:  # noqa: D102
        raise Nb2flowError(f"%nb2flow: {message}\nusage:\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # noqa: D102
        if message:
            print(message, file=sys.stderr)
        raise _Done()


class _Done(Exception):
    """--help was printed: nothing more to do."""


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%nb2flow", description="nb2flow inside Jupyter", add_help=True)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run this notebook as a flow, with the live panel")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a flow parameter (repeat for several)",
    )
    run.add_argument(
        "--task-runner",
        "--executor",
        metavar="R",
        help="threads[:N] (default), processes[:N], sequential, dask, dask://HOST:PORT",
    )
    run.add_argument("--cache", action="store_true", help="cache every task, not only `cache`")
    run.add_argument("path", nargs="?", help="the notebook (default: this kernel's)")
    inspect = sub.add_parser("inspect", help="show how the notebook converts")
    inspect.add_argument("path", nargs="?")
    convert = sub.add_parser("convert", help="write the flow script, as `nb2flow convert`")
    convert.add_argument("-o", "--output-dir", default="converted_scripts", metavar="DIR")
    convert.add_argument("--cache", action="store_true")
    convert.add_argument("path", nargs="?")
    return p


def register(ipython: Any) -> None:
    """Register ``%nb2flow`` (``%load_ext nb2flow`` calls this).

    Loading is idempotent, so a re-run ``%load_ext nb2flow`` cell (the first line of every
    "Run as flow" cell) loads again, silently: IPython would print "The nb2flow extension
    is already loaded. To reload it, use: %reload_ext nb2flow" under the cell each time.
    To let it, every cell starts with nb2flow not counted among the loaded extensions."""
    ipython.register_magic_function(nb2flow_magic, magic_kind="line", magic_name="nb2flow")
    events = getattr(ipython, "events", None)
    if events is not None and hasattr(ipython, "extension_manager"):
        events.register("pre_run_cell", _forget_loaded)  # registered once (IPython checks)


def _forget_loaded(*_: Any) -> None:
    ip = _ipython()
    if ip is not None:
        ip.extension_manager.loaded.discard("nb2flow")


def nb2flow_magic(line: str) -> None:
    """%nb2flow run | inspect | convert: see ``%nb2flow --help``."""
    try:
        args = parser().parse_args(shlex.split(line))
        if args.command is None:
            print(USAGE)
            return
        {"run": run, "inspect": inspect, "convert": convert}[args.command](args)
    except _Done:
        return
    except Nb2flowError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ValueError as exc:  # shlex: unbalanced quotes
        print(f"error: %nb2flow: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- the notebook


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _kernel_id() -> str | None:
    """This kernel's id, from its connection file name (``kernel-<id>.json``)."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).stem
    except Exception:  # noqa: BLE001 - not in a kernel, or no connection file
        return None
    return name.removeprefix("kernel-") if name.startswith("kernel-") else None


def _server() -> dict[str, Any] | None:
    """The Jupyter server that started this kernel (its parent process), else None."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    servers = list(list_running_servers())
    for info in servers:
        if info.get("pid") == os.getppid():
            return info
    return servers[0] if len(servers) == 1 else None


def _get(info: dict[str, Any], path: str, timeout: float = 2.0) -> Any:
    url = info["url"].rstrip("/") + path
    req = urllib.request.Request(url)
    if info.get("token"):
        req.add_header("Authorization", f"token {info['token']}")
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - the local server
        return json.load(r)


def notebook_path(explicit: str | None = None) -> Path:
    """The notebook to work on: ``explicit``, else the one this kernel runs (see the module
    docstring for how it is found). Raises Nb2flowError saying what to pass when unknown."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise Nb2flowError(f"{path}: no such notebook")
        return path.resolve()
    vscode = _from_vscode()
    if vscode is not None and not vscode.is_file():
        raise Nb2flowError(
            f"{vscode}: VS Code's notebook is not saved as a file yet; save it, or pass "
            "its path: %nb2flow run path/to/notebook.ipynb"
        )
    for found in (vscode, _from_sessions(), _from_environment()):
        if found is not None and found.is_file():
            return found
    raise Nb2flowError(
        "cannot tell which notebook this kernel runs (no Jupyter server session names it); "
        "pass its path: %nb2flow run path/to/notebook.ipynb"
    )


def _own_server() -> tuple[dict[str, Any], Path] | None:
    """The Jupyter server whose session runs this kernel, and the session's notebook."""
    kernel = _kernel_id()
    info = _server() if kernel else None
    if info is None:
        return None
    try:
        sessions = _get(info, "/api/sessions")
    except (OSError, ValueError):
        return None
    for s in sessions:
        if (s.get("kernel") or {}).get("id") == kernel and s.get("path"):
            root = Path(info.get("root_dir") or info.get("notebook_dir") or ".")
            return info, (root / s["path"]).resolve()
    return None


def _from_sessions() -> Path | None:
    own = _own_server()
    return own[1] if own is not None else None


def _from_environment() -> Path | None:
    """``JPY_SESSION_NAME``, which jupyter_server sets for the kernels it starts (the path
    when the kernel started: a rename since is not followed)."""
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        path = Path(name)
        if not path.is_absolute():  # a session path relative to the server's root
            path = Path.cwd() / path.name
        if path.suffix == ".ipynb":
            return path.resolve()
    return None


def _from_vscode() -> Path | None:
    """VS Code's Jupyter extension starts kernels itself, with no Jupyter server and so no
    session, and sets ``__vsc_ipynb_file__`` (the notebook's absolute path) in the kernel's
    namespace: looked up in the shell's namespace, then on ``__main__`` (its usual home).
    When it is there, VS Code is the front end: it wins over a server's session (VS Code
    may run its kernels on a Jupyter server, whose session path is VS Code's own naming)."""
    ip = _ipython()
    candidates = [getattr(ip, "user_ns", None) or {}, vars(sys.modules.get("__main__", sys))]
    for namespace in candidates:
        value = namespace.get("__vsc_ipynb_file__")
        if isinstance(value, str) and value:
            return Path(value).expanduser().resolve()
    return None


def _cell_id() -> str | None:
    """The id of the cell being run, as the front end sent it with the execute request."""
    ip = _ipython()
    kernel = getattr(ip, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except TypeError:  # older ipykernel
        parent = kernel.get_parent() if kernel is not None else None
    meta = (parent or {}).get("metadata") or {}
    cell = meta.get("cellId")
    return cell if isinstance(cell, str) else None


def _snapshot(path: Path) -> dict[str, Any] | None:
    """The unsaved notebook the front-end extension handed the server for this execution
    (asked only of the server whose session runs this kernel: its front end is the one that
    hands snapshots over)."""
    cell = _cell_id()
    own = _own_server() if cell is not None else None
    if own is None:
        return None
    info = own[0]
    root = Path(info.get("root_dir") or info.get("notebook_dir") or ".").resolve()
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return None
    query = urllib.parse.urlencode({"path": rel, "cell": cell, "wait": SNAPSHOT_WAIT})
    try:
        answer = _get(info, f"/nb2flow/snapshot?{query}", timeout=SNAPSHOT_WAIT + 2)
    except (OSError, ValueError):
        return None
    nb = answer.get("notebook") if isinstance(answer, dict) else None
    return nb if isinstance(nb, dict) else None


def load(path: Path) -> Any:
    """The notebook as the user sees it: the front end's snapshot, else the saved file."""
    from nb2flow.notebook.reader import notebook_from_json, read_notebook

    data = _snapshot(path)
    if data is not None:
        return notebook_from_json(data, _label(path))
    nb = read_notebook(path)
    nb.path = Path(_label(path))
    return nb


def _label(path: Path) -> str:
    """How messages name the notebook: relative to the kernel's folder when inside it."""
    from nb2flow.codegen import source_label

    return source_label(path)


# --------------------------------------------------------------------------- the commands

_workdir: Path | None = None


def _module_dir() -> Path:
    """A folder of this kernel's own for the scripts it imports (removed at exit)."""
    global _workdir
    if _workdir is None:
        _workdir = Path(tempfile.mkdtemp(prefix="nb2flow-kernel-"))
        atexit.register(shutil.rmtree, _workdir, True)
    return _workdir


def _flow_type() -> type:
    import nb2flow

    return type(nb2flow.flow(lambda: None))


def import_flow(conversion: Any, folder: Path) -> Any:
    """Write the script and import it as a fresh module (the previous one is dropped), in
    the notebook's ``folder`` (its ``setup`` cells run there); returns its flow."""
    directory = _module_dir()
    target = directory / f"{conversion.module_name}.py"
    from nb2flow.codegen import atomic_write

    atomic_write(target, conversion.for_folder(directory).script)
    linecache.checkcache(str(target))
    linecache.cache.pop(str(target), None)
    name = f"_nb2flow_notebook_{conversion.module_name}"
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    back = os.getcwd()
    os.chdir(folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the notebook's own module-level code failed
        sys.modules.pop(name, None)
        raise Nb2flowError(_user_error(conversion, exc, target)) from None
    finally:
        os.chdir(back)
    try:  # task functions travel by value to worker processes: they cannot import the module
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except (ImportError, ValueError):
        pass
    flows = [v for v in vars(module).values() if isinstance(v, _flow_type())]
    if len(flows) != 1:
        raise Nb2flowError(f"{conversion.notebook}: the script has {len(flows)} flows, not one")
    return flows[0]


def _user_error(conversion: Any, exc: BaseException, script: Path) -> str:
    """``FILE, cell N, line M: Type: message`` for an error raised by the notebook's code in
    the script: the deepest frame in the script, found back in the cell it came from."""
    text = str(exc).strip().splitlines()
    line_text = ""
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == script:
            line_text = linecache.getline(str(script), tb.tb_lineno).strip()
        tb = tb.tb_next
    cell, line = cell_of(conversion, line_text)
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return f"{where(conversion.notebook, cell, line)}: {message}"


def cell_of(conversion: Any, line_text: str) -> tuple[int | None, int | None]:
    """The first code cell (and line in it) holding ``line_text``, else (None, None)."""
    if not line_text:
        return None, None
    nb = conversion.source
    if nb is None:
        from nb2flow.notebook.reader import read_notebook

        try:
            nb = read_notebook(conversion.notebook)
        except Nb2flowError:
            return None, None
    for cell in nb.cells:
        if cell.kind != "code":
            continue
        for i, text in enumerate(cell.source.splitlines(), 1):
            if text.strip() == line_text:
                return cell.number, i
    return None, None


def _parameters(flow: Any, pairs: list[str]) -> list[str]:
    """``-p NAME=VALUE`` -> the flow's own options (``--name=VALUE``), checked by name."""
    known = list(flow.signature.parameters)
    argv: list[str] = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise Nb2flowError(f"-p {pair}: expected NAME=VALUE")
        if name not in known:
            raise Nb2flowError(
                f"-p {pair}: the flow has no parameter {name!r} "
                f"(parameters: {', '.join(known) or 'none'})"
            )
        argv.append(f"--{name.replace('_', '-')}={value}")
    return argv


def _panel_will_show() -> bool:
    from nb2flow import settings
    from nb2flow.jupyter.panel import in_widget_kernel

    return settings.panel_enabled() and in_widget_kernel()


def run(args: argparse.Namespace) -> int:
    """``%nb2flow run``: convert, import fresh, run in the notebook's folder."""
    import nb2flow
    from nb2flow.codegen import convert_notebook

    path = notebook_path(args.path)
    nb = load(path)
    conversion = convert_notebook(nb, cache_all=args.cache, out_dir=_module_dir())
    flow = import_flow(conversion, path.parent)
    argv = _parameters(flow, args.param)
    if args.task_runner:
        argv += ["--task-runner", args.task_runner]
    if _panel_will_show():
        argv.append("--quiet")  # the panel shows the run; no progress lines beside it
    try:
        return nb2flow.run_cli(flow, argv, exit=False, prog="%nb2flow run", cwd=path.parent)
    except SystemExit as exc:  # argparse refused a value (its message is printed)
        return int(exc.code or 0)


def convert(args: argparse.Namespace) -> int:
    """``%nb2flow convert``: write the script, as ``nb2flow convert`` does."""
    from nb2flow.codegen import convert_notebook, write_script
    from nb2flow.commands.convert import print_warnings, summary

    path = notebook_path(args.path)
    nb = load(path)
    conversion = convert_notebook(nb, cache_all=args.cache, out_dir=args.output_dir)
    written = write_script(conversion, args.output_dir)
    print(f"{nb.path} -> {written}")
    print(summary(conversion))
    print_warnings(conversion.warnings)
    return 0


def inspect(args: argparse.Namespace) -> int:
    """``%nb2flow inspect``: the plan inline. An HTML output (inline SVG, no script), not a
    live widget: it stays in the saved notebook and renders wherever HTML does; a terminal
    IPython gets the text."""
    from nb2flow.extensions.cells import summarize

    path = notebook_path(args.path)
    summary = summarize(load(path))
    ip = _ipython()
    if getattr(ip, "kernel", None) is None:
        print(plan_text(summary))
        return 0
    from IPython.display import HTML, display

    display(HTML(plan_html(summary)))
    return 0


def plan_html(summary: dict[str, Any]) -> str:
    """The plan as HTML: tasks table, graph, parameters and problems naming cells."""
    from nb2flow.commands.convert import cells_text
    from nb2flow.extensions.cells import plan_svg
    from nb2flow.jupyter.render import esc

    rows = "".join(
        f"<tr><td><b>{esc(t['name'])}</b></td><td>{esc(cells_text(t['cells']))}</td>"
        f"<td>{esc(', '.join(t['inputs']) or '-')}</td>"
        f"<td>{esc(', '.join(t['outputs']) or '-')}</td>"
        f"<td>{esc(_options(t))}</td></tr>"
        for t in summary["tasks"]
    )
    problems = [
        (c["cell"], p) for c in summary["cells"] for p in c["problems"] if c["problems"]
    ] + [(None, p) for p in summary["problems"]]
    items = "".join(
        f'<li class="nb2f-{p["level"]}">{esc(p["level"])}: '
        + (f"cell {cell}: " if cell else "")
        + f"{esc(p['message'])}</li>"
        for cell, p in problems
    )
    params = [(c["cell"], c["parameters"]) for c in summary["cells"] if c["parameters"]]
    roles: dict[str, list[int]] = {}
    for c in summary["cells"]:
        if c["role"] in ("module", "setup", "skip", "nb2flow"):
            roles.setdefault(c["role"], []).append(c["cell"])
    what = {"module": "module level", "setup": "setup", "skip": "skipped", "nb2flow": "nb2flow"}
    extra = "".join(
        f"<div>{what[k]}: cells {', '.join(map(str, v))}</div>" for k, v in roles.items()
    )
    param_text = "".join(
        f"<div>parameters (cell {cell}): {esc(', '.join(names))}</div>" for cell, names in params
    )
    return (
        '<div class="nb2f-plan" style="background:#fff;color:#111827;font-family:system-ui,'
        'sans-serif;font-size:13px;padding:8px;border:1px solid #d1d5db">'
        f"<div><b>flow {esc(summary['flow'])}</b>: {len(summary['tasks'])} tasks, "
        f"{len(summary['edges'])} edges, {len(problems)} problems</div>"
        f"{param_text}{extra}"
        '<table class="nb2f-plan-tasks" style="border-collapse:collapse;margin:6px 0">'
        "<tr><th align=left>task</th><th align=left>cells</th><th align=left>inputs</th>"
        f"<th align=left>outputs</th><th align=left>options</th></tr>{rows}</table>"
        f'<div style="overflow:auto">{plan_svg(summary)}</div>'
        + (f'<ul class="nb2f-problems">{items}</ul>' if items else "")
        + "</div>"
    )


def _options(t: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in t["options"].items()]
    if t["after"]:
        parts.append("after=" + "/".join(t["after"]))
    return ", ".join(parts) or "-"


def plan_text(summary: dict[str, Any]) -> str:
    """The plan as text, for a terminal IPython."""
    from nb2flow.commands.convert import cells_text

    lines = [f"flow {summary['flow']}: {len(summary['tasks'])} tasks"]
    for t in summary["tasks"]:
        lines.append(
            f"  {t['name']}  {cells_text(t['cells'])}  in: {', '.join(t['inputs']) or '-'}"
            f"  out: {', '.join(t['outputs']) or '-'}  {_options(t)}"
        )
    for c in summary["cells"]:
        for p in c["problems"]:
            lines.append(f"{p['level']}: cell {c['cell']}: {p['message']}")
    for p in summary["problems"]:
        lines.append(f"{p['level']}: {p['message']}")
    return "\n".join(lines)
