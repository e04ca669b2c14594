"""Process-wide state in generated flows: the setup runs in every process that runs tasks
(never at import or for ``--help``), configuration found in task cells reaches the tasks of
every runner, pyplot figures do not pile up across cells."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require
from notebooks.nbbuild import code, write

from nb2flow.codegen import convert_notebook, write_script


def _script(tmp_path: Path, name: str, cells: list) -> Path:
    notebook = write(tmp_path / f"{name}.ipynb", cells)
    return write_script(convert_notebook(notebook), tmp_path / "out")


def _run(script: Path, *options: str, timeout: float = 240) -> dict:
    proc = subprocess.run(
        [sys.executable, str(script), "--json", "-q", "--no-store", *options],
        capture_output=True,
        text=True,
        cwd="/",  # the script goes to its notebook's folder itself
        timeout=timeout,
        env=dict(os.environ, NB2FLOW_CACHE="off", MPLBACKEND="Agg"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_setup_runs_once_in_every_process_running_tasks_and_never_at_import(tmp_path):
    script = _script(
        tmp_path,
        "pids",
        [
            code("import os"),
            code(
                "with open('setup-pids.txt', 'a') as f:\n    f.write(f'{os.getpid()}\\n')", "setup"
            ),
            code("a = os.getpid()", "task:a", "output:a"),
            code("b = os.getpid()", "task:b", "output:b"),
            code("c = os.getpid()", "task:c", "output:c"),
        ],
    )
    marker = tmp_path / "setup-pids.txt"
    help_run = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_run.returncode == 0 and "--task-runner" in help_run.stdout
    namespace = runpy.run_path(str(script), run_name="imported_flow")  # as nb2flow run does
    assert "setup" in namespace and not marker.exists()

    result = _run(script, "--task-runner", "processes:2")
    pids = [int(line) for line in marker.read_text().split()]
    workers = {result["a"], result["b"], result["c"]}
    assert len(pids) == len(set(pids))  # once per process
    assert workers <= set(pids) and len(pids) == len(workers) + 1  # + the flow process


MLFLOW_NOTEBOOK = [
    code("import mlflow"),
    code("tracking_uri = 'sqlite:///mlflow.db'", "parameters"),
    # the cell: configuration only, in a task cell of its own
    code("mlflow.set_tracking_uri(tracking_uri)\nmlflow.set_experiment('fidelity')"),
    code(
        "with mlflow.start_run() as run:\n    mlflow.log_metric('m', 1.0)\nfirst = run.info.run_id",
        "output:first",
    ),
    code(
        "with mlflow.start_run() as run:\n    mlflow.log_metric('m', 2.0)\nsecond = run.info.run_id",
        "output:second",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["threads", "processes:2", "dask:2"])
def test_mlflow_runs_land_in_the_experiment_the_notebook_set_on_every_runner(tmp_path, runner):
    """On processes and Dask the runs used to land in mlflow's Default experiment: the
    configuration cell ran in one worker only (or two workers created mlflow.db at once)."""
    require("example_deps", _has("mlflow"), "mlflow is not installed (pip install '.[example]')")
    if runner.startswith("dask"):
        require("dask", _has("distributed"), "dask[distributed] is not installed")
    script = _script(tmp_path, "tracked", MLFLOW_NOTEBOOK)
    text = script.read_text()
    assert "def setup(tracking_uri: str):" in text and "@flow(name='tracked', setup=setup)" in (
        text.replace('"', "'")
    )
    if runner == "threads":  # --help: no setup, no mlflow.db, not even an mlflow import
        help_run = subprocess.run(
            [sys.executable, "-X", "importtime", str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert help_run.returncode == 0 and "--tracking-uri" in help_run.stdout
        imported = [line.rsplit("|", 1)[-1].strip() for line in help_run.stderr.splitlines()]
        assert "numpy" not in imported and not any(m.startswith("mlflow") for m in imported)
        assert not (tmp_path / "mlflow.db").exists()
    result = _run(script, "--task-runner", runner)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fidelity")
    assert experiment is not None
    for key in ("first", "second"):
        run = client.get_run(result[key])
        assert run.info.experiment_id == experiment.experiment_id, (key, runner)
    assert not (Path("/") / "mlflow.db").exists() and not (tmp_path / "out" / "mlflow.db").exists()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_two_tasks_plotting_with_pyplot_do_not_run_at_once_on_threads(tmp_path):
    """pyplot's current figure is process-wide: two plotting tasks running at once on the
    thread runner drew into each other's axes (the issue: "Argument must be an image or
    collection in this Axes"). The global_state pass orders them."""
    import matplotlib.pyplot as plt
    from notebooks.nbbuild import edge, run_script_flow

    # each task keeps its figure current while it sleeps: a concurrent task would take it
    cells = [
        code("import time\nimport matplotlib.pyplot as plt"),
        code(
            "plt.figure()\nplt.plot([1, 2, 3])\ntime.sleep(0.3)\na = len(plt.gca().lines)",
            "task:a",
            "output:a",
        ),
        code(
            "plt.figure()\nplt.plot([3, 2])\nplt.plot([1, 1])\nb = len(plt.gca().lines)",
            "task:b",
            "output:b",
        ),
        code("k = 1", "task:c"),
    ]
    conversion = convert_notebook(write(tmp_path / "plots.ipynb", cells))
    assert edge(conversion.plan, "a", "b") == {"kind": "order", "vars": ["pyplot"]}
    assert not conversion.plan.has_edge("b", "c")
    try:
        result = run_script_flow(conversion.script, tmp_path)
    finally:
        plt.close("all")
    assert (result["a"], result["b"]) == (1, 2)


FIGURES_NOTEBOOK = [
    code("import matplotlib.pyplot as plt"),
    code("plt.plot([1, 2])\nfirst = len(plt.gca().lines)", "task:plots", "output:first"),
    code("plt.plot([3, 4])\nplt.plot([5, 6])\nsecond = len(plt.gca().lines)", "output:second"),
    code("left = len(plt.get_fignums())", "output:left"),
    code(
        "x = 1\ny = x + 1", "output:x", "output:y"
    ),  # plots nothing: no cell end after the cell above
]


@pytest.mark.parametrize("runner", ["threads", "processes:2"])
def test_figures_do_not_pile_up_across_the_cells_of_a_task(tmp_path, monkeypatch, runner):
    """Jupyter's inline backend shows and closes a cell's figures after the cell, so the next
    cell's plt.plot draws on a new figure (the issue: one axes got 29 lines from 11 cells).
    Inside a task, each plotting cell followed by more code ends with end_of_cell(): its
    figures are recorded as artifacts and closed there, through the run record's capture."""
    import runpy

    monkeypatch.setenv("NB2FLOW_CAPTURE", "on")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    conversion = convert_notebook(write(tmp_path / "figures.ipynb", FIGURES_NOTEBOOK))
    assert list(conversion.plan.tasks) == ["plots"]
    assert conversion.script.count("nb2flow.artifacts.end_of_cell()") == 3  # after cells 2, 3 and 4
    path = tmp_path / "figures_flow.py"
    path.write_text(conversion.script, encoding="utf-8")
    flow_fn = runpy.run_path(str(path), run_name="figures_flow")["main"]
    run = flow_fn.with_options(task_runner=runner)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.result() == {"first": 1, "second": 2, "left": 0, "x": 1, "y": 2}
    images = [a for a in run.view.artifacts if a.kind == "image"]
    assert len(images) == 2  # one figure per plotting cell, each recorded once
    assert all(a.get("image/png").startswith(b"\x89PNG\r\n\x1a\n") for a in images)
    if runner == "threads":
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []  # closed in this process too


def test_the_setup_functions_lines_map_to_their_cells(tmp_path):
    """An error in setup code is told in the notebook's terms, as one in a task is."""
    from nb2flow.generated import locate, parse_source_map

    script = convert_notebook(
        write(
            tmp_path / "mapped.ipynb",
            [code("import random"), code("SEED = 2\nx = 1 / 0", "setup"), code("y = SEED")],
        )
    ).script
    lines = script.split("\n")
    _, entries = parse_source_map(lines)
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == "x = 1 / 0")
    assert locate(entries, line) == (2, 2)


def test_tasks_plotting_through_pandas_methods_are_ordered_too(tmp_path):
    """df.plot() draws on pyplot's current figure without naming plt."""
    from notebooks.nbbuild import edge

    cells = [
        code("import pandas as pd"),
        code("df = pd.DataFrame({'x': [1, 2]})", "task:make"),
        code("df.plot()", "task:line"),
        code("df.x.hist()", "task:hist"),
        code("n = len(df)", "task:count"),
    ]
    plan = convert_notebook(write(tmp_path / "pandas_plots.ipynb", cells)).plan
    assert edge(plan, "line", "hist") == {"kind": "order", "vars": ["pyplot"]}
    assert not plan.has_edge("hist", "count") and not plan.has_edge("line", "count")


@pytest.mark.parametrize("runner", ["threads", "processes:2", "dask:2"])
def test_a_sys_path_change_reaches_every_worker(tmp_path, runner):
    """`sys.path.append('lib')` in a task cell ran in one worker only: the import of the
    module it finds, in another worker, failed. As configuration it runs in every one."""
    if runner.startswith("dask"):
        require("dask", _has("distributed"), "dask[distributed] is not installed")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helpermod.py").write_text("VALUE = 41\n")
    script = _script(
        tmp_path,
        "paths",
        [
            code("import sys"),
            code("sys.path.append('lib')"),
            code("import helpermod"),
            code("x = helpermod.VALUE + 1", "output:x"),
        ],
    )
    assert "    sys.path.append(" in script.read_text()  # in the setup function
    assert _run(script, "--task-runner", runner) == {"x": 42}


@pytest.mark.parametrize("runner", ["threads", "processes:2"])
def test_draws_from_a_generator_move_its_state_on(tmp_path, runner):
    """`xs = rng.normal(size=3)` uses its result and still changes rng: the next task must
    draw from the state after it (on processes each task had the first state: the same
    numbers twice; found on the corpus' mpl-histogram_normalization)."""
    from notebooks.nbbuild import run_cells

    cells = [
        code("import numpy as np"),
        code("rng = np.random.default_rng(7)"),
        code("a = rng.normal(size=3).tolist()", "output:a"),
        code("b = rng.integers(0, 100, size=3).tolist()", "output:b"),
    ]
    path = write(tmp_path / "draws.ipynb", cells)
    expected = run_cells(path)
    script = write_script(convert_notebook(path), tmp_path / "out")
    result = _run(script, "--task-runner", runner)
    assert (result["a"], result["b"]) == (expected["a"], expected["b"])
