"""`nb2flow check`: parameters, the notebook side in a real kernel, and whole checks."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nb2flow.check import parse_parameters
from nb2flow.errors import Nb2flowError
from tests.conftest import require, require_modules
from tests.proctree import processes, survivors, tree


def code(source: str, *tags: str):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def write_nb(path, cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    nbformat.write(nb, path)
    return path


def test_parse_parameters_literals_and_text():
    assert parse_parameters(
        ["a=5", "b=0.5", "c=True", "d=[1, 2]", "e='x'", "f=data/x.parquet"]
    ) == {
        "a": 5,
        "b": 0.5,
        "c": True,
        "d": [1, 2],
        "e": "x",
        "f": "data/x.parquet",
    }
    assert parse_parameters(["train-path=x"]) == {"train_path": "x"}  # CLI spelling accepted
    with pytest.raises(Nb2flowError, match="expected -p name=value"):
        parse_parameters(["novalue"])
    with pytest.raises(Nb2flowError, match="bad parameter"):
        parse_parameters(["1x=3"])


def test_prepare_notebook_drops_skip_injects_parameters(tmp_path):
    from nb2flow.check.runs import prepare_notebook

    nb = new_notebook(
        cells=[
            new_markdown_cell("# title"),
            code("import math"),
            code("n = 3", "parameters"),
            code("print('eda')", "skip"),
            code("y = n * 2", "task:double"),
        ]
    )
    new, numbers = prepare_notebook(nb, "n = 5\n", ["y"], tmp_path)
    sources = [c.source for c in new.cells]
    assert "_nb2flow_randomness" in sources[0] and "['y']" in sources[0]  # watches draws
    assert sources[1:5] == ["import math", "n = 3", "n = 5\n", "y = n * 2"]
    assert "_nb2flow_dump" in sources[-1] and "'y'" in sources[-1]
    assert numbers == [0, 2, 3, 0, 5, 0]  # original cell numbers; 0 for the check's own cells


@pytest.mark.slow
def test_notebook_side_collects_values_and_names_the_failing_cell(tmp_path):
    require_modules("jupyter", "nbclient", "ipykernel")
    from nb2flow.check.runs import prepare_notebook, run_notebook

    nb = new_notebook(
        cells=[
            code("import io\nn = 3", "parameters"),
            code("raise SystemExit('EDA must not run')", "skip"),
            code(
                "y = [n] * n\nf = io.StringIO('open file')\nimport threading\nlock = threading.Lock()"
            ),
        ]
    )
    out = tmp_path / "out"
    out.mkdir()
    prepared, numbers = prepare_notebook(nb, "n = 2\n", ["y", "lock", "absent"], out)
    result = run_notebook(
        prepared, numbers, out, cwd=tmp_path, timeout=60, kernel_name="python3", label="x.ipynb"
    )
    assert result.error is None
    assert result.values["y"] == ("value", [2, 2], "")
    kind, reason, type_name = result.values["lock"]
    assert kind == "error" and "cannot be pickled" in reason
    assert type_name == "_thread.lock"
    assert "absent" not in result.values

    bad = new_notebook(cells=[code("a = 1"), new_markdown_cell("m"), code("1 / 0")])
    prepared, numbers = prepare_notebook(bad, "", ["a"], out)
    result = run_notebook(
        prepared, numbers, out, cwd=tmp_path, timeout=60, kernel_name="python3", label="x.ipynb"
    )
    assert result.error == "x.ipynb, cell 3: ZeroDivisionError: division by zero"


def test_missing_nbclient_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from nb2flow.check import check_notebook

    monkeypatch.setitem(sys.modules, "nbclient", None)  # import nbclient -> ImportError
    path = write_nb(tmp_path / "x.ipynb", [code("a = 1")])
    with pytest.raises(Nb2flowError, match=r"needs nbclient: pip install 'nb2flow\[jupyter\]'"):
        check_notebook(path)


def _check_cli(notebook, cwd, *args):
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "nb2flow", "check", str(notebook), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else None
    return proc, data


@pytest.mark.slow
def test_check_passes_on_the_worked_example(tmp_path):
    require_modules("jupyter", "nbclient", "ipykernel")
    require_modules("example", "mlflow", "xgboost", "sklearn")
    from nb2flow.examples import taxi
    from tests.conftest import ROOT

    # check runs both sides in the notebook's folder, where its relative paths point: a copy
    # of the notebook beside small data, so the run leaves nothing in the checkout
    for month in ("2021-01", "2021-02"):
        taxi.write_month(tmp_path / "data", month, rows=2000, seed=4)
    notebook = tmp_path / "duration-prediction.ipynb"
    shutil.copyfile(ROOT / "notebooks" / "duration-prediction.ipynb", notebook)
    proc, data = _check_cli(notebook, tmp_path, "--json", "-p", "num_boost_round=5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert data["ok"] is True and data["parameters"] == {"num_boost_round": "5"}
    rows = {row["name"]: row for row in data["values"]}
    for name in ("df_train", "X_train", "y_val", "dv", "y_pred", "rmse", "best_params"):
        assert rows[name]["status"] == "equal", rows[name]
    assert rows["booster"]["status"] == "equal"
    assert "same predictions" in rows["booster"]["detail"]
    assert rows["run_id"]["status"] == "ignored"  # notebook metadata: a new mlflow run each time
    assert rows["dtrain"]["status"] == "not compared"  # an xgboost DMatrix: a C handle
    assert rows["dtrain"]["type"] == "xgboost.DMatrix"
    assert "cannot be pickled" in rows["dtrain"]["detail"]
    # the flow returns only its declared outputs (output: tags); the values compared are
    # every value the notebook leaves, taken from the task runs: as many as when the flow
    # returned them all (20 rows, 17 equal)
    assert data["flow_returns"] == ["rmse", "run_id", "best_rmse"]
    assert len(rows) == 20 and data["counts"]["equal"] >= 17


SCALED = [
    code("scale = 2", "parameters"),
    code("import numpy as np\n\nxs = np.arange(5) * scale", "task:make"),
    code("total = float(xs.sum())", "task:total"),
]


@pytest.mark.slow
def test_check_catches_a_wrong_conversion(tmp_path, monkeypatch):
    """A converter bug (simulated: the generated task multiplies by the wrong factor) shows up
    as mismatched values, named, with the difference."""
    require_modules("jupyter", "nbclient", "ipykernel")
    import nb2flow.check as check
    from nb2flow.check.report import print_report

    path = write_nb(tmp_path / "scaled.ipynb", SCALED)
    real = check._convert

    def buggy(p, split):
        conversion = real(p, split)
        script = conversion.script
        assert "xs = np.arange(5) * scale" in script
        wrong = script.replace("np.arange(5) * scale", "np.arange(5) * (scale + 1)")
        return dataclasses.replace(conversion, script=wrong)

    monkeypatch.setattr(check, "_convert", buggy)
    report = check.check_notebook(path, {"scale": 3}, cwd=tmp_path, timeout=120)
    assert not report.ok and report.failure == "values"
    rows = {row.name: row for row in report.rows}
    assert rows["xs"].status == "different" and "5 elements differ" in rows["xs"].detail
    assert rows["total"].status == "different" and "30.0 != 40.0" in rows["total"].detail

    from rich.console import Console

    console = Console(record=True, width=120)
    print_report(report, console)
    text = console.export_text()
    assert "FAIL" in text and "different" in text and "30.0 != 40.0" in text

    # another bug: the flow forgets to run a task, so no task run holds its value
    def forgetful(p, split):
        conversion = real(p, split)
        assert "    total = total_task.submit(xs)\n" in conversion.script
        script = conversion.script.replace("    total = total_task.submit(xs)\n", "")
        return dataclasses.replace(conversion, script=script)

    monkeypatch.setattr(check, "_convert", forgetful)
    report = check.check_notebook(path, cwd=tmp_path, timeout=120)
    assert [(row.name, row.status) for row in report.rows] == [
        ("xs", "equal"),
        ("total", "missing in flow"),
    ]
    assert not report.ok and report.failure == "values"


@pytest.mark.slow
def test_check_passes_untagged_notebooks(tmp_path):
    """An untagged notebook (split by headings) with an unpicklable value passes."""
    require_modules("jupyter", "nbclient", "ipykernel")
    untagged = write_nb(
        tmp_path / "untagged.ipynb",
        [
            new_markdown_cell("# Load"),
            code("import threading\n\nrows = [1, 2, 3]\nlock = threading.Lock()"),
            new_markdown_cell("## Summarise"),
            code("total = sum(rows)\nmean = total / len(rows)"),
            new_markdown_cell("## A class of its own"),
            code(
                "class Point:\n    def __init__(self, x):\n        self.x = x\n\n\n"
                "point = Point(mean)\npoint.x += 1"
            ),
        ],
    )
    proc, data = _check_cli(untagged, tmp_path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {row["name"]: row["status"] for row in data["values"]}
    assert rows == {
        "rows": "equal",
        "lock": "not compared",
        "total": "equal",
        "mean": "equal",
        "point": "equal",  # a class the notebook defines: compared by attributes
    }


@pytest.mark.slow
def test_check_passes_when_both_sides_leave_a_name_unbound(tmp_path):
    """A name the notebook deletes (or binds on some paths only) is unbound on both sides:
    the flow returns nb2flow.UNSET for it, and check counts that as the same."""
    require_modules("jupyter", "nbclient", "ipykernel")
    notebook = write_nb(
        tmp_path / "unbound.ipynb",
        [
            new_markdown_cell("# Make"),
            code("tmp = [1, 2]\nkeep = sum(tmp)\nif keep > 10:\n    big = True\ndel tmp"),
            new_markdown_cell("## Use"),
            code("try:\n    big\nexcept NameError:\n    big_seen = False"),
        ],
    )
    proc, data = _check_cli(notebook, tmp_path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {row["name"]: (row["status"], row["detail"]) for row in data["values"]}
    assert rows["keep"][0] == "equal" and rows["big_seen"][0] == "equal"
    assert rows["big"] == ("equal", "both leave it unbound")


@pytest.mark.slow
def test_check_reports_a_failing_notebook_with_its_cell(tmp_path):
    require_modules("jupyter", "nbclient", "ipykernel")
    path = write_nb(
        tmp_path / "missing.ipynb",
        [code("path = 'no/such/file.csv'", "parameters"), code("data = open(path).read()")],
    )
    proc, data = _check_cli(path, tmp_path, "--json")
    assert proc.returncode == 1
    assert data["ok"] is False and data["failure"] == "notebook"
    assert data["notebook_error"].endswith(
        "missing.ipynb, cell 2: FileNotFoundError: [Errno 2] No such file or directory: "
        "'no/such/file.csv'"
    )
    # the notebook runs first; when it fails there is nothing to prove: no flow run
    assert data["flow_error"] is None
    assert data["skipped"] == {"flow": "not run: the notebook failed"}

    dies = write_nb(tmp_path / "dies.ipynb", [code("a = 1"), code("import os\n\nos._exit(3)")])
    proc, data = _check_cli(dies, tmp_path, "--json")
    assert proc.returncode == 1
    assert data["notebook_error"].endswith("dies.ipynb, cell 2: the kernel died (Kernel died)")


def test_check_cli_errors(tmp_path):
    proc, _ = _check_cli(tmp_path / "absent.ipynb", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "no such file" in proc.stderr
    path = write_nb(tmp_path / "x.ipynb", [code("a = 1")])
    proc, _ = _check_cli(path, tmp_path, "-p", "oops")
    assert proc.returncode == 2 and "expected -p name=value" in proc.stderr
    proc, _ = _check_cli(path, tmp_path, "--timeout", "0")
    assert proc.returncode == 2 and "--timeout" in proc.stderr
    proc, _ = _check_cli(path, tmp_path, "-p", "nope=1")
    assert proc.returncode == 2 and "the flow has no parameter nope (-p)" in proc.stderr
    proc, _ = _check_cli(path, tmp_path, "--kernel", "no-such-kernel")
    assert proc.returncode == 2 and "no Jupyter kernel named 'no-such-kernel'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_values_the_notebook_itself_does_not_reproduce_are_nondeterministic(tmp_path):
    """Unseeded randomness and an id() inside an object differ between two runs of the
    notebook itself: reported as such (the notebook ran twice, said in a note), not
    failing. With --repeat-notebook never they are plain mismatches."""
    require_modules("jupyter", "nbclient", "ipykernel")
    notebook = write_nb(
        tmp_path / "noisy.ipynb",
        [
            new_markdown_cell("# Draw"),
            code(
                "import random\n\n\nclass Model:\n    def __init__(self):\n"
                "        self.key = id(self)\n\n\nx = random.random()\nmodel = Model()"
            ),
            new_markdown_cell("## Use"),
            code("y = round(x * 10, 3)\nlabel = 'fixed'"),
        ],
    )
    from rich.console import Console

    from nb2flow.check import check_notebook
    from nb2flow.check.report import print_report

    report = check_notebook(notebook, cwd=tmp_path, timeout=120)
    rows = {row["name"]: row for row in report.to_json()["values"]}
    for name in ("x", "model", "y"):
        assert rows[name]["status"] == "nondeterministic in the notebook", rows[name]
        assert rows[name]["detail"].startswith("the notebook's two runs differ: ")
    assert rows["label"]["status"] == "equal"
    assert report.ok and report.compared == 1 and report.notebook_runs == 2
    assert report.notes == [
        "the notebook ran twice (--repeat-notebook auto) to check the values that differed: "
        "3 nondeterministic in the notebook (x, model, y)"
    ]
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    assert "PASS: 1 value compared (1 equal); 3 nondeterministic in the notebook" in text

    proc, data = _check_cli(notebook, tmp_path, "--json", "--repeat-notebook", "never")
    assert proc.returncode == 1 and data["notebook_runs"] == 1
    assert {row["name"]: row["status"] for row in data["values"]}["x"] == "different"


KERNEL = '"get_ipython" in globals()'  # true in the notebook's kernel, false in the flow


@pytest.mark.slow
def test_values_set_by_unseeded_global_draws_are_nondeterministic(tmp_path):
    """A value set in a cell that draws from NumPy's or random's global state, which the
    notebook never seeds, is nondeterministic even when the notebook's two runs happen to
    agree on it (cluster labels found twice the same): the check watches both states cell
    by cell. Here each value agrees between the notebook's runs and differs in the flow
    on purpose; only the cells that draw unseeded are excused. A model is compared with its
    second run by its predictions, as against the flow."""
    require_modules("jupyter", "nbclient", "ipykernel")
    require_modules("example", "numpy")
    notebook = write_nb(
        tmp_path / "draws.ipynb",
        [
            code("import os\nimport random\n\nimport numpy as np"),
            code(f"noise = np.random.rand()\nlabels = [0, 1] if {KERNEL} else [1, 0]"),
            code(""),  # not run by nbclient: the cells after it keep their numbers
            code(f"random.random()\npicked = 'a' if {KERNEL} else 'b'"),
            code(f"np.random.seed(0)\nseeded = np.random.rand() + (0 if {KERNEL} else 1)"),
            code(f"plain = 1 if {KERNEL} else 2"),
            code(
                "class Scaler:\n    def __init__(self):\n"
                "        self.w = 1 + int.from_bytes(os.urandom(4), 'big')\n\n"
                "    def predict(self, x):\n        return x * self.w\n\n\n"
                "x = np.arange(5.0)\nmodel = Scaler()"
            ),
        ],
    )
    from nb2flow.check import check_notebook

    report = check_notebook(notebook, cwd=tmp_path, timeout=120, split="cells")
    rows = {row["name"]: row for row in report.to_json()["values"]}
    status = {name: row["status"] for name, row in rows.items()}
    assert status["labels"] == status["picked"] == "nondeterministic in the notebook", rows
    assert rows["labels"]["detail"].startswith(
        "cell 2 sets it drawing from NumPy's global random state, which the notebook never "
        "seeds (its two runs leave it differently; they agreed on this value by chance); "
        "against the flow: "
    )
    assert rows["picked"]["detail"].startswith(
        "cell 4 sets it drawing from the random module's state"
    )
    assert status["noise"] == status["model"] == "nondeterministic in the notebook", rows
    assert rows["model"]["detail"].startswith("the notebook's two runs differ: predictions")
    assert status["seeded"] == status["plain"] == "different", rows  # seeded, or no draw
    assert status["x"] == "equal"
    assert not report.ok and report.notes[-1] == (
        "2 more set by cells drawing from an unseeded global random state (labels, picked): "
        "nondeterministic in the notebook"
    )


@pytest.mark.slow
def test_functions_figures_and_record_arrays_compare_end_to_end(tmp_path):
    """What the notebook computes with lambdas, a def, a matplotlib figure and a numpy
    recarray slice (which crashed the check) compares equal to what its flow computes."""
    require_modules("jupyter", "nbclient", "ipykernel")
    for module in ("numpy", "matplotlib"):
        require("example", importlib.util.find_spec(module) is not None, f"{module} missing")
    notebook = write_nb(
        tmp_path / "kinds.ipynb",
        [
            new_markdown_cell("# Data"),
            code(
                "import numpy as np\nimport matplotlib\nmatplotlib.use('Agg')\n"
                "import matplotlib.pyplot as plt\n\n"
                "table = np.zeros(4, dtype=[('a', int), ('b', float)]).view(np.recarray)\n"
                "part = table[1:3]\nscale = lambda v: v * 2\n\n\n"
                "def shift(v, by=1):\n    return v + by\n"
            ),
            new_markdown_cell("## Plot"),
            code(
                "fig, ax = plt.subplots()\nlines = ax.plot([0, 1], [shift(1), scale(2)])\n"
                "ax.set_title('t')"
            ),
        ],
    )
    proc, data = _check_cli(notebook, tmp_path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {row["name"]: (row["status"], row["detail"]) for row in data["values"]}
    assert rows["part"][0] == "equal" and rows["table"][0] == "equal"
    assert rows["scale"] == ("equal", "same source")  # a lambda: by its source
    assert rows["fig"] == ("equal", "plots the same data")
    assert rows["ax"] == ("equal", "plots the same data") and rows["lines"][0] == "equal"
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["threads", "processes:2"])
def test_a_later_cells_plt_calls_draw_on_a_new_figure_on_both_sides(tmp_path, monkeypatch, runner):
    """As in Jupyter (the inline backend closes a cell's figures when it ends), a later
    cell's ``plt.title`` draws on a new figure, not on the axes an earlier cell made: the
    notebook runs with the inline backend, and the flow closes each task's figures (output
    capture on, as its script runs). Before, the kernel ran with Agg and the flow kept its
    figures open: on threads both drew on the old axes, on processes only the notebook."""
    require_modules("jupyter", "nbclient", "ipykernel")
    require_modules("example", "matplotlib")
    monkeypatch.setenv("NB2FLOW_TASK_RUNNER", runner)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the flow's; the kernel's is Jupyter's own
    notebook = write_nb(
        tmp_path / "axes.ipynb",
        [
            code("import matplotlib.pyplot as plt"),
            new_markdown_cell("# Two panels"),
            code("fig, axs = plt.subplots(1, 2)\naxs[0].set_title('left')\nplt.show()"),
            new_markdown_cell("# Another figure"),
            code("plt.plot([1, 2])\ntitle = plt.title('later').get_text()\nplt.show()"),
            new_markdown_cell("# Look back"),
            code("titles = [ax.get_title() for ax in axs]"),
        ],
    )
    from nb2flow.check import check_notebook

    report = check_notebook(notebook, cwd=tmp_path, timeout=120)
    rows = {row["name"]: (row["status"], row["detail"]) for row in report.to_json()["values"]}
    assert rows["titles"] == ("equal", ""), rows
    assert rows["axs"][0] == "equal" and rows["title"][0] == "equal", rows
    assert report.ok


def test_a_report_that_compared_nothing_is_not_a_pass():
    from nb2flow.check import IGNORED, NONDETERMINISTIC, NOT_COMPARED, CheckReport, ValueRow

    rows = [
        ValueRow("lock", NOT_COMPARED),
        ValueRow("run_id", IGNORED),
        ValueRow("x", NONDETERMINISTIC),
    ]
    report = CheckReport(notebook="n.ipynb", rows=rows)
    data = report.to_json()
    assert (data["verdict"], data["ok"], data["failure"], data["compared"]) == (
        "nothing compared",
        False,
        None,
        0,
    )
    assert CheckReport(notebook="n.ipynb").verdict == "nothing compared"  # no values at all
    report.rows.append(ValueRow("y", "equal"))
    assert (report.verdict, report.ok, report.compared) == ("pass", True, 1)


@pytest.mark.slow
def test_a_check_that_compares_nothing_says_so_and_is_not_a_pass(tmp_path):
    require_modules("jupyter", "nbclient", "ipykernel")
    notebook = write_nb(
        tmp_path / "nothing.ipynb", [code("import threading\n\nlock = threading.Lock()")]
    )
    proc, _ = _check_cli(notebook, tmp_path)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # as pytest: nothing collected
    assert (
        "NOTHING COMPARED: 0 values compared; 1 not compared: nothing here proves the "
        "conversion" in proc.stdout
    )


def _pids(folder, prefix: str) -> list[int]:
    return [int(p.name.split("-")[-1]) for p in folder.glob(f"{prefix}-*")]


#: one cell, two behaviours: it runs as notebook code in a kernel, as a task in the flow;
#: each side notes its pid and that of a child process of its own
TWO_FACED = """import os
import subprocess
import sys
import time

side = "notebook" if "ipykernel" in sys.modules else "flow"
child = subprocess.Popen(["sleep", "300"])
for pid in (os.getpid(), child.pid):
    open(f"pid-{side}-{pid}", "w").close()
if side == FAILING:
    raise RuntimeError(f"the {side} fails")
time.sleep(300)
"""


def _two_faced(tmp_path, failing: str):
    return write_nb(
        tmp_path / f"{failing}-fails.ipynb",
        [code(f"FAILING = {failing!r}", "parameters"), code(TWO_FACED, "task:work")],
    )


@pytest.mark.slow
@pytest.mark.parametrize("failing", ["notebook", "flow"])
def test_when_one_side_fails_the_other_is_stopped_at_once(tmp_path, failing):
    """--parallel: the side that fails ends the check; the other one (which would sleep
    300 s) is stopped, with the processes it started. Without --parallel the notebook
    runs first, and when it fails the flow is not even started."""
    require_modules("jupyter", "nbclient", "ipykernel")
    other = "flow" if failing == "notebook" else "notebook"
    proc, data = _check_cli(_two_faced(tmp_path, failing), tmp_path, "--json", "--parallel")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert data["failure"] == failing
    assert f"RuntimeError: the {failing} fails" in data[f"{failing}_error"]
    assert data["skipped"] == {other: f"stopped: the {failing} failed first"}
    assert survivors(processes(_pids(tmp_path, "pid")), 10) == []

    if failing == "notebook":
        for leftover in tmp_path.glob("pid-*"):
            leftover.unlink()
        proc, data = _check_cli(_two_faced(tmp_path, failing), tmp_path, "--json")
        assert proc.returncode == 1 and data["skipped"] == {"flow": "not run: the notebook failed"}
        assert _pids(tmp_path, "pid-flow") == []
        assert survivors(processes(_pids(tmp_path, "pid")), 10) == []


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGKILL"])
def test_sigterm_or_kill_of_check_leaves_no_process_behind(tmp_path, signame):
    """Issue 13 item 10: SIGTERM to `nb2flow check` ends the kernel, the flow and every
    process they started (their process groups), and check exits 143. Even kill -9 of
    check leaves nothing: its children get SIGTERM from the kernel (PR_SET_PDEATHSIG)."""
    import signal
    import subprocess
    import sys
    import time

    require_modules("jupyter", "nbclient", "ipykernel")
    notebook = _two_faced(tmp_path, "neither")
    check = subprocess.Popen(
        [sys.executable, "-m", "nb2flow", "check", str(notebook), "--parallel"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(_pids(tmp_path, "pid")) < 4:  # both sides are in their long cell
            assert check.poll() is None, check.communicate()
            assert time.monotonic() < deadline, "the two sides did not start"
            time.sleep(0.2)
        family = tree(check.pid)  # check, the notebook runner, the kernel, the flow, ...
        assert {p.pid for p in family} >= set(_pids(tmp_path, "pid"))  # ... and their shells
    finally:
        check.send_signal(getattr(signal, signame))
    out, err = check.communicate(timeout=60)
    if signame == "SIGTERM":
        assert check.returncode == 143, out + err
        assert err.strip() == "terminated: the notebook and the flow were stopped"
        assert survivors(family, 10) == []
    else:  # the orphans die on their own (PR_SET_PDEATHSIG): give them a moment
        assert survivors(family, 30) == []
