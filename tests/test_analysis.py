"""Read/write sets per cell, task grouping, and the plan graph."""

from __future__ import annotations

import pytest
from notebooks.nbbuild import code, edge, md, write

from nb2flow.analysis import build_plan
from nb2flow.analysis.grouping import heading_name
from nb2flow.analysis.names import analyse
from nb2flow.analysis.plan import MODULE, PARAMETER, FromTask
from nb2flow.errors import Nb2flowError

# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, reads, writes, mutated",
    [
        ("x = x + 1", ["x"], ["x"], []),
        ("y = 1\nprint(y)", ["print"], ["y"], []),
        ("df['a'] = 1", ["df"], ["df"], ["df"]),
        ("obj.attr = v", ["v", "obj"], ["obj"], ["obj"]),
        ("x += 1", ["x"], ["x"], ["x"]),  # in place for lists, frames, arrays
        ("del d[k]", ["k", "d"], ["d"], ["d"]),
        ("model.fit(X, y)", ["model", "X", "y"], ["model"], ["model"]),
        ("lst.append(v)", ["lst", "v"], ["lst"], ["lst"]),
        ("df.head()\np = model.predict(X)", ["df", "model", "X"], ["p"], []),
        ("df.fillna(0, inplace=True)", ["df"], ["df"], ["df"]),
        ("df['a'].fillna(0, inplace=True)", ["df"], ["df"], ["df"]),
        # comprehension and lambda scopes keep their own names
        ("r = [i * k for i in data if i]", ["data", "k"], ["r"], []),
        ("f = lambda a: a + b", ["b"], ["f"], []),
        ("s = {k: v for k, v in d.items()}", ["d"], ["s"], []),
        # walrus in a comprehension binds in the cell
        ("r = [w := i for i in data]", ["data"], ["w", "r"], []),
        ("if (n := len(a)) > 1:\n    pass", ["len", "a"], ["n"], []),
        # for / with targets, tuple unpacking
        ("for i, (j, k) in pairs:\n    pass", ["pairs"], ["i", "j", "k"], []),
        (
            "with open(p) as fh, ctx() as (a, b):\n    pass",
            ["open", "p", "ctx"],
            ["fh", "a", "b"],
            [],
        ),
        ("(a, b), *c = t", ["t"], ["a", "b", "c"], []),
        # functions: free names are reads, params are not, global assignments are writes
        (
            "def f(a, b=dflt):\n    global G\n    G = a + c\n    return h(b)",
            ["dflt", "c", "h"],
            ["G", "f"],
            [],
        ),
        (
            "class A(Base):\n    x = y\n    def m(self):\n        return x + self.z",
            ["Base", "y", "x"],
            ["A"],
            [],
        ),
        ("import numpy as np\nnp.random.seed(1)", [], ["np"], ["np"]),
        # a method whose result is used returns a new value, unless it is known to change
        # its object; one whose result is thrown away changes it unless known to be pure
        ("X = M.tocsc()", ["M"], ["X"], []),
        ("M.tocsc()", ["M"], ["M"], ["M"]),
        ("y = lst.pop()", ["lst"], ["lst", "y"], ["lst"]),
        ("X = sc.fit_transform(A)", ["sc", "A"], ["sc", "X"], ["sc"]),
        ("df = pd.read_parquet(p)", ["pd", "p"], ["df"], []),
    ],
)
def test_read_write_sets(source, reads, writes, mutated):
    names = analyse(source)
    assert names.reads == tuple(reads)
    assert names.writes == tuple(writes)
    assert names.mutated == tuple(mutated)


def test_conditional_writes_do_not_hide_the_old_value():
    both = analyse("if c:\n    a = 1\nelse:\n    a = 2\nprint(a)")
    assert "a" not in both.reads and "a" in both.definite
    one = analyse("if c:\n    a = 1\nprint(a)")
    assert "a" in one.reads and "a" not in one.definite
    loop = analyse("for i in xs:\n    total = 0\nprint(total)")
    assert "total" in loop.reads


def test_del_and_star_import():
    names = analyse("del tmp\nfrom os.path import *")
    assert names.reads == ("tmp",) and names.deleted == {"tmp"}
    assert names.star_imports == ("os.path",)


# -- plans -----------------------------------------------------------------------------------


def _plan(tmp_path, cells, **kw):
    return build_plan(write(tmp_path / "nb.ipynb", cells), **kw)


def test_tagged_grouping_inputs_outputs_and_edges(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("import math"),
            code("n = 10\nname = 'x'", "parameters"),
            md("## Load"),
            code("data = list(range(n))", "task:load", "retries:2"),
            code("extra = [1]"),  # joins load
            code("total = sum(data) + sum(extra)", "task:total"),
            code("root = math.sqrt(total)", "task:root"),
            code("print(data)", "skip"),
        ],
    )
    assert plan.order == ("load", "total", "root")
    load = plan.tasks["load"]
    assert load.cells == (4, 5)
    assert load.inputs == ("n",) and load.sources == {"n": PARAMETER}
    assert load.outputs == ("data", "extra")
    assert load.options == {"retries": 2}
    assert load.doc == "## Load"
    assert edge(plan, "load", "total") == {"kind": "data", "vars": ["data", "extra"]}
    assert edge(plan, "total", "root")["vars"] == ["total"]
    assert not plan.has_edge("load", "root")
    assert [p.name for p in plan.parameters] == ["n", "name"]
    assert plan.skipped == (8,)
    assert list(plan.finals) == ["data", "extra", "total", "root"]
    assert "import math" in plan.imports


def test_in_place_change_orders_readers_before_the_mutation(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("df = {'a': 1}", "task:make"),
            code("n = len(df)", "task:count"),
            code("df['b'] = 2", "task:mutate"),
            code("m = len(df)", "task:recount"),
        ],
    )
    assert edge(plan, "make", "count")["kind"] == "data"
    assert edge(plan, "count", "mutate") == {"kind": "order", "vars": ["df"]}
    assert edge(plan, "make", "mutate")["kind"] == "data"
    assert plan.tasks["mutate"].outputs == ("df",)
    # the reader after the change reads the mutated version
    assert edge(plan, "mutate", "recount")["vars"] == ["df"]
    assert not plan.has_edge("make", "recount")


def test_independent_tasks_have_no_edge(tmp_path):
    plan = _plan(
        tmp_path,
        [code("a = 1", "task:a"), code("b = 2", "task:b"), code("c = a + b", "task:c")],
    )
    assert not plan.has_edge("a", "b") and not plan.has_edge("b", "a")
    assert set(plan.predecessors("c")) == {"a", "b"}


def test_headings_split_and_unique_names(tmp_path):
    plan = _plan(
        tmp_path,
        [
            md("# Prep"),
            code("a = 1"),
            code("b = a + 1"),
            md("# Prep"),
            code("c = b * 2"),
            md("## Plot it!"),
            code("def helper():\n    return 3"),  # module level: heading carries over
            code("d = helper() + c"),
        ],
    )
    assert plan.split == "headings"
    assert plan.order == ("prep", "prep_2", "plot_it")
    assert plan.tasks["prep"].cells == (2, 3)
    assert [b.cell for b in plan.module] == [7]


def test_cells_split_without_headings(tmp_path):
    plan = _plan(tmp_path, [code("a = 1"), code("b = a"), code("c = b")])
    assert plan.split == "cells"
    assert plan.order == ("cell_1", "cell_2", "cell_3")


def test_derived_names_never_take_an_explicit_task_name(tmp_path):
    plan = _plan(tmp_path, [md("# Load"), code("a = 1"), code("b = a", "task:load")])
    assert plan.order == ("load_2", "load")


def test_duplicate_task_names_are_an_error(tmp_path):
    with pytest.raises(Nb2flowError, match=r"cell 2: task name 'a' is already used by cell 1"):
        _plan(tmp_path, [code("x = 1", "task:a"), code("y = 2", "task:a")])


def test_after_cycle_is_an_error_naming_the_cycle(tmp_path):
    with pytest.raises(Nb2flowError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        _plan(tmp_path, [code("x = 1", "task:a", "after:b"), code("y = x", "task:b")])


def test_after_unknown_task(tmp_path):
    with pytest.raises(Nb2flowError, match=r"cell 1: tag after:nope names no task"):
        _plan(tmp_path, [code("x = 1", "task:a", "after:nope")])


def test_after_adds_an_ordering_edge(tmp_path):
    plan = _plan(
        tmp_path,
        [
            # a computed path: the converter cannot see the file (the tag orders them)
            code("open(''.join('f'), 'w').write('1')", "task:w"),
            code("r = open(''.join('f')).read()", "task:r", "after:w"),
        ],
    )
    assert edge(plan, "w", "r") == {"kind": "after", "vars": []}


def test_tasks_naming_a_file_another_task_writes_are_ordered_with_it(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("old = open('in.txt').read() if False else ''", "task:peek"),
            code("with open('./in.txt', 'w') as fh:\n    fh.write('1')", "task:write"),
            code("import pandas\nn = len(open('in.txt').read())", "task:read"),
            code("Path = None\nother = 'elsewhere.txt'", "task:unrelated"),
            code("open('in.txt', 'a').write('2')", "task:append"),
        ],
    )
    assert edge(plan, "peek", "write") == {"kind": "order", "vars": ["in.txt"]}  # old contents
    assert edge(plan, "write", "read") == {"kind": "order", "vars": ["in.txt"]}
    assert edge(plan, "read", "append") == {"kind": "order", "vars": ["in.txt"]}
    assert edge(plan, "write", "append") == {"kind": "order", "vars": ["in.txt"]}
    assert not [e for e in plan.edges() if "unrelated" in (e.source, e.target)]


def test_syntax_error_names_cell_and_line(tmp_path):
    with pytest.raises(Nb2flowError, match=r"nb\.ipynb, cell 2, line 2: syntax error"):
        _plan(tmp_path, [code("a = 1"), code("b = 2\nc = (")])


def test_unknown_names_and_star_imports_warn(tmp_path):
    plan = _plan(
        tmp_path, [code("a = foo + 1", "task:a"), code("b = later", "task:b"), code("later = 1")]
    )
    warnings = plan.warnings
    assert any("cell 1: reads `foo`, which no cell defines" in w for w in warnings)
    assert any("cell 2: reads `later`, which no earlier cell defines" in w for w in warnings)
    star = _plan(tmp_path, [code("from math import *"), code("a = sqrt(2)")])
    assert any("import *" in w for w in star.warnings)
    assert not any("sqrt" in w for w in star.warnings)


def test_module_level_names_rebound_by_a_task_are_passed_in(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("LIMIT = 3", "setup"),
            code("LIMIT = LIMIT + 1", "task:bump"),
            code("x = LIMIT", "task:use"),
        ],
    )
    assert plan.tasks["bump"].sources == {"LIMIT": MODULE}
    assert plan.tasks["use"].sources == {"LIMIT": FromTask("bump")}


def test_parameters_cell_with_code_keeps_the_code_as_a_task(tmp_path):
    plan = _plan(tmp_path, [code("a = 1\nb = a * 2", "parameters"), code("c = b", "task:c")])
    assert [p.name for p in plan.parameters] == ["a"]
    assert plan.order == ("derived_parameters", "c")
    assert plan.tasks["derived_parameters"].inputs == ("a",)


def test_open_files_and_exceptions_are_not_returned(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("with open(__file__) as fh:\n    text = 'x'", "task:read"),
            code("try:\n    v = int('x')\nexcept ValueError as err:\n    v = 0", "task:parse"),
        ],
    )
    assert list(plan.finals) == ["text", "v"]


def test_markdown_documents_the_code_cell_below_it(tmp_path):
    plan = _plan(
        tmp_path,
        [
            md("# My analysis"),
            md("What it does."),
            code("import math"),
            md("## Parameters\nHow many."),
            code("n = 3", "parameters"),
            md("## Helpers\nRead things."),
            code("def f(x):\n    return x"),
            md("Set up."),
            code("K = 2", "setup"),
            md("## Look"),
            code("print(n)", "skip"),
            md("## Use\nUse them."),
            code("y = f(n) * K", "task:use"),
            md("More."),
            code("z = y + 1", "task:more"),
        ],
    )
    # markdown above the first code cell (whatever its heading level) describes the flow
    assert plan.flow_doc == "# My analysis\n\nWhat it does."
    assert plan.parameters_doc == "## Parameters\nHow many."
    docs = {block.kind: block.doc for block in plan.module}
    assert docs == {"definitions": "## Helpers\nRead things.", "setup": "Set up."}
    # a task's docstring is the markdown right above its first cell, nothing carried over
    assert plan.tasks["use"].doc == "## Use\nUse them."
    assert plan.tasks["more"].doc == "More."


def test_a_bare_parameters_heading_is_not_flow_documentation(tmp_path):
    plan = _plan(
        tmp_path, [md("# T"), code("a = 1"), md("## Parameters"), code("n = 1", "parameters")]
    )
    assert plan.parameters_doc == ""


def test_skipped_cells_need_not_be_python(tmp_path):
    plan = _plan(tmp_path, [code("a = 1", "task:a"), code("library(ggplot2) <- ", "skip")])
    assert plan.skipped == (2,)


def test_absurdly_nested_code_is_a_clear_error(tmp_path):
    with pytest.raises(Nb2flowError, match="cell 1"):
        _plan(tmp_path, [code("x = " + "(" * 300 + "1" + ")" * 300)])


@pytest.mark.parametrize(
    "heading, name",
    [
        ("3.1 DecisionTreeRegressor", "decisiontreeregressor"),
        ("**5. Predict the Test_data**", "predict_the_test_data"),
        ("A. Intro", "intro"),
        ("2021 sales", "_2021_sales"),
        ("Plot it!", "plot_it"),
        ("1.", "_1"),
    ],
)
def test_heading_names_drop_section_numbers(heading, name):
    assert heading_name(heading, "cell_1") == name


def test_loop_variables_are_not_returned_unless_read_later(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("total = 0\nfor i in range(3):\n    total += i", "task:a"),
            code("for j in range(2):\n    pass", "task:b"),
            code("k = j * 2", "task:c"),
        ],
    )
    assert list(plan.finals) == ["total", "k"]
    assert plan.tasks["b"].outputs == ("j",)


def test_recursive_function_does_not_read_itself():
    names = analyse("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)")
    assert names.reads == () and names.writes == ("fact",)


def test_calls_to_notebook_functions_read_and_write_the_globals_they_use(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("def rate():\n    return factor\ndef charge(v):\n    return v * rate()"),
            code("def tick():\n    global ticks\n    ticks += 1"),
            code("factor = 2\nticks = 0", "task:make"),
            code("paid = charge(3)", "task:pay"),
            code("tick()", "task:count"),
            code("apply = [tick for _ in range(2)]", "task:pass_on"),
        ],
    )
    # charge -> rate reads `factor`: it comes in, to be set as the module global
    assert plan.tasks["pay"].inputs == ("factor",) and plan.tasks["pay"].globals == ("factor",)
    assert plan.tasks["pay"].outputs == ()  # no later task reads `paid`, the flow returns nothing
    assert plan.finals["paid"] == "pay"
    # tick sets `ticks`: a read and a write of it, wherever tick is called or passed on
    assert plan.tasks["count"].inputs == ("ticks",)
    assert plan.tasks["count"].outputs == ("ticks",)
    assert edge(plan, "count", "pass_on")["vars"] == ["ticks"]
    assert plan.finals["ticks"] == "pass_on"


@pytest.mark.parametrize(
    "path, names",
    [
        ("helper.py", {"helper"}),
        ("./pkg/__init__.py", {"pkg"}),
        ("pkg/sub/mod.py", {"pkg", "mod"}),
        ("../src/utils.py", {"utils"}),
        ("/abs/lib/tool.py", {"tool"}),
        ("data/train.csv", {"data"}),
        ("my-file.py", set()),
    ],
)
def test_module_names_a_written_file_may_be_imported_as(path, names):
    from nb2flow.analysis.effects import module_names_of_path

    assert module_names_of_path(path) - {"__init__"} == names


def test_pinned_imports_follow_writers_and_path_changes():
    import ast

    from nb2flow.analysis.effects import pinned_imports

    cells = [
        "import pandas as pd\nwith open('tools.py', 'w') as fh:\n    fh.write('')",
        "import tools\nimport os\nfrom tools import x",
        "import subprocess\nsubprocess.run('wget http://h/more.py', shell=True)",
        "from pathlib import Path\nPath('other.py').write_text('')\nopen('notes.py')",
        "import more, other, notes",
        "import sys\nsys.path[:0] = ['lib']\nimport json\nimport yaml",
    ]
    trees = [(i + 1, ast.parse(c)) for i, c in enumerate(cells)]
    pins = pinned_imports(trees)
    found = {
        (cell, ast.unparse(s)): (sorted(pins[s].cells), list(pins[s].why))
        for cell, t in trees
        for s in t.body
        if s in pins
    }
    assert found == {
        (2, "import tools"): ([1], ["tools.py"]),
        (2, "from tools import x"): ([1], ["tools.py"]),
        (5, "import more, other, notes"): ([3, 4], ["http://h/more.py", "other.py"]),
        (6, "import yaml"): ([6], ["sys.path"]),
    }


def test_an_except_name_is_unbound_after_its_handler(tmp_path):
    names = analyse("try:\n    a = b + [1]\nexcept NameError as e:\n    a = [2]")
    assert "e" in names.deleted and "e" not in names.definite
    plan = _plan(
        tmp_path,
        [
            code("try:\n    a = 1\nexcept NameError as e:\n    a = 2", "task:one"),
            code("try:\n    b = a\nexcept NameError as e:\n    b = 0", "task:two"),
        ],
    )
    # the second task does not take `e` in (Python deleted it), nor does the first return it
    assert plan.tasks["two"].inputs == ("a",) and plan.tasks["one"].outputs == ("a",)


def test_a_setup_cell_importing_what_a_task_writes_is_a_warning(tmp_path):
    path = write(
        tmp_path / "n.ipynb",
        [
            code("%%writefile tool_mod.py\nX = 1", "task:write"),
            code("import tool_mod", "setup"),
        ],
    )
    from nb2flow.codegen import convert_notebook

    warnings = convert_notebook(path).warnings
    assert any(
        "cell 2: setup cell imports what task code writes (`tool_mod.py`)" in w for w in warnings
    )


def test_markdown_above_an_imports_only_cell_introduces_the_next_task(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("x = 1", "task:first"),
            md("## Using KNN\nWhy."),
            code("import math"),
            md("Fit it."),
            code("y = math.sqrt(x)", "task:fit"),
        ],
    )
    assert plan.tasks["fit"].doc == "## Using KNN\nWhy.\n\nFit it."


@pytest.mark.parametrize(
    "source",
    [
        "d = 1\nif k:\n    del d",
        "d = 1\nwhile k:\n    del d",
        "d = 1\nfor i in k:\n    del d",
        "d = 1\ntry:\n    del d\nexcept E:\n    pass",
        "d = 1\ntry:\n    pass\nexcept E:\n    del d",
        "d = 1\nmatch k:\n    case 1:\n        del d",
    ],
)
def test_a_name_deleted_on_some_path_is_not_surely_bound(source):
    names = analyse(source)
    assert "d" in names.deleted and "d" not in names.definite
    assert "d" in analyse(source.replace("del d", "d = 2")).definite


def test_maybe_unbound_outputs_and_inputs(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("if k > 2:\n    x = 1", "task:branch"),
            code("d = 1\nif k:\n    del d", "task:drop"),
            code("try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    pass", "task:catch"),
            code("print(x, d, err)", "task:read"),
            code("x = 2", "task:bind"),
            code("print(x)", "task:read_bound"),
        ],
    )
    assert plan.tasks["branch"].maybe_unbound == ("x",)
    assert plan.tasks["drop"].maybe_unbound == ("d",)
    assert plan.tasks["catch"].maybe_unbound == ("err",)
    assert plan.tasks["read"].maybe_unbound_inputs == ("x", "d", "err")
    assert plan.tasks["bind"].maybe_unbound == ()  # surely bound from here on
    assert plan.tasks["read_bound"].maybe_unbound_inputs == ()


def test_a_setup_cell_calling_a_function_that_sets_a_global_binds_it(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("def h():\n    global a\n    a = [5]\nh()", "setup"),
            code("a, b = [1], a", "task:swap"),
        ],
    )
    assert "a" in plan.module_names
    assert plan.tasks["swap"].inputs == ("a",)  # rebound in the task: passed in


def test_modules_the_magic_translation_imports_are_module_level_names(tmp_path):
    plan = _plan(tmp_path, [code("!echo hi"), code("%cd .\nx = !ls"), code("y = len(x)")])
    assert {"subprocess", "os"} <= set(plan.needs) and {"subprocess", "os"} <= set(
        plan.module_names
    )
    assert not [w for w in plan.warnings if "subprocess" in w or "`os`" in w], plan.warnings


def test_a_module_a_task_calls_stays_a_module(tmp_path):
    """`pd.read_parquet(...)` in a task does not make `pd` a task value: a def using `pd`
    below it stays at module level (it used to be a task passed along as data)."""
    plan = _plan(
        tmp_path,
        [
            code("import json"),
            code("text = json.dumps([1])\njson.loads(text)"),
            code("def load(t):\n    return json.loads(t)"),
            code("value = load(text)"),
        ],
    )
    assert [b.cell for b in plan.module] == [1, 3]
    assert plan.tasks["cell_4"].inputs == ("text",)


# -- the flow's setup: setup cells and process-wide configuration -----------------------------


def _setup_cells(plan):
    return [(b.cell, b.kind) for b in plan.module if b.in_setup]


def test_configuration_moves_to_the_setup_and_its_task_goes(tmp_path):
    """A cell that only configures process-wide state (the issue's mlflow cell) is not a
    task of its own any more: its statements run in the setup, in every process."""
    plan = _plan(
        tmp_path,
        [
            code("import mlflow\nimport warnings\nimport matplotlib.pyplot as plt"),
            code("uri = 'sqlite:///m.db'\nname = 'exp'", "parameters"),
            code("mlflow.set_tracking_uri(uri)\nmlflow.set_experiment(name)"),
            code("warnings.filterwarnings('ignore')\nplt.rcParams['font.size'] = 9"),
            code("with mlflow.start_run():\n    mlflow.log_metric('m', 1)"),
        ],
    )
    assert list(plan.tasks) == ["cell_5"]  # cells 3 and 4 held nothing else
    assert _setup_cells(plan) == [(3, "configuration"), (4, "configuration")]
    assert plan.setup is not None and plan.setup.parameters == ("uri", "name")
    assert plan.setup.globals == ()
    assert not plan.warnings, plan.warnings


def test_configuration_stays_where_earlier_code_used_that_state(tmp_path):
    """Moving a statement before code that used the same state would change that code:
    a second style after a plot, a seed after draws, stay in their tasks (in order)."""
    plan = _plan(
        tmp_path,
        [
            code("import numpy as np\nimport matplotlib.pyplot as plt"),
            code("plt.style.use('ggplot')\nnp.random.seed(0)", "task:a"),
            code("x = np.random.rand(3)\nplt.plot(x)", "task:b"),
            code("plt.style.use('classic')\nnp.random.seed(1)", "task:c"),
            code("k = 2", "task:d"),
            code("np.random.seed(k)", "task:e"),  # reads a task value: stays too
        ],
    )
    assert _setup_cells(plan) == [(2, "configuration")]
    assert "plt.style.use('classic')" in plan.tasks["c"].code
    assert "np.random.seed(k)" in plan.tasks["e"].code
    assert "moved to the flow's setup: plt.style.use('ggplot')" in plan.tasks["a"].code
    assert not plan.has_edge("a", "b")  # a's state moved out: nothing to order
    assert plan.has_edge("b", "c")


def test_a_tagged_task_left_empty_by_its_configuration_stays(tmp_path):
    plan = _plan(
        tmp_path,
        [
            code("import random"),
            code("random.seed(3)", "task:seed"),
            code("x = random.random()", "task:draw", "after:seed"),
        ],
    )
    assert list(plan.tasks) == ["seed", "draw"] and _setup_cells(plan) == [(2, "configuration")]


def test_setup_cells_and_the_definitions_that_need_them_make_the_setup(tmp_path):
    """Setup code binds module globals (declared global in the setup function); a def
    whose default reads one of them runs in the setup too, after it."""
    plan = _plan(
        tmp_path,
        [
            code("import os"),
            code("n = 3", "parameters"),
            code("SEED = n * 2\nHOME = os.sep", "setup"),
            code("def pick(x, seed=SEED):\n    return x + seed"),
            code("def plain(x):\n    return x + SEED"),
            code("y = pick(1) + plain(1)", "task:use"),
        ],
    )
    assert _setup_cells(plan) == [(3, "setup"), (4, "definitions")]
    assert plan.setup.parameters == ("n",) and plan.setup.globals == ("SEED", "HOME", "pick")
    assert [(b.cell, b.in_setup) for b in plan.module] == [
        (1, False),
        (3, True),
        (4, True),
        (5, False),
    ]
    assert not plan.warnings, plan.warnings
