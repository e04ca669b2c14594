"""Run the two sides of a check, each in its own process, and collect their final values.

The notebook runs in a real Jupyter kernel (nbclient), top to bottom, without its ``skip``
cells and with the check's parameters injected after its ``parameters`` cell (papermill's
convention); a last cell pickles the requested names to a directory. The flow runs in a
fresh Python process that imports the generated script (so ``run_cli`` does not run) and
calls the flow with the same parameters; its returned dict is pickled the same way.

Values are pickled with cloudpickle, one file per name, so one value that cannot be pickled
(an open file, a database connection) is reported on its own and does not hide the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2flow.errors import Nb2flowError

#: the values a run left behind: name -> ("value", obj, "") or ("error", why, type name)
Values = dict[str, tuple[str, Any, str]]


@dataclass
class SideResult:
    """What one side (notebook or flow) produced."""

    values: Values = field(default_factory=dict)
    error: str | None = None  # the run failed: one paragraph
    seconds: float = 0.0
    names: list[str] | None = None  # the flow: the names its returned dict holds


# --- saving (runs inside the kernel / the flow process) and loading --------------------------

# Code injected into the kernel and the flow process: saves each name of `values` to
# out/<index>.pkl, or out/<index>.err with the reason it could not be pickled.
_DUMP = r"""
def _nb2flow_dump(values, out):
    import json, os
    try:
        import cloudpickle as pickler
    except ImportError:
        import pickle as pickler
    index = {}
    for i, (name, value) in enumerate(values.items()):
        index[name] = i
        try:
            data = pickler.dumps(value)
        except BaseException as exc:
            kind = type(value)
            with open(os.path.join(out, f"{i}.err"), "w") as f:
                f.write(f"{kind.__module__}.{kind.__qualname__}\n")
                f.write(f"cannot be pickled: {type(exc).__name__}: {exc}"[:300])
            continue
        with open(os.path.join(out, f"{i}.pkl"), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
"""

# The flow process: import the script as a module (not __main__), find the flow, call it.
_FLOW_DRIVER = (
    "import json, os\n"
    + _DUMP
    + r"""
import importlib.util, pickle, sys
script, out, params_file = sys.argv[1:4]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
with open(params_file, "rb") as f:
    params = pickle.load(f)
spec = importlib.util.spec_from_file_location("_nb2flow_checked_flow", script)  # USER_MODULES
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
try:  # classes and functions the script defines travel by value: the checker cannot import it
    import cloudpickle
    cloudpickle.register_pickle_by_value(module)
except (ImportError, ValueError):
    pass
from nb2flow.runtime.api import Flow
flows = [v for v in vars(module).values() if isinstance(v, Flow)]
if len(flows) != 1:
    raise SystemExit(f"expected one flow in {script}, found {len(flows)}")
flow = flows[0]
unknown = sorted(set(params) - set(flow.signature.parameters))
if unknown:
    sys.stderr.write("NB2FLOW-CHECK-UNKNOWN-PARAMS " + json.dumps(unknown) + "\n")
    raise SystemExit(3)
result = flow(**params)
if not isinstance(result, dict):
    result = {"<return value>": result}
_nb2flow_dump(result, out)
"""
)


def load_values(out: Path) -> Values:
    """Read back what :data:`_DUMP` wrote."""
    index_file = out / "index.json"
    if not index_file.exists():
        return {}
    index = json.loads(index_file.read_text())
    values: Values = {}
    for name, i in index.items():
        err = out / f"{i}.err"
        if err.exists():
            kind, _, reason = err.read_text().partition("\n")
            values[name] = ("error", reason, kind)
            continue
        try:
            import cloudpickle as pickler
        except ImportError:  # pragma: no cover - cloudpickle is a core dependency
            import pickle as pickler
        try:
            values[name] = ("value", pickler.loads((out / f"{i}.pkl").read_bytes()), "")
        except Exception as exc:  # noqa: BLE001 - e.g. a class only the notebook defined
            reason = f"cannot be loaded here: {type(exc).__name__}: {exc}"[:300]
            values[name] = ("error", reason, "")
    return values


# --- the notebook --------------------------------------------------------------------------


def prepare_notebook(
    nb: Any, param_source: str, names: list[str], out: Path
) -> tuple[Any, list[int]]:
    """The notebook to execute: skip cells dropped, parameters injected, a dump cell added.

    Returns the new nbformat node and, for each of its cells, the original cell number
    (0 for cells the check added), so errors name the user's cell.
    """
    import copy

    import nbformat

    from nb2flow.notebook.magics import is_nb2flow_cell
    from nb2flow.notebook.tags import parse_tags

    new = copy.deepcopy(nb)
    cells, numbers = [], []
    injected = not param_source
    for number, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        role = parse_tags(cell.metadata.get("tags") or [], f"cell {number}").role
        if role == "skip" or is_nb2flow_cell(_source(cell)):
            continue  # left out of the flow (a %nb2flow cell would run the flow itself)
        cells.append(_clean(cell))
        numbers.append(number)
        if role == "parameters" and not injected:
            cells.append(nbformat.v4.new_code_cell(param_source))
            numbers.append(0)
            injected = True
    if not injected:  # no parameters cell: parameters go first, as papermill does
        cells.insert(0, nbformat.v4.new_code_cell(param_source))
        numbers.insert(0, 0)
    dump = (
        _DUMP
        + f"_nb2flow_dump({{_n: globals()[_n] for _n in {names!r} if _n in globals()}}, "
        + f"{str(out)!r})\ndel _nb2flow_dump"
    )
    cells.append(nbformat.v4.new_code_cell(dump))
    numbers.append(0)
    new.cells = cells
    return new, numbers


def _source(cell: Any) -> str:
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else str(source)


def _clean(cell: Any) -> Any:
    import nbformat

    source = cell.get("source") or ""
    if isinstance(source, list):  # the file's form: a list of lines
        source = "".join(source)
    fresh = nbformat.v4.new_code_cell(source)
    fresh.metadata = dict(cell.metadata)
    return fresh


def require_jupyter(kernel_name: str = "python3") -> None:
    """Fail with a clear message when the tools to run a notebook, or the kernel, are missing."""
    for module in ("nbclient", "jupyter_client", "ipykernel"):
        try:
            __import__(module)
        except ImportError:
            raise Nb2flowError(
                f"nb2flow check runs the notebook in a Jupyter kernel and needs {module}: "
                "pip install 'nb2flow[jupyter]'"
            ) from None
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise _no_kernel(kernel_name) from None


def _no_kernel(name: str) -> Nb2flowError:
    return Nb2flowError(
        f"no Jupyter kernel named {name!r}; install one with "
        f"`python -m ipykernel install --user --name {name}` or pass --kernel"
    )


def run_notebook(
    nb: Any,
    numbers: list[int],
    out: Path,
    *,
    cwd: Path,
    timeout: float,
    kernel_name: str,
    label: str,
) -> SideResult:
    """Execute the prepared notebook in a fresh kernel; collect what the dump cell saved."""
    require_jupyter(kernel_name)
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(cwd)}},
        allow_errors=False,
        record_timing=False,
    )
    running: dict[str, int | None] = {"index": None}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        running["index"] = cell_index

    client.on_cell_start = on_cell_start
    env = dict(os.environ, NB2FLOW_PANEL="off", MPLBACKEND=os.environ.get("MPLBACKEND", "Agg"))
    start = time.perf_counter()
    error = None
    try:
        # the kernel's own stderr (a TCP warning on every start) goes to a file, shown
        # only when the kernel dies
        with open(out / "kernel.log", "wb") as kernel_log:
            client.execute(env=env, stderr=kernel_log)
    except NoSuchKernel:
        raise _no_kernel(kernel_name) from None
    except CellTimeoutError:
        error = f"{_cell_name(label, running['index'], numbers)}: timed out after {timeout:g} s"
    except DeadKernelError as exc:
        lines = (out / "kernel.log").read_text(errors="replace").strip().splitlines()
        log = [ln for ln in lines if ln.strip() and "running over TCP" not in ln][-3:]
        error = f"{_cell_name(label, running['index'], numbers)}: the kernel died ({_first(exc)})"
        if log:
            error += ": " + " | ".join(log)
    except CellExecutionError as exc:
        error = f"{_cell_name(label, running['index'], numbers)}: {exc.ename}: {exc.evalue}"
    seconds = time.perf_counter() - start
    if error:
        return SideResult(error=error, seconds=seconds)
    return SideResult(values=load_values(out), seconds=seconds)


def _cell_name(label: str, index: int | None, numbers: list[int]) -> str:
    """``notebook.ipynb, cell N`` for the cell that was running when the run stopped."""
    from nb2flow.errors import where

    if index is None or numbers[index] == 0:
        return label
    return where(label, numbers[index])


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- the flow ------------------------------------------------------------------------------


def run_flow(
    script: Path, params: dict[str, Any], out: Path, *, cwd: Path, timeout: float
) -> SideResult:
    """Run the generated flow in a fresh process with `params`; collect its returned dict."""
    import pickle

    params_file = out / "params.pkl"
    params_file.write_bytes(pickle.dumps(params))
    env = dict(os.environ, NB2FLOW_PANEL="off", MPLBACKEND=os.environ.get("MPLBACKEND", "Agg"))
    # the check proves the conversion: every task runs, none is served from the cache
    # (cache keys hash a loader's path argument, not the file it names)
    env["NB2FLOW_CACHE"] = "off"
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _FLOW_DRIVER, str(script), str(out), str(params_file)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return SideResult(
            error=f"the flow did not finish within {timeout:g} s",
            seconds=time.perf_counter() - start,
        )
    seconds = time.perf_counter() - start
    if proc.returncode == 3 and "NB2FLOW-CHECK-UNKNOWN-PARAMS" in proc.stderr:
        line = proc.stderr.split("NB2FLOW-CHECK-UNKNOWN-PARAMS", 1)[1].splitlines()[0]
        names = ", ".join(json.loads(line))
        raise Nb2flowError(f"{script}: the flow has no parameter {names} (-p)")
    if proc.returncode != 0:
        return SideResult(error=_flow_error(proc.stderr, proc.returncode), seconds=seconds)
    values = load_values(out)
    return SideResult(values=values, seconds=seconds, names=list(values))


def _flow_error(stderr: str, code: int) -> str:
    """The last exception line of a traceback, or the tail of stderr."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith((" ", "\t")) and (":" in line) and not line.startswith("Traceback"):
            return line.strip()[:500]
    tail = " | ".join(lines[-3:])
    return f"exit status {code}: {tail}"[:500] if tail else f"exit status {code}"
