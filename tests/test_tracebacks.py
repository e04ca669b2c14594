"""Errors in the user's terms: the converter writes a source map into the script; recorded
tracebacks and the exception a flow raises hide nb2flow's frames and name the notebook cell."""

from __future__ import annotations

import re
import runpy

import nbformat
import pytest

from nb2flow.codegen import convert_notebook, write_script
from nb2flow.generated import locate, parse_source_map
from nb2flow.notebook.magics import to_python
from nb2flow.notebook.reader import read_notebook
from nb2flow.runtime.core.tracebacks import is_internal
from nb2flow.store.db import Store
from tests.conftest import ROOT, require_modules

EXAMPLE = ROOT / "notebooks" / "duration-prediction.ipynb"


def _notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Broken on purpose"),
        nbformat.v4.new_code_cell("divisor: int = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "def ratio(a, b):\n    # a helper the task calls\n    return a / b",
        ),
        nbformat.v4.new_code_cell(
            "values = [1, 2, 3]\ntotal = sum(values)\nshare = ratio(total, divisor)",
            metadata={"tags": ["task:compute"]},
        ),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    return path


def test_every_mapped_line_of_the_example_script_is_its_cells_line():
    conversion = convert_notebook(EXAMPLE, label="notebooks/duration-prediction.ipynb")
    lines = conversion.script.splitlines()
    notebook, entries = parse_source_map(lines)
    assert notebook == "notebooks/duration-prediction.ipynb"
    cells = {
        c.number: to_python(c.source, "").code.splitlines()
        for c in read_notebook(EXAMPLE).cells
        if c.kind == "code"
    }
    mapped = recorded_lines = 0
    for i, line in enumerate(lines, 1):
        where = locate(entries, i)
        if where is None:
            continue
        cell, n = where
        mapped += 1
        # the formatter may change quotes and spacing, never what a line starts with; a
        # cell's displayed value is recorded: `artifacts.last_value(<the cell's line>, ...)`
        text = line.strip()
        recorded = text.startswith("artifacts.last_value(")
        text = text.removeprefix("artifacts.last_value(").removeprefix("(")
        assert cells[cell][n - 1].split()[0][:8] == text.split()[0][:8], (i, line)
        recorded_lines += recorded
    assert mapped > 50 and recorded_lines == 2  # cells 9 and 17 show a value
    # generated lines (decorators, signatures, the flow) map to nothing
    flow_line = next(i for i, line in enumerate(lines, 1) if line.startswith("def main("))
    assert locate(entries, flow_line) is None
    assert convert_notebook(EXAMPLE, label="notebooks/duration-prediction.ipynb").script == (
        conversion.script
    )  # deterministic


@pytest.mark.parametrize("runner", ["threads", pytest.param("processes:2", marks=pytest.mark.slow)])
def test_a_failed_tasks_recorded_traceback_names_the_cell_and_hides_nb2flow(tmp_path, runner):
    """Also in a pool worker, where the task's function arrives pickled by value (cloudpickle
    drops its file name: the payload brings it back)."""
    path = _notebook(tmp_path)
    script = write_script(convert_notebook(path, label="broken.ipynb"), tmp_path / "out")
    module = runpy.run_path(str(script), run_name="broken_flow")
    run = module["main"].with_options(task_runner=runner)(return_state=True)
    assert run.state == "Failed"
    with Store() as store:
        (task,) = store.load_run(run.id).tasks.values()
    tb = task.traceback
    assert 'File "broken.ipynb", cell 4, line 3, in compute (' in tb
    assert 'File "broken.ipynb", cell 3, line 3, in ratio (' in tb
    assert "share = ratio(total, divisor)" in tb and "return a / b" in tb
    assert "nb2flow" not in tb.replace("broken", "")  # no frame of nb2flow's code
    assert tb.rstrip().endswith("ZeroDivisionError: division by zero")


def test_the_exception_a_flow_raises_has_the_users_frames_and_a_note(tmp_path):
    path = _notebook(tmp_path)
    script = write_script(convert_notebook(path, label="broken.ipynb"), tmp_path / "out")
    module = runpy.run_path(str(script), run_name="broken_flow")
    with pytest.raises(ZeroDivisionError) as info:
        module["main"]()
    exc = info.value
    frames = [(t.tb_frame, t.tb_lineno) for t in _walk(exc.__traceback__)]
    internal = [f for f, _ in frames if is_internal(f.f_code.co_filename)]
    # what remains of nb2flow is the call the user made (Flow.__call__, run_flow), hidden
    # from IPython's and pytest's tracebacks
    assert [f.f_code.co_name for f in internal] == ["__call__", "run_flow"]
    assert all(f.f_locals.get("__tracebackhide__") for f in internal)
    names = [f.f_code.co_name for f, _ in frames if not is_internal(f.f_code.co_filename)]
    assert names[-2:] == ["compute", "ratio"]
    assert exc.__notes__ == ["in broken.ipynb, cell 3, line 3 (ratio)"]


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_jupyter_shows_the_failure_without_nb2flow_frames(tmp_path, monkeypatch):
    require_modules("jupyter", "nbclient", "ipykernel")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = _notebook(tmp_path)
    write_script(convert_notebook(path, label="broken.ipynb"), tmp_path / "out")
    runner = nbformat.v4.new_notebook()
    runner.cells = [
        nbformat.v4.new_code_cell(f"import sys; sys.path.insert(0, {str(tmp_path / 'out')!r})"),
        nbformat.v4.new_code_cell("from broken import main\nmain()"),
    ]
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout
    client = NotebookClient(runner, timeout=120, kernel_name="python3")
    with pytest.raises(CellExecutionError):
        client.execute(cwd=str(tmp_path))
    (error,) = [o for o in runner.cells[1].outputs if o.output_type == "error"]
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback))  # no colours
    assert error.ename == "ZeroDivisionError"
    assert "nb2flow/runtime" not in text and "hidden" in text  # "[... skipping hidden 2 frame]"
    assert "in broken.ipynb, cell 3, line 3 (ratio)" in text
    assert "return a / b" in text


# a setup cell that fails in the flow process or only in the workers (as configuration that
# needs a resource the workers lack)
SETUP_FAILS = [
    nbformat.v4.new_code_cell("import multiprocessing\nimport os"),
    nbformat.v4.new_code_cell(
        "where = 'worker' if multiprocessing.parent_process() else 'flow'\n"
        "if os.environ['FAIL_SETUP_IN'] == where:\n"
        "    raise RuntimeError(f'no configuration in the {where} process')",
        metadata={"tags": ["setup"]},
    ),
    nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["task:a", "output:a"]}),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "runner, where",
    [
        ("threads", "flow"),
        ("processes:2", "flow"),
        ("processes:2", "worker"),
        pytest.param("dask:2", "worker", marks=pytest.mark.dask, id="dask:2-worker"),
    ],
)
def test_a_setup_failure_names_its_notebook_cell(tmp_path, runner, where):
    """The setup runs in every process that runs tasks: wherever it fails, the run's error
    says it was the setup and where in the notebook, and the recorded traceback names the
    cell, as a failed task's does."""
    import os
    import subprocess
    import sys

    if runner.startswith("dask"):
        require_modules("dask", "distributed")
    nb = nbformat.v4.new_notebook()
    nb.cells = SETUP_FAILS
    path = tmp_path / "configured.ipynb"
    nbformat.write(nb, path)
    script = write_script(convert_notebook(path, label="configured.ipynb"), tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, str(script), "-q", "--task-runner", runner],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ, FAIL_SETUP_IN=where),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    said = (
        "the flow's setup failed at configured.ipynb, cell 2, line 3: "
        f"RuntimeError: no configuration in the {where} process"
    )
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert said in line and "Traceback" not in proc.stderr, proc.stderr
    with Store() as store:
        view = store.load_run(store.list_runs(limit=1)[0].id)
    tb = view.traceback if where == "flow" else view.tasks[next(iter(view.tasks))].traceback
    assert 'File "configured.ipynb", cell 2, line 3, in setup (' in tb, tb
    assert "nb2flow" not in tb.replace("configured", "")
    assert tb.rstrip().endswith(f"RuntimeError: no configuration in the {where} process")


def test_a_statement_of_a_cell_left_out_of_the_flow_maps_no_line(tmp_path):
    """A cell holding %nb2flow lines is left out whole; the same statement in a later cell is
    the one its script line comes from."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext nb2flow\nx = 1"),
        nbformat.v4.new_code_cell("x = 1\ny = x + 1"),
    ]
    path = tmp_path / "left_out.ipynb"
    nbformat.write(nb, path)
    lines = convert_notebook(path).script.split("\n")
    _, entries = parse_source_map(lines)
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == "x = 1")
    assert locate(entries, line) == (2, 1)
    assert locate(entries, line + 1) == (2, 2)
