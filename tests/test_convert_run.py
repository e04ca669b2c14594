"""Generated flows run (on the real runtime) and compute what the notebook computes."""

from __future__ import annotations

import json
import os

import pytest
from notebooks.nbbuild import (
    code,
    convert_returning_all,
    edge,
    md,
    run_cells,
    run_flow_values,
    run_script_flow,
    write,
)

from nb2flow.analysis.plan import PARAMETER, FromTask
from nb2flow.codegen import convert_notebook
from nb2flow.notebook.identifiers import identifier
from nb2flow.runtime.core.unset import UNSET
from tests.conftest import require_modules

NOTEBOOKS = {
    "mutations": [
        code("import statistics"),
        code("n = 5\nscale = 2.0", "parameters"),
        code("LIMIT = 100", "setup"),
        code("def double(v):\n    return v * 2"),
        md("## Make"),
        code("values = [double(i) for i in range(n)]\nconfig = {'scale': scale}"),
        md("## Count"),
        code("count = len(values)\nfirst = values[0]"),
        md("## Change in place"),
        code("values.append(LIMIT)\nconfig['seen'] = count\nvalues.sort(reverse=True)"),
        md("## Summaries"),
        code("mean = statistics.mean(values) * config['scale']\nif mean > 1000:\n    big = True"),
        code("total = 0\nfor v in values:\n    total += v\nlast = v"),
        code("LIMIT = LIMIT + 1\nsquares = {k: k * k for k in range(3)}"),
        code("def weigh(x):\n    return x * mean\nweighed = [weigh(v) for v in values[:2]]"),
        code(
            "tmp = 1\ndel tmp\nif (size := len(values)) > 3:\n    label = 'big'\nelse:\n    label = 'small'"
        ),
        code("print(mean, LIMIT)", "skip"),
    ],
    "reordered": [
        code("x = 1", "task:a"),
        code("y = x + 1", "task:c", "after:b"),
        code("x = 100", "task:b"),
        code("z = x + y", "task:d"),
    ],
    "magics": [
        code("%matplotlib inline\nimport os"),
        code("out = !echo hello\n%time n = len(out)"),
        code("%%time\nword = out[0].upper()"),
    ],
}


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_flow_returns_the_notebook_values(tmp_path, name):
    path = write(tmp_path / f"{name}.ipynb", NOTEBOOKS[name])
    conversion = convert_returning_all(path)
    assert conversion.output_names
    expected = run_cells(path)
    result = run_script_flow(conversion.script, tmp_path)
    assert set(result) == set(conversion.output_names)
    for key in conversion.output_names:
        # a name the notebook sets on some paths only is UNSET when the path was not taken
        assert result[key] == expected.get(key, UNSET), key


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_task_runs_hold_every_value_the_notebook_leaves(tmp_path, name):
    """As `nb2flow check` reads them: converted with every_value, from the task runs'
    outputs (keep_outputs), whatever the flow returns."""
    path = write(tmp_path / f"{name}.ipynb", NOTEBOOKS[name])
    conversion = convert_notebook(path, every_value=True)
    assert conversion.output_names != conversion.final_names  # the flow returns fewer
    expected = run_cells(path)
    values = run_flow_values(conversion, tmp_path)
    assert list(values) == conversion.final_names
    for key in conversion.final_names:
        assert values[key] == expected.get(key, UNSET), key


def test_parameters_from_the_flow_call(tmp_path):
    path = write(tmp_path / "p.ipynb", NOTEBOOKS["mutations"])
    conversion = convert_returning_all(path)
    expected = run_cells(path, n=8, scale=0.5)
    result = run_script_flow(conversion.script, tmp_path, n=8, scale=0.5)
    assert result == {k: expected.get(k, UNSET) for k in result}


def test_reader_of_the_old_value_finishes_before_the_in_place_change(tmp_path):
    # Without the ordering edge the mutation (instant) would overtake the slow reader on
    # the thread runner, and the reader would count the new key.
    cells = [
        code("import time"),
        code("d = {'a': 1}", "task:make"),
        code("time.sleep(0.3)\nn = len(d)", "task:slow_reader"),
        code("d['b'] = 2", "task:mutate"),
    ]
    path = write(tmp_path / "race.ipynb", cells)
    conversion = convert_returning_all(path)
    assert "wait_for=[n]" in conversion.script
    result = run_script_flow(conversion.script, tmp_path)
    assert result["n"] == 1 and result["d"] == {"a": 1, "b": 2}


def test_helper_reading_a_parameter_stays_in_the_flow(tmp_path):
    cells = [
        code("base = 10", "parameters"),
        code("def shift(x):\n    return x + base"),
        code("out = shift(1)", "task:use"),
    ]
    path = write(tmp_path / "helper.ipynb", cells)
    conversion = convert_returning_all(path)
    assert conversion.plan.module == ()
    assert run_script_flow(conversion.script, tmp_path, base=5)["out"] == 6


def test_a_helper_reading_a_global_waits_for_the_task_changing_it(tmp_path):
    cells = [
        code("import time"),
        code("registry = {}", "setup"),
        code("def lookup(key):\n    return registry.get(key)"),
        code("time.sleep(0.3)\nregistry['a'] = 1", "task:fill"),
        code("found = lookup('a')", "task:use"),
    ]
    path = write(tmp_path / "helper_global.ipynb", cells)
    conversion = convert_returning_all(path)
    # the changed registry comes in and is set as the module global `lookup` reads
    assert edge(conversion.plan, "fill", "use") == {"kind": "data", "vars": ["registry"]}
    assert conversion.plan.tasks["use"].globals == ("registry",)
    assert run_script_flow(conversion.script, tmp_path)["found"] == 1


def _sections(*cells: str) -> list:
    """An untagged notebook split by headings "# A", "# B"... above each code cell."""
    out = []
    for letter, source in zip("ABCDEFGH", cells, strict=False):
        out += [md(f"# {letter}"), code(source)]
    return out


def _same_as_the_notebook(tmp_path, name, cells):
    path = write(tmp_path / f"{name}.ipynb", cells)
    conversion = convert_returning_all(path)
    expected = run_cells(path)
    result = run_script_flow(conversion.script, tmp_path)
    assert result == {k: expected.get(k, UNSET) for k in conversion.output_names}
    return conversion, result


def test_a_function_setting_a_global_changes_it_in_the_calling_task(tmp_path):
    cells = _sections(
        "counter = 0\ndef bump():\n    global counter\n    counter += 1",
        "bump()\nbump()",
        "seen = counter",
    )
    conversion, result = _same_as_the_notebook(tmp_path, "bump", cells)
    plan = conversion.plan
    # bump needs nothing of its task: it moves to module level, one function for every task
    assert [b.cell for b in plan.module] == [2]
    assert plan.module[0].code.startswith("def bump():\n    global counter")
    assert plan.tasks["a"].outputs == ("counter",) and plan.tasks["a"].globals == ()
    assert plan.tasks["b"].inputs == ("counter",)
    assert plan.tasks["b"].outputs == ("counter",) and plan.tasks["b"].globals == ("counter",)
    assert edge(plan, "b", "c")["vars"] == ["counter"]
    assert result == {"counter": 2, "seen": 2}
    # worker processes call their own module's bump, on the global the task sets
    assert _run_script(conversion, tmp_path, "--task-runner", "processes:2") == result


def test_a_def_rebinding_a_name_runs_where_the_notebook_has_it(tmp_path):
    """Only the first binding of a name moves to module level: a ``def`` after a cell that
    bound the name (a lambda, an earlier ``def``) runs in the flow at its place, so the
    cells between see the earlier binding and the cells after see the ``def``."""
    cells = _sections(
        "def scale(v):\n    return v * 2",
        "early = scale(1)",
        "def scale(v):\n    return v * 3",
        "late = scale(1)\nadd = lambda x, y: x - y\nfirst = add(5, 3)",
        "def add(x, y):\n    return x + y",
        "second = add(5, 3)",
    )
    conversion, result = _same_as_the_notebook(tmp_path, "rebound", cells)
    assert [b.cell for b in conversion.plan.module] == [2]  # the first `def scale` only
    assert result == {"early": 2, "late": 3, "first": 2, "second": 8}
    # worker processes get the later functions as values from the tasks defining them
    assert _run_script(conversion, tmp_path, "--task-runner", "processes:2") == result


def test_a_generator_passed_to_a_library_call_is_changed_in_place(tmp_path, capsys):
    """``shuffle(x, random_state=rng)`` draws from ``rng``: the task changes it in place.
    A task reading the old state runs first (inspect names the rule), and the task drawing
    next gets the generator as the call left it, on threads and on worker processes (which
    each hold a copy: before, they got the first state and drew the same numbers again)."""
    require_modules("example", "numpy", "sklearn")
    from nb2flow.analysis.plan import Reason, Rule
    from nb2flow.cli import main

    cells = _sections(
        "import numpy as np\nfrom sklearn.utils import shuffle\n\nrng = np.random.RandomState(0)",
        "seen = int(rng.get_state()[2])",
        "mixed = shuffle(np.arange(20), random_state=rng).tolist()",
        "after = int(rng.randint(1000))",
    )
    path = write(tmp_path / "drawn.ipynb", cells)
    conversion = convert_notebook(path, outputs=["seen", "mixed", "after"])
    expected = {k: run_cells(path)[k] for k in ("seen", "mixed", "after")}
    plan = conversion.plan
    assert plan.edge("b", "c").reasons == (Reason(Rule.GENERATOR_DRAWN, "rng"),)
    assert plan.tasks["c"].outputs == ("mixed", "rng") and "rng" in plan.tasks["d"].inputs
    assert run_script_flow(conversion.script, tmp_path) == expected
    assert _run_script(conversion, tmp_path, "--task-runner", "processes:2") == expected
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "b -> c (order): rng (generator-drawn)" in out
    assert "generator-drawn: reads a random generator before the task passes it to a call" in out


def test_a_function_setting_a_global_that_needs_task_values_stays_in_its_task(tmp_path):
    cells = _sections(
        "step = 2\ncounter = 0\ndef bump():\n    global counter\n    counter += step",
        "bump()",
        "seen = counter",
    )
    conversion, result = _same_as_the_notebook(tmp_path, "bump_step", cells)
    assert conversion.plan.module == ()  # it reads `step`, a task value
    assert result == {"step": 2, "counter": 2, "seen": 2}


def test_a_module_level_function_setting_a_global(tmp_path):
    cells = [
        code("total = 10", "setup"),
        code("def add(v):\n    global total\n    total += v"),
        code("add(5)", "task:first"),
        code("add(1)\nafter = total", "task:second"),
    ]
    conversion, result = _same_as_the_notebook(tmp_path, "add", cells)
    assert edge(conversion.plan, "first", "second")["vars"] == ["total"]
    assert result == {"total": 16, "after": 16}


def test_a_module_level_helper_reading_a_global_a_task_sets(tmp_path):
    cells = _sections("def scale(v):\n    return v * factor", "factor = 3", "out = scale(2)")
    conversion, result = _same_as_the_notebook(tmp_path, "scale", cells)
    plan = conversion.plan
    assert [b.cell for b in plan.module] == [2]  # the def stays module level
    assert plan.tasks["c"].inputs == ("factor",) and plan.tasks["c"].globals == ("factor",)
    assert edge(plan, "b", "c") == {"kind": "data", "vars": ["factor"]}
    assert not [w for w in conversion.warnings if "factor" in w]
    assert result == {"factor": 3, "out": 6}


def test_helpers_reading_a_global_through_another_helper_and_a_rebinding(tmp_path):
    cells = [
        code("def base():\n    return offset\ndef shifted(v):\n    return v + base()"),
        code("offset = 1", "task:one"),
        code("a = shifted(1)\noffset = 100\nb = shifted(1)", "task:two"),
        code("c = list(map(shifted, [0]))", "task:three"),
    ]
    _, result = _same_as_the_notebook(tmp_path, "chain", cells)
    assert (result["a"], result["b"], result["c"]) == (2, 101, [100])


def test_a_change_through_an_alias_is_ordered_with_readers_of_the_original(tmp_path):
    cells = [
        code("import time"),
        code("rows = [1]", "task:make"),
        code("view = rows", "task:alias"),
        code("time.sleep(0.3)\nbefore = len(rows)", "task:slow_reader"),
        code("view.append(2)", "task:change"),
        code("after = len(rows)", "task:reader"),
    ]
    path = write(tmp_path / "alias.ipynb", cells)
    conversion = convert_returning_all(path)
    plan = conversion.plan
    assert edge(plan, "slow_reader", "change")["kind"] == "order"
    assert edge(plan, "change", "reader") == {"kind": "order", "vars": ["rows"]}
    result = run_script_flow(conversion.script, tmp_path)
    assert (result["before"], result["after"]) == (1, 2)


def test_a_helper_changing_its_argument_changes_the_callers_variable(tmp_path):
    cells = [
        code("import time"),
        code("def add_total(table):\n    table['total'] = sum(table.values())"),
        code("def cleaned(table):\n    table = dict(table)\n    table.pop('a')\n    return table"),
        code("t = {'a': 1, 'b': 2}", "task:make"),
        code("time.sleep(0.3)\nkeys = sorted(t)", "task:slow_reader"),
        code("add_total(t)\nc = cleaned(t)", "task:change"),
        code("n = len(t)", "task:count"),
    ]
    path = write(tmp_path / "arg_change.ipynb", cells)
    conversion = convert_returning_all(path)
    plan = conversion.plan
    assert sorted(plan.tasks["change"].outputs) == ["c", "t"]
    assert edge(plan, "slow_reader", "change")["kind"] == "order"
    assert edge(plan, "change", "count")["vars"] == ["t"]
    result = run_script_flow(conversion.script, tmp_path)
    assert result["keys"] == ["a", "b"] and result["n"] == 3
    assert result["c"] == {"b": 2, "total": 3}


@pytest.mark.slow
def test_generated_script_runs_on_the_process_runner_from_the_command_line(tmp_path):
    import json
    import subprocess
    import sys

    from nb2flow.codegen import write_script

    path = write(tmp_path / "mutations.ipynb", NOTEBOOKS["mutations"])
    script = write_script(convert_returning_all(path), tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, str(script), "--n", "6", "--task-runner", "processes:2", "--json", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    expected = run_cells(path, n=6)
    as_json = json.dumps({k: expected.get(k, UNSET) for k in result}, default=repr)
    assert result == json.loads(as_json)  # UNSET is written as its repr


UNBOUND_LATER = [
    code("k = 1", "parameters"),
    # bound in one branch only, no earlier value
    code("if k > 2:\n    x = [k]", "task:maybe"),
    code("try:\n    y = x + [1]\nexcept NameError:\n    y = ['unbound']", "task:use_x"),
    # deleted on one path
    code("d = [1]\nif k < 2:\n    del d", "task:drop"),
    code("try:\n    z = d + [2]\nexcept NameError:\n    z = ['deleted']", "task:use_d"),
    # an `except E as err` target: Python deletes it when the handler ends
    code("try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    msg = str(err)", "task:catch"),
    code("try:\n    seen = repr(err)\nexcept NameError:\n    seen = 'gone'", "task:use_err"),
    # a later reader of a maybe-unbound input that binds it on some paths only
    code("if k > 5:\n    x = [0]\ntry:\n    w = x\nexcept NameError:\n    w = None", "task:again"),
]


@pytest.mark.parametrize("k", [1, 3])
def test_a_name_left_unbound_stays_unbound_in_later_tasks(tmp_path, k):
    path = write(tmp_path / "unbound.ipynb", UNBOUND_LATER)
    conversion = convert_returning_all(path)
    plan = conversion.plan
    assert plan.tasks["maybe"].maybe_unbound == ("x",)
    assert plan.tasks["use_x"].maybe_unbound_inputs == ("x",)
    assert plan.tasks["drop"].maybe_unbound == ("d",)
    assert plan.tasks["use_d"].maybe_unbound_inputs == ("d",)
    assert plan.tasks["use_err"].maybe_unbound_inputs == ("err",)
    # `again` may leave x unbound: it came in maybe unbound and is bound on one path only
    assert plan.tasks["again"].maybe_unbound_inputs == ("x",)
    assert plan.tasks["again"].maybe_unbound == ("x",)
    expected = run_cells(path, k=k)
    result = run_script_flow(conversion.script, tmp_path, k=k)
    assert result == {name: expected.get(name, UNSET) for name in conversion.output_names}
    assert (result["y"], result["z"], result["seen"]) == (
        ["unbound"] if k == 1 else [3, 1],
        ["deleted"] if k == 1 else [1, 2],
        "gone",
    )
    # worker processes: UNSET crosses process boundaries as the same singleton
    processes = _run_script(conversion, tmp_path, "--task-runner", "processes:2", "--k", str(k))
    assert processes == json.loads(json.dumps(result, default=repr))


def _run_script(conversion, directory, *options):
    """Run the generated script as a user would: from ``directory``, the script elsewhere."""
    import json
    import subprocess
    import sys

    from nb2flow.codegen import write_script

    script = write_script(conversion, directory / "out")
    proc = subprocess.run(
        [sys.executable, str(script), "--json", "-q", "--no-store", *options],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _notebook_values(path, monkeypatch, *modules):
    """The notebook's values, run as Jupyter runs it: the working directory on sys.path."""
    import sys

    monkeypatch.chdir(path.parent)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    try:
        return run_cells(path)
    finally:
        for module in modules:
            sys.modules.pop(module, None)


def test_a_module_the_notebook_writes_is_imported_after_it_is_written(tmp_path, monkeypatch):
    cells = _sections(
        "%%file helper_mod_a.py\ndef f():\n    return 41",
        "from helper_mod_a import f",
        "x = f() + 1",
    )
    path = write(tmp_path / "writes_module.ipynb", cells)
    conversion = convert_returning_all(path)
    plan = conversion.plan
    assert plan.imports == ()  # not hoisted above the task writing the file
    assert plan.module == ()
    assert plan.tasks["b"].outputs == ("f",)
    assert edge(plan, "a", "b") == {"kind": "order", "vars": ["helper_mod_a.py"]}
    assert edge(plan, "b", "c") == {"kind": "data", "vars": ["f"]}
    expected = _notebook_values(path, monkeypatch, "helper_mod_a")
    (tmp_path / "helper_mod_a.py").unlink()
    assert _run_script(conversion, tmp_path) == {"x": expected["x"]} == {"x": 42}


def test_imports_after_a_sys_path_change_stay_in_place(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper_mod_b.py").write_text("def g():\n    return 2\n")
    cells = [
        code("import json\nimport sys\nsys.path.append('lib')\nfrom helper_mod_b import g"),
        code("import os\nimport helper_mod_b\ny = g() + helper_mod_b.g()\nn = len(json.dumps(y))"),
    ]
    path = write(tmp_path / "path_change.ipynb", cells)
    conversion = convert_returning_all(path)
    plan = conversion.plan
    # standard-library imports still move to the top; the others stay after the change
    assert plan.imports == ("import json", "import sys", "import os")
    assert "from helper_mod_b import g" in plan.tasks["cell_1"].code
    assert "import helper_mod_b" in plan.tasks["cell_2"].code
    assert not plan.imports_written_files
    expected = _notebook_values(path, monkeypatch, "helper_mod_b")
    assert _run_script(conversion, tmp_path) == {"y": expected["y"], "n": expected["n"]}


def test_a_parameters_cell_below_a_task_setting_the_same_name(tmp_path):
    cells = [
        code("a = [0]"),
        code("c = a + [9]"),
        code("a = [1]\nb = [2]", "parameters"),
        code("d = a + b"),
    ]
    path = write(tmp_path / "late_params.ipynb", cells)
    conversion = convert_returning_all(path)
    plan = conversion.plan
    assert plan.tasks["cell_4"].sources == {"a": PARAMETER, "b": PARAMETER}
    assert "a" not in plan.finals  # the final `a` is the parameter
    expected = run_cells(path)
    result = run_script_flow(conversion.script, tmp_path)
    assert result == {k: expected[k] for k in conversion.output_names} == {"c": [0, 9], "d": [1, 2]}


def test_a_file_opened_with_as_is_not_a_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = _sections(
        "import pickle\nmodel = {'w': 3}",
        "with open('model.bin', 'wb') as f_out:\n    pickle.dump(model, f_out)\nsize = 1",
        "with open('model.bin', 'rb') as f_in:\n    loaded = pickle.load(f_in)",
    )
    conversion, result = _same_as_the_notebook(tmp_path, "with_files", cells)
    plan = conversion.plan
    assert plan.tasks["b"].outputs == ("size",) and plan.tasks["c"].outputs == ("loaded",)
    assert edge(plan, "b", "c") == {"kind": "order", "vars": ["model.bin"]}  # the file
    assert conversion.output_names == ["model", "size", "loaded"]
    assert result["loaded"] == {"w": 3}


def test_a_file_object_a_later_task_reads_is_passed_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = _sections(
        "with open('notes.txt', 'w') as fh:\n    fh.write('x')",
        "closed = fh.closed\nname = fh.name",
    )
    conversion, result = _same_as_the_notebook(tmp_path, "file_read_later", cells)
    assert conversion.plan.tasks["a"].outputs == ("fh",)  # a later task reads it
    assert "fh" not in conversion.output_names  # but the flow does not return it
    assert result == {"closed": True, "name": "notes.txt"}


def test_a_global_only_a_function_sets_is_not_a_module_level_name(tmp_path):
    # h_a moves to module level; `a` exists only once it is called, inside the task
    cells = [code("def h_a():\n    global a\n    a = [0]\nh_a()"), code("b = a + [1]")]
    conversion, result = _same_as_the_notebook(tmp_path, "global_only", cells)
    assert "a" not in conversion.plan.module_names
    assert result == {"a": [0], "b": [0, 1]}


@pytest.mark.parametrize("heading", ["Module", "Param", "Parameter", "Module level"])
def test_a_heading_naming_a_source_kind_is_an_ordinary_task(tmp_path, heading):
    """Where a value comes from is typed (task / parameter / module level): a task named
    `module` or `param` by its heading is a task like any other (it used to be taken for
    the module level, NameError at run time, or for a parameter, KeyError in convert)."""
    cells = [
        code("import math"),
        code("n = 2", "parameters"),
        md(f"## {heading}"),
        code("a = [n, math.floor(2.5)]"),
        md("## Next"),
        code("b = a + [n]"),
    ]
    conversion, result = _same_as_the_notebook(tmp_path, "heading", cells)
    task = identifier(heading, lower=True)
    assert conversion.plan.tasks["next"].sources == {"a": FromTask(task), "n": PARAMETER}
    assert result == {"a": [2, 2], "b": [2, 2, 2]}


def test_a_parameters_cell_with_an_import_keeps_its_other_code(tmp_path):
    cells = [code("a = 1\nimport os\nx = os.sep + str(a)", "parameters"), code("y = x * 2")]
    conversion, result = _same_as_the_notebook(tmp_path, "params_import", cells)
    assert "import os" not in conversion.plan.tasks["derived_parameters"].code  # hoisted
    assert result == {"x": f"{os.sep}1", "y": f"{os.sep}1" * 2}


def test_cells_below_a_parameters_cell_start_a_new_task(tmp_path):
    # the task above the parameters cell does not run the cells below it: they read `n`
    cells = [code("a = [1]", "task:first"), code("n = 2", "parameters"), code("b = a * n")]
    conversion, result = _same_as_the_notebook(tmp_path, "params_between", cells)
    assert conversion.plan.order == ("first", "cell_3")
    assert conversion.plan.tasks["cell_3"].sources == {"a": FromTask("first"), "n": PARAMETER}
    assert result == {"a": [1], "b": [1, 1]}


def test_a_change_through_an_alias_changes_both_names(tmp_path):
    cells = [
        code("a = [1]", "task:make"),
        code("b = a\nb.append(2)", "task:alias"),  # changes `a` too
        code("c = list(a)\nd = a\n", "task:view"),
        code("d += [3]\ne = len(a)", "task:grow"),  # `+=` changes the list in place
    ]
    conversion, result = _same_as_the_notebook(tmp_path, "aliases", cells)
    assert conversion.plan.tasks["alias"].outputs == ("b", "a")
    assert result["c"] == [1, 2] and result["e"] == 3


def test_tasks_using_process_wide_state_keep_their_order(tmp_path):
    """A seed set in one task and the draws of two others: without an edge the draws could
    run at the same time, in either order (pyplot's current figure, mlflow's experiment,
    os.environ... are the same kind of state)."""
    cells = [
        code("import random\nimport os"),
        code("random.seed(7)", "task:seed"),
        code("x = random.random()", "task:draw_x"),
        code("y = random.random()", "task:draw_y"),
        code("z = random.Random(1).random()", "task:own_generator"),
        code("os.environ['NB2FLOW_TEST_STATE'] = '1'", "task:set_env"),
        code("env = os.environ.get('NB2FLOW_TEST_STATE')", "task:read_env"),
    ]
    conversion, result = _same_as_the_notebook(tmp_path, "state", cells)
    plan = conversion.plan
    assert edge(plan, "draw_x", "draw_y") == {"kind": "order", "vars": ["random"]}
    assert not plan.has_edge("draw_y", "own_generator")  # its own generator: no shared state
    assert "wait_for=[x]" in conversion.script
    # the seed and the environment variable are configuration: they moved to the flow's
    # setup, which runs before every task (the tasks that held them are left empty)
    assert [b.cell for b in plan.module if b.kind == "configuration"] == [2, 6]
    assert not plan.has_edge("seed", "draw_x") and not plan.has_edge("set_env", "read_env")
    assert result["env"] == "1"
