"""Run the two sides of a check, each in its own process group, and collect their values.

The notebook runs in a real Jupyter kernel (nbclient), top to bottom, without its ``skip``
cells and with the check's parameters injected after its ``parameters`` cell (papermill's
convention); a last cell pickles the requested names to a folder. nbclient itself runs in
a child process (``python -m nb2flow.check.runs SPEC``), so that stopping the notebook side
is stopping a process. The flow runs in a fresh Python process that imports the generated
script (so ``run_cli`` does not run) and calls the flow with the same parameters.

Values are saved by :mod:`nb2flow.check.dump`, one file per name, so one value that cannot
be pickled (an open file, a database connection) is reported on its own.

:func:`run_sides` runs the sides one after the other or at the same time, and stops the
others as soon as one fails (:mod:`nb2flow.check.processes`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2flow.check.processes import Child, Supervisor, die_with_parent
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
    skipped: str | None = None  # why it did not finish: stopped, or never started
    #: the notebook: per cell run, its global random states and the names it bound
    #: (:mod:`nb2flow.check.randomness`), and the notebook's number of each of those cells
    randomness: list[dict[str, Any]] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)


def load_values(out: Path) -> Values:
    """Read back what :func:`nb2flow.check.dump.dump` wrote."""
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


def _own_source(module: str) -> str:
    return (Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8")


#: the notebook's figures: Jupyter's inline backend, which shows and closes a cell's figures
#: when it ends (as the generated flow does: ``artifacts.end_of_cell`` and the end of a task);
#: with Agg a later cell's ``plt.title(...)`` would draw on an earlier cell's axes
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _env(kernel: bool = False) -> dict[str, str]:
    backend = INLINE_BACKEND if kernel else os.environ.get("MPLBACKEND", "Agg")
    return dict(os.environ, NB2FLOW_PANEL="off", MPLBACKEND=backend)


class Side(ABC):
    """One side of a check: how to start it, and how to read what it left."""

    name: str
    #: seconds the whole run may take (None: bounded inside, cell by cell)
    timeout: float | None = None

    @abstractmethod
    def start(self, supervisor: Supervisor) -> Child:
        """Start the side's process through `supervisor`."""

    @abstractmethod
    def finish(self, child: Child, seconds: float) -> SideResult:
        """What the side left, once its process has ended."""

    def timed_out(self, seconds: float) -> SideResult:
        return SideResult(error=f"did not finish within {self.timeout:g} s", seconds=seconds)


def run_sides(sides: list[Side], *, parallel: bool) -> dict[str, SideResult]:
    """Run `sides` (in order, or all at once when `parallel`) and return their results by
    name. The first side that fails stops the ones running (``skipped = "stopped: ..."``)
    and those not started yet are not (``skipped = "not run: ..."``). Whatever happens,
    including SIGTERM (:class:`~nb2flow.check.processes.Terminated`), no process is left."""
    results: dict[str, SideResult] = {}
    waiting = list(sides)
    running: dict[int, tuple[Side, Child, float]] = {}
    with Supervisor().session() as supervisor:
        while waiting or running:
            while waiting and (parallel or not running):
                side = waiting.pop(0)
                child = side.start(supervisor)
                running[child.proc.pid] = (side, child, time.monotonic())
            deadlines = [t + s.timeout for s, _, t in running.values() if s.timeout is not None]
            ended = supervisor.first_ended(
                [child for _, child, _ in running.values()], min(deadlines, default=None)
            )
            now = time.monotonic()
            for pid, (side, child, started) in list(running.items()):
                if child is ended:
                    results[side.name] = side.finish(child, now - started)
                elif ended is None and side.timeout is not None and now >= started + side.timeout:
                    child.stop()
                    results[side.name] = side.timed_out(now - started)
                else:
                    continue
                del running[pid]
            failed = next((n for n, r in results.items() if r.error), None)
            if failed:
                for side, child, started in running.values():
                    child.stop()
                    results[side.name] = SideResult(
                        seconds=time.monotonic() - started,
                        skipped=f"stopped: the {failed} failed first",
                    )
                for side in waiting:
                    results[side.name] = SideResult(skipped=f"not run: the {failed} failed")
                break
    return results


# --- the notebook --------------------------------------------------------------------------


def prepare_notebook(
    nb: Any, param_source: str, names: list[str], out: Path
) -> tuple[Any, list[int]]:
    """The notebook to execute: skip cells dropped, parameters injected, a first cell that
    watches the global random states (:mod:`nb2flow.check.randomness`) and a dump cell added.

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
    watch = _own_cell("randomness", "watch", f"get_ipython(), {names!r}, {str(out)!r}")
    cells.insert(0, nbformat.v4.new_code_cell(watch))
    numbers.insert(0, 0)
    cells.append(nbformat.v4.new_code_cell(dump_cell(names, out)))
    numbers.append(0)
    new.cells = cells
    return new, numbers


def _source(cell: Any) -> str:
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else str(source)


def dump_cell(names: list[str], out: Path) -> str:
    """The check's last cell: save `names` from the kernel's globals."""
    values = f"{{_n: globals()[_n] for _n in {names!r} if _n in globals()}}"
    return _own_cell("dump", "dump", f"{values}, {str(out)!r}")


def _own_cell(module: str, function: str, arguments: str) -> str:
    """A cell of the check's that calls `function` of ``nb2flow.check.<module>`` in the
    kernel, leaving no name of its own behind: the module's text runs in a namespace of its
    own (the kernel's Python may not have nb2flow installed)."""
    space = f"_nb2flow_{module}"
    return (
        f'{space} = {{"__name__": {space!r}}}\n'
        f"exec(compile({_own_source(module)!r}, 'nb2flow/check/{module}.py', 'exec'), {space})\n"
        f"{space}[{function!r}]({arguments})\n"
        f"del {space}"
    )


def _clean(cell: Any) -> Any:
    import nbformat

    fresh = nbformat.v4.new_code_cell(_source(cell))
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


@dataclass
class NotebookSide(Side):
    """The prepared notebook, run by nbclient in a child process (see :func:`main`)."""

    nb: Any
    numbers: list[int]
    out: Path
    cwd: Path
    cell_timeout: float
    kernel_name: str
    label: str
    name: str = "notebook"

    def start(self, supervisor: Supervisor) -> Child:
        import nbformat

        nbformat.write(self.nb, str(self.out / "prepared.ipynb"))
        spec = {
            "notebook": str(self.out / "prepared.ipynb"),
            "numbers": self.numbers,
            "out": str(self.out),
            "cwd": str(self.cwd),
            "timeout": self.cell_timeout,
            "kernel": self.kernel_name,
            "label": self.label,
        }
        (self.out / "spec.json").write_text(json.dumps(spec))
        return supervisor.start(
            self.name,
            [sys.executable, "-m", "nb2flow.check.runs", str(self.out / "spec.json")],
            cwd=self.cwd,
            env=_env(),
            stdout=self.out / "runner.out",
            stderr=self.out / "runner.err",
            also_kill=self.out / "kernel.pid",
        )

    def finish(self, child: Child, seconds: float) -> SideResult:
        result_file = self.out / "result.json"
        if not result_file.exists():
            tail = _tail(self.out / "runner.err")
            raise Nb2flowError(
                f"{self.label}: running the notebook failed (exit status "
                f"{child.proc.returncode}){': ' + tail if tail else ''}"
            )
        result = json.loads(result_file.read_text())
        if result.get("no_kernel"):
            raise _no_kernel(self.kernel_name)
        if result["error"]:
            return SideResult(error=result["error"], seconds=seconds)
        from nb2flow.check import randomness

        # the cells run after the watching one (nbclient skips empty ones)
        run = [n for n, c in zip(self.numbers, self.nb.cells, strict=True) if c.source.strip()]
        return SideResult(
            values=load_values(self.out),
            seconds=seconds,
            randomness=randomness.load(self.out),
            cells=run[1:],
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
    side = NotebookSide(nb, numbers, out, cwd, timeout, kernel_name, label)
    return run_sides([side], parallel=False)[side.name]


def execute_notebook(spec: dict[str, Any]) -> dict[str, Any]:
    """In the runner process: execute the notebook with nbclient, save the kernel's pid
    (so the check can stop the kernel's process group), and say how it went."""
    import nbformat
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    out, numbers, label, timeout = (
        Path(spec["out"]),
        spec["numbers"],
        spec["label"],
        spec["timeout"],
    )
    client = NotebookClient(
        nbformat.read(spec["notebook"], as_version=4),
        timeout=timeout,
        kernel_name=spec["kernel"],
        resources={"metadata": {"path": spec["cwd"]}},
        allow_errors=False,
        record_timing=False,
        shutdown_kernel="immediate",  # nothing to save: kill its process group at the end
    )
    running: dict[str, int | None] = {"index": None}

    def on_notebook_start(notebook: Any) -> None:
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid:
            (out / "kernel.pid").write_text(str(pid))

    def on_cell_start(cell: Any, cell_index: int) -> None:
        running["index"] = cell_index

    client.on_notebook_start = on_notebook_start
    client.on_cell_start = on_cell_start
    start = time.perf_counter()
    error = None
    try:
        # the kernel's own stderr (a TCP warning on every start) goes to a file, shown
        # only when the kernel dies
        with open(out / "kernel.log", "wb") as kernel_log:
            client.execute(env=_env(kernel=True), stderr=kernel_log)
    except NoSuchKernel:
        return {"error": None, "no_kernel": True}
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
    return {"error": error, "seconds": time.perf_counter() - start}


def _cell_name(label: str, index: int | None, numbers: list[int]) -> str:
    """``notebook.ipynb, cell N`` for the cell that was running when the run stopped."""
    from nb2flow.errors import where

    if index is None or numbers[index] == 0:
        return label
    return where(label, numbers[index])


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


# --- the flow ------------------------------------------------------------------------------

# The flow process: import the script as a module (not __main__), find the flow, call it,
# save the values it reports.
_FLOW_DRIVER = r"""
import signal
from nb2flow.check.processes import die_with_parent, end_group_on_sigterm
end_group_on_sigterm()
die_with_parent(signal.SIGTERM)
import importlib.util, json, os, pickle, sys
from nb2flow.check.dump import dump
script, out, params_file, where_file = sys.argv[1:5]
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
# The values compared: every name the notebook leaves, from the task runs' outputs (the
# flow returns only what the user asked for), then what the flow returns besides.
from nb2flow.check.values import run_for_values
with open(where_file) as f:
    where = json.load(f)
result, values = run_for_values(flow, params, where)
if not isinstance(result, dict):
    result = {"<return value>": result}
for name, value in result.items():
    values.setdefault(name, value)
with open(os.path.join(out, "returned.json"), "w") as f:
    json.dump(list(result), f)
dump(values, out)
"""


@dataclass
class FlowSide(Side):
    """The generated script's flow, called with the check's parameters in a fresh process."""

    script: Path
    params: dict[str, Any]
    out: Path
    cwd: Path
    timeout: float | None = None
    #: where the task runs' outputs hold the notebook's values: name -> (task, position,
    #: count) (:meth:`nb2flow.analysis.plan.Plan.returned_by`)
    where: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    name: str = "flow"

    def start(self, supervisor: Supervisor) -> Child:
        import pickle

        params_file = self.out / "params.pkl"
        params_file.write_bytes(pickle.dumps(self.params))
        where_file = self.out / "where.json"
        where_file.write_text(json.dumps(self.where))
        env = _env()
        # the check proves the conversion: every task runs, none is served from the cache
        # (cache keys hash a loader's path argument, not the file it names)
        env["NB2FLOW_CACHE"] = "off"
        argv = [sys.executable, "-c", _FLOW_DRIVER, str(self.script), str(self.out)]
        return supervisor.start(
            self.name,
            [*argv, str(params_file), str(where_file)],
            cwd=self.cwd,
            env=env,
            stdout=self.out / "flow.out",
            stderr=self.out / "flow.err",
        )

    def finish(self, child: Child, seconds: float) -> SideResult:
        code = child.proc.returncode
        stderr = (self.out / "flow.err").read_text(errors="replace")
        if code == 3 and "NB2FLOW-CHECK-UNKNOWN-PARAMS" in stderr:
            line = stderr.split("NB2FLOW-CHECK-UNKNOWN-PARAMS", 1)[1].splitlines()[0]
            names = ", ".join(json.loads(line))
            raise Nb2flowError(f"{self.script}: the flow has no parameter {names} (-p)")
        if code != 0:
            return SideResult(error=_flow_error(stderr, code), seconds=seconds)
        returned = json.loads((self.out / "returned.json").read_text())
        return SideResult(values=load_values(self.out), seconds=seconds, names=returned)

    def timed_out(self, seconds: float) -> SideResult:
        return SideResult(
            error=f"the flow did not finish within {self.timeout:g} s", seconds=seconds
        )


def run_flow(
    script: Path,
    params: dict[str, Any],
    out: Path,
    *,
    cwd: Path,
    timeout: float,
    where: dict[str, tuple[str, int, int]] | None = None,
) -> SideResult:
    """Run the generated flow in a fresh process with `params`; collect the values `where`
    names from its task runs, and its returned dict."""
    side = FlowSide(script, params, out, cwd, timeout, dict(where or {}))
    return run_sides([side], parallel=False)[side.name]


def _flow_error(stderr: str, code: int) -> str:
    """The last exception line of a traceback, or the tail of stderr."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith((" ", "\t")) and (":" in line) and not line.startswith("Traceback"):
            return line.strip()[:500]
    tail = " | ".join(lines[-3:])
    return f"exit status {code}: {tail}"[:500] if tail else f"exit status {code}"


def main(argv: list[str] | None = None) -> int:
    """``python -m nb2flow.check.runs SPEC.json``: the notebook runner (a check's child)."""
    import signal

    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    out = Path(spec["out"])

    def on_sigterm(signum: int, frame: object) -> None:
        # the kernel is a session of its own: end it, and what it started, with us
        pid_file = out / "kernel.pid"
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        os._exit(128 + signum)

    # while cells run, nbclient's own SIGTERM handler kills the kernel's process group
    # (shutdown_kernel="immediate"); before and after, this one does
    signal.signal(signal.SIGTERM, on_sigterm)
    die_with_parent(signal.SIGTERM)
    result = execute_notebook(spec)
    (out / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
