"""What flows return (issue 11, "What flows return"): a task returns only what later tasks
read; the flow returns what the notebook's user asks for (``output:NAME`` tags, ``--outputs``),
by default what the notebook's last cell showing values displays; not every name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from notebooks.nbbuild import code, md, run_cells, write

from nb2flow.cli import main
from nb2flow.codegen import convert_notebook, write_script
from nb2flow.errors import Nb2flowError
from nb2flow.notebook.tags import grammar, is_known_tag, parse_tags

# a cell makes a value no later task reads (`rows`, as `train_dicts`) and one that cannot be
# pickled (a lock, as an xgboost DMatrix); the last cell shows `total`
MODEL = [
    code("n = 4", "parameters"),
    md("## Load"),
    code(
        "import threading\n\nrows = list(range(n))\nlock = threading.Lock()\ndata = [r * 2 for r in rows]"
    ),
    md("## Sum"),
    code("total = sum(data)\ncount = len(data)"),
    md("## Show"),
    code("len(data), type(data)"),
    code("total"),
]


def _plan(tmp_path, cells, **options):
    return convert_notebook(write(tmp_path / "nb.ipynb", cells), **options).plan


def test_the_tag_grammar_knows_output_names():
    tags = parse_tags(["task:train", "output:rmse", "output:run_id", "output:rmse"], "nb, cell 3")
    assert tags.outputs == ["rmse", "run_id"]
    assert is_known_tag("output:rmse") and not is_known_tag("output")
    assert grammar()["output"] == "output" and "class" in grammar()["hard_keywords"]
    assert parse_tags(["output:type"], "nb, cell 3").outputs == ["type"]  # a soft keyword
    for word in grammar()["hard_keywords"]:  # what the extension reads is what is refused
        with pytest.raises(Nb2flowError):
            parse_tags([f"output:{word}"], "nb, cell 3")
    for bad in ("output:", "output:1x", "output:class", "output:a,b", "output:a b"):
        with pytest.raises(Nb2flowError, match=r"nb, cell 3: malformed tag .*output: needs a"):
            parse_tags([bad], "nb, cell 3")
    # a skip cell's output: tags are ignored with a warning
    assert parse_tags(["skip", "output:x"], "nb, cell 3").warnings


def test_by_default_the_flow_returns_what_the_last_cell_showing_values_shows(tmp_path):
    plan = _plan(tmp_path, MODEL)
    assert dict(plan.outputs) == {"total": "sum"}
    assert plan.outputs_rule == "shown by cell 8"
    # every value the notebook leaves is still known (nb2flow check compares them)
    assert list(plan.finals) == ["rows", "lock", "data", "total", "count"]
    # each task returns only what a later task reads, and what the flow returns
    assert plan.tasks["load"].outputs == ("data",)
    assert plan.tasks["sum"].outputs == ("total",)
    # the "Show" cells only show: they join `sum` (which records what they displayed)
    assert list(plan.tasks) == ["load", "sum"] and plan.tasks["sum"].shows == (7, 8)


@pytest.mark.parametrize(
    ("last", "returned"),
    [
        ("print('total', total, count)", ["total", "count"]),
        ("total, count", ["total", "count"]),
        ("[count]", ["count"]),
        ("total;", ["data"]),  # ends with ';': shows nothing, the cell above shows `data`
        ("!echo done", ["data"]),  # a shell command shows its output, not a value
        ("n", ["data"]),  # a parameter: not a value a task computes
    ],
)
def test_the_shown_values_follow_ipythons_display_rules(tmp_path, last, returned):
    cells = [*MODEL[:6], code("data"), code(last)]
    assert list(_plan(tmp_path, cells).outputs) == returned


def test_output_tags_name_what_the_flow_returns(tmp_path):
    cells = list(MODEL)
    cells[4] = code("total = sum(data)\ncount = len(data)", "output:count", "output:data")
    plan = _plan(tmp_path, cells)
    assert list(plan.outputs) == ["count", "data"] and plan.outputs_rule == "output: tags"
    assert plan.tasks["sum"].outputs == ("count",)
    # --outputs wins over the tags
    plan = _plan(tmp_path, cells, outputs=("rows",))
    assert list(plan.outputs) == ["rows"] and plan.outputs_rule == "--outputs"
    assert plan.tasks["load"].outputs == ("rows", "data")
    assert _plan(tmp_path, cells, outputs=()).outputs == {}


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("output:n", "is a flow parameter"),
        ("output:threading", "is set at module level"),
        ("output:nowhere", "is not set by any task"),
    ],
)
def test_an_output_tag_naming_no_task_value_is_one_clear_error(tmp_path, capsys, tag, why):
    cells = list(MODEL)
    cells[6] = code("len(data), type(data)", tag)
    path = write(tmp_path / "nb.ipynb", cells)
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}, cell 7: tag {tag}: ") and why in err
    assert "the notebook's values: rows, lock, data, total, count" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_the_outputs_option_on_the_command_line(tmp_path, capsys):
    path = write(tmp_path / "nb.ipynb", MODEL)
    out = tmp_path / "out"
    assert main(["convert", str(path), "-o", str(out), "--outputs", "count,total"]) == 0
    assert "returns: count, total (--outputs)" in capsys.readouterr().out
    script = (out / "nb.py").read_text()
    assert '    return {"count": count, "total": total}\n' in script
    assert "--outputs count,total" in script  # the header's regenerate command repeats it
    with pytest.raises(SystemExit):
        main(["convert", str(path), "--outputs", "total,class"])
    assert "'class' is not a variable name" in capsys.readouterr().err
    assert main(["inspect", str(path), "--outputs", ""]) == 0
    assert "flow returns: nothing (--outputs)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(
    "runner",
    [
        ["--task-runner", "threads"],
        ["--task-runner", "processes:2"],
        pytest.param(["--executor", "dask"], marks=pytest.mark.dask, id="dask"),
    ],
)
def test_a_value_nothing_reads_does_not_travel_or_break_the_cache(tmp_path, runner):
    """The lock (as an xgboost DMatrix) stays in its task: no Unavailable warning on a
    process pool or Dask, and the task's cache entry is written (the second run is Cached)."""
    if runner[0] == "--executor":
        import importlib.util

        from conftest import require

        found = importlib.util.find_spec("distributed") is not None
        require("dask", found, "dask[distributed] is not installed")
    cells = list(MODEL)
    cells[2] = code(MODEL[2].source, "task:load", "cache")
    cells[4] = code(MODEL[4].source, "task:sum")
    cells[6] = code(MODEL[6].source, "task:show")
    path = write(tmp_path / "nb.ipynb", cells)
    script = write_script(convert_notebook(path), tmp_path / "out")
    argv = [sys.executable, str(script), *runner, "--json"]
    for _run in range(2):  # the second run takes `load` from the cache
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout) == {"total": run_cells(path)["total"]}
        assert "Unavailable" not in proc.stderr and "pickle" not in proc.stderr, proc.stderr
        assert "3 of 3 tasks completed" in proc.stderr, proc.stderr
    assert "1 from cache" in proc.stderr, proc.stderr


# Display-only cells (issue 11): split by cells, each would be a task shipping `x` and `y`.
SHOWING = [
    code(
        "import subprocess\n\nimport matplotlib\n\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt"
    ),
    code("x = [1, 2, 3]\ny = [v * 2 for v in x]"),
    code("len(x), len(y)"),
    code("type(x)"),
    code("plt.plot(x, y)\nplt.show()"),
    code("!echo shell"),
    code("rmse = sum(y) / len(y)"),
    code("print('rmse', rmse)"),
    code("rmse"),
    code("x.append(4)"),  # an in-place change: a task of its own, as before
]


def test_display_only_cells_join_the_task_above_and_record_what_they_show(tmp_path):
    conversion = convert_notebook(write(tmp_path / "nb.ipynb", SHOWING), split="cells")
    plan = conversion.plan
    assert list(plan.tasks) == ["cell_1", "cell_2", "cell_7", "cell_10"]
    assert plan.tasks["cell_2"].cells == (2, 3, 4, 5, 6) and plan.tasks["cell_2"].shows == (3, 4)
    assert plan.tasks["cell_7"].cells == (7, 8, 9) and plan.tasks["cell_7"].shows == (9,)
    from nb2flow.commands.inspect import plan_dict

    assert [t["shows"] for t in plan_dict(plan, [])["tasks"]] == [[], [3, 4], [9], []]
    # what the tasks return: what later tasks read (cell_10 changes x), and the shown rmse
    assert plan.tasks["cell_2"].outputs == ("x", "y")
    assert dict(plan.outputs) == {"rmse": "cell_7"}
    script = conversion.script
    assert "from nb2flow import artifacts, flow, run_cli, run_in_folder, task\n" in script
    assert '    artifacts.last_value((len(x), len(y)), "cell 3")\n' in script
    assert '    artifacts.last_value(type(x), "cell 4")\n' in script
    assert '    artifacts.last_value(rmse, "cell 9")\n' in script
    # print, plt.show() and !cmd show themselves; x.append(4) is done for its effect
    assert "    plt.show()\n" in script and '    print("rmse", rmse)\n' in script
    assert "last_value(x.append" not in script
    # the source map still points the recorded lines at their cells
    from nb2flow.generated import locate, parse_source_map

    lines = script.splitlines()
    _, entries = parse_source_map(lines)
    line = lines.index('    artifacts.last_value((len(x), len(y)), "cell 3")') + 1
    assert locate(entries, line) == (3, 1)


@pytest.mark.parametrize("runner", ["threads", pytest.param("processes:2", marks=pytest.mark.slow)])
def test_the_displayed_values_are_artifacts_of_the_task_run(tmp_path, monkeypatch, runner):
    import runpy

    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "matplotlib.pyplot" in sys.modules:  # a figure another test left open would be
        sys.modules["matplotlib.pyplot"].close("all")  # the one `plt.plot` draws on
    conversion = convert_notebook(write(tmp_path / "nb.ipynb", SHOWING), split="cells")
    script = tmp_path / "nb_flow.py"
    script.write_text(conversion.script)
    main_flow = runpy.run_path(str(script), run_name="nb_flow")["main"]
    run = main_flow.with_options(task_runner=runner, log_prints=True)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.result() == {"rmse": 4.0}
    by_task = {t.id: t.name for t in run.task_runs}
    shown = [(by_task[a.task_run_id], a.kind, a.name, a.text) for a in run.view.artifacts]
    assert ("cell_2", "value", "cell 3", "(3, 3)") in shown
    assert ("cell_2", "value", "cell 4", "<class 'list'>") in shown
    assert ("cell_7", "value", "cell 9", "4.0") in shown
    assert [s[1] for s in shown if s[0] == "cell_2"].count("image") == 1  # the plot


def test_a_notebook_using_the_name_artifacts_keeps_it(tmp_path):
    from notebooks.nbbuild import run_script_flow

    cells = [code("flow = 3\nartifacts = [flow]"), code("artifacts")]
    conversion = convert_notebook(write(tmp_path / "nb.ipynb", cells), split="cells")
    script = conversion.script
    assert (
        "import nb2flow as _nb2flow\nfrom nb2flow import artifacts as _nb2flow_artifacts\n"
        in script
    )
    assert '    _nb2flow_artifacts.last_value(artifacts, "cell 2")\n' in script
    assert run_script_flow(script, tmp_path) == {"artifacts": [3]}


# display(df) in a task (issue 11): in the notebook it shows the frame below the cell; in the
# flow it is an output of the task run (`show --json`), not a print
DISPLAYING = [
    code("import pandas as pd"),
    code(
        "df = pd.DataFrame({'trip': [1, 2], 'minutes': [7.5, 12.25]})\ndisplay(df)\n"
        "total = float(df['minutes'].sum())",
        "task:frame",
        "output:total",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "runner",
    [
        ["--task-runner", "threads"],
        ["--task-runner", "processes:2"],
        pytest.param(["--task-runner", "dask:2"], marks=pytest.mark.dask, id="dask"),
    ],
)
def test_display_in_a_task_is_an_artifact_of_its_task_run(tmp_path, runner):
    from conftest import require, require_modules

    require_modules("example", "pandas")
    if runner[1].startswith("dask"):
        import importlib.util

        found = importlib.util.find_spec("distributed") is not None
        require("dask", found, "dask[distributed] is not installed")
    script = write_script(convert_notebook(write(tmp_path / "nb.ipynb", DISPLAYING)), tmp_path)
    text = script.read_text()
    assert "    nb2flow.artifacts.ipython_display(*objs, **kwargs)\n" in text
    argv = [sys.executable, str(script), *runner, "--json", "-q"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == {"total": 19.75}
    assert "minutes" not in proc.stdout + proc.stderr  # recorded, not printed

    def nb2flow(*args: str):
        out = subprocess.check_output([sys.executable, "-m", "nb2flow", *args, "--json"])
        return json.loads(out)

    run = nb2flow("runs", "--limit", "1")[0]
    shown = nb2flow("show", run["id"])
    frame = next(t["id"] for t in shown["tasks"] if t["name"] == "frame")
    [artifact] = [a for a in shown["artifacts"] if a["task_run_id"] == frame]
    assert artifact["kind"] == "value" and "text/html" in artifact["parts"]
    assert artifact["text"].split() == ["trip", "minutes", "0", "1", "7.50", "1", "2", "12.25"]
    assert not [log for log in shown["logs"] if "minutes" in str(log)]


def test_display_outside_a_run_prints(tmp_path, capsys):
    """The stand-in, called with no run (a script's function imported elsewhere): printed, as
    the script's reader would expect on a terminal; with output capture off, printed too."""
    from nb2flow import artifacts, flow

    artifacts.ipython_display([1, 2], 3)  # (as IPython would, when a test started one)
    assert capsys.readouterr().out == "[1, 2]\n3\n"

    @flow(log_prints=False)
    def shows() -> None:
        artifacts.ipython_display({"a": 1})

    run = shows(return_state=True)
    assert run.state == "Completed"
    assert capsys.readouterr().out == "{'a': 1}\n"
    assert [(a.kind, a.text) for a in run.view.artifacts] == [("value", "{'a': 1}")]
