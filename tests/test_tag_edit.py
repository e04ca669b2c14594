"""Tagging tools: several cells at once, and literals made flow parameters (issue 11,
"Parameters without editing code"), through :func:`nb2flow.notebook.edit.edit_cells` (shared
with the Jupyter extension) and `nb2flow tag`."""

from __future__ import annotations

import ast
import copy
import json
import re
import tempfile
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from notebooks.nbbuild import code, convert_returning_all, md, run_cells, run_script_flow, write

from nb2flow.cli import main
from nb2flow.errors import Nb2flowError
from nb2flow.notebook.edit import edit_cells, parse_cell_numbers

READ = code("def read_parquet(path):\n    return f'rows of {path}'")
LOADS = [
    md("# Taxi"),
    READ,
    md("## Load"),
    code("df_train = read_parquet('./data/green_tripdata_2021-01.parquet')\nn = len(df_train)"),
    code('df_val = read_parquet("./data/green_tripdata_2021-02.parquet")\nrate = 0.25 * n'),
]


def _notebook(cells):
    nb = nbformat.v4.new_notebook(cells=copy.deepcopy(cells))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def test_cell_lists_and_ranges():
    assert parse_cell_numbers("9,10", 12) == [9, 10]
    assert parse_cell_numbers("3-5", 12) == [3, 4, 5]
    assert parse_cell_numbers(" 1, 3-5,4 ,8", 12) == [1, 3, 4, 5, 8]
    assert parse_cell_numbers("7", 7) == [7]
    for text, message in [
        ("0", "no cell 0 (the notebook has 12 cells"),
        ("5-13", "no cell 13"),
        ("5-3", "the first number is larger"),
        ("x", "bad cell list 'x'"),
        ("1,,2", "bad cell list"),
    ]:
        with pytest.raises(Nb2flowError, match=re.escape(message)):
            parse_cell_numbers(text, 12, "nb.ipynb")


def test_a_literal_the_notebook_reads_becomes_a_parameter_with_that_default():
    """The issue's case: no parameters cell yet. The literal becomes a validated name, the
    new `parameters` cell (tagged, placed before the first code cell) assigns it the
    literal as written; the input notebook is not changed."""
    nb = _notebook(LOADS)
    before = copy.deepcopy(nb)
    edit = edit_cells(
        nb,
        cells=[4],
        params=[("train_path", "./data/green_tripdata_2021-01.parquet")],
        label="taxi.ipynb",
    )
    assert nb == before  # pure: a new notebook comes out
    cells = edit.notebook.cells
    assert len(cells) == len(LOADS) + 1
    params = cells[1]
    assert params.metadata["tags"] == ["parameters"] and "id" in params
    assert params.source == "train_path = './data/green_tripdata_2021-01.parquet'"
    assert cells[4].source == "df_train = read_parquet(train_path)\nn = len(df_train)"
    assert cells[5].source == LOADS[4].source  # other cells untouched
    assert edit.changes == [
        "cell 4: './data/green_tripdata_2021-01.parquet' -> parameter train_path",
        "cell 2: a new cell tagged parameters: "
        "train_path = './data/green_tripdata_2021-01.parquet' (the cells after it move "
        "down by one)",
    ]

    second = edit_cells(
        edit.notebook,
        params=[("val_path", '"./data/green_tripdata_2021-02.parquet"'), ("share", "0.25")],
    )
    cells = second.notebook.cells
    assert cells[1].source == (
        "train_path = './data/green_tripdata_2021-01.parquet'\n"
        'val_path = "./data/green_tripdata_2021-02.parquet"\nshare = 0.25'
    )
    assert cells[5].source == "df_val = read_parquet(val_path)\nrate = share * n"


def test_the_edited_notebook_converts_to_a_flow_with_those_parameters(tmp_path, capsys):
    path = write(tmp_path / "taxi.ipynb", LOADS)
    argv = ["tag", str(path), "--cell", "4-5", "--param"]
    assert main([*argv, "train_path=./data/green_tripdata_2021-01.parquet"]) == 0
    out = capsys.readouterr().out
    assert "cell 4: './data/green_tripdata_2021-01.parquet' -> parameter train_path" in out
    assert main(["tag", str(path), "--param", "share=0.25", "--param", "n_rows=n"]) == 2
    assert "no literal 'n' in any cell" in capsys.readouterr().err
    assert main(["tag", str(path), "--param", "share=0.25"]) == 0
    assert capsys.readouterr().out == "cell 6: 0.25 -> parameter share\ncell 2: + share = 0.25\n"
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["default"]) for p in data["parameters"]] == [
        ("train_path", "'./data/green_tripdata_2021-01.parquet'"),
        ("share", "0.25"),
    ]
    conversion = convert_returning_all(path)  # the flow returns every value, to compare
    compile(conversion.script, "taxi.py", "exec")
    rows = len("rows of ./data/green_tripdata_2021-01.parquet")
    assert run_script_flow(conversion.script, tmp_path, share=0.5)["rate"] == 0.5 * rows
    assert run_cells(path)["df_train"] == "rows of ./data/green_tripdata_2021-01.parquet"


def test_tag_several_cells_at_once(tmp_path, capsys):
    path = write(tmp_path / "nb.ipynb", [code("a = 1"), code("b = a"), md("x"), code("c = b")])
    assert main(["tag", str(path), "--cell", "1,2", "--add", "cache"]) == 0
    assert main(["tag", str(path), "--cell", "2-4", "--add", "retries:2"]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == [
        "cell 2: tags cache, retries:2",
        "cell 3: tags retries:2",
        "cell 4: tags retries:2",
    ]
    tags = [c.metadata.get("tags") for c in nbformat.read(str(path), as_version=4).cells]
    assert tags == [["cache"], ["cache", "retries:2"], ["retries:2"], ["retries:2"]]
    before = path.read_bytes()
    assert main(["tag", str(path), "--cell", "1,9", "--add", "skip"]) == 2
    assert "no cell 9" in capsys.readouterr().err
    assert main(["tag", str(path), "--cell", "1-2", "--add", "task", "--add", "skip"]) == 2
    assert "cell 1: conflicting tags task, skip" in capsys.readouterr().err
    assert path.read_bytes() == before  # all or nothing


@pytest.mark.parametrize(
    "source, value, replaced, default",
    [
        ("x = f(-0.5)", "-0.5", "x = f(p)", "-0.5"),
        ("x = 2 - 5", "5", "x = 2 - p", "5"),
        ("x = 2 - 5", "-5", None, None),  # a subtraction, not a negative literal
        ("verbose = True or False", "True", "verbose = p or False", "True"),
        ("x = g(10, '10', 10.0)", "10", "x = g(p, '10', 10.0)", "10"),
        ("x = g(10, '10', 10.0)", "'10'", "x = g(10, p, 10.0)", "'10'"),
        ("x = g(10, 10.0)", "10.0", "x = g(10, p)", "10.0"),
        ("x = h('a', 'a')  # 'a' here too", "a", "x = h(p, p)  # 'a' here too", "'a'"),
        ("%time x = h(r'C:\\d')", "C:\\d", "%time x = h(p)", "r'C:\\d'"),
        ("x = f'{y}' + 'y'", "y", "x = f'{y}' + p", "'y'"),
    ],
)
def test_which_literals_a_value_matches(source, value, replaced, default):
    nb = _notebook([code("y = 1"), code(source)])
    if replaced is None:
        with pytest.raises(
            Nb2flowError, match=re.escape(f"nb.ipynb, cell 2: no literal {value!r}")
        ):
            edit_cells(nb, cells=[2], params=[("p", value)], label="nb.ipynb")
        return
    cells = edit_cells(nb, cells=[2], params=[("p", value)]).notebook.cells
    assert cells[2].source == replaced
    assert cells[0].source == f"p = {default}"


def test_without_cells_every_readable_code_cell_is_searched():
    shell = code("%%bash\necho it's 'x.csv'")
    nb = _notebook([shell, code("a = load('x.csv')"), md("'x.csv'"), code("b = ['x.csv']")])
    edit = edit_cells(nb, params=[("path", "x.csv")])
    assert [c.source for c in edit.notebook.cells] == [
        "path = 'x.csv'",
        shell.source,
        "a = load(path)",
        "'x.csv'",
        "b = [path]",
    ]
    with pytest.raises(Nb2flowError, match="cell 1: cannot read the cell's code"):
        edit_cells(nb, cells=[1, 2], params=[("path", "x.csv")])


def test_an_existing_parameters_cell_gets_the_assignment_and_a_parameter_can_be_reused():
    nb = _notebook([code("n = 4", "parameters"), code("a = load('x.csv')"), code("b = 'x.csv'")])
    edit = edit_cells(nb, cells=[2], params=[("path", "x.csv")])
    assert edit.notebook.cells[0].source == "n = 4\npath = 'x.csv'"
    again = edit_cells(edit.notebook, cells=[3], params=[("path", "x.csv")])  # same default
    assert again.notebook.cells[0].source == "n = 4\npath = 'x.csv'"
    assert again.notebook.cells[2].source == "b = path"


@pytest.mark.parametrize(
    "cells, argv, message",
    [
        ([code("a = f('x')")], ([1], "2x", "x"), "parameter name '2x' is not a Python identifier"),
        ([code("a = f('x')")], ([1], "class", "x"), "parameter name 'class' is not a Python"),
        ([code("a = f('x')")], ([1], "a-b", "x"), "(try 'a_b')"),
        ([code("a = f('x')")], ([1], "f", "x"), "nb.ipynb, cell 1: the name 'f' is in use"),
        ([code("a = f('x')")], ([1], "p", "y"), "nb.ipynb, cell 1: no literal 'y' in this cell"),
        ([md("# 'x'"), code("a = 'x'")], ([1], "p", "x"), "nb.ipynb, cell 1: not a code cell"),
        (
            [code("a = f('x')"), code("n = 1", "parameters")],
            ([1], "p", "x"),
            "nb.ipynb, cell 2: the parameters cell comes after cell 1",
        ),
        (
            [code("n = 1", "parameters"), code("a = f('x')")],
            ([1], "p", "1"),
            "nb.ipynb, cell 1: this is the parameters cell",
        ),
        (
            [code("n = 1", "parameters"), code("a = f('x')")],
            ([2], "n", "x"),
            "nb.ipynb, cell 1: 'n' is already a parameter, with default 1",
        ),
        ([code("a = f('x)")], ([1], "p", "x"), "nb.ipynb, cell 1: cannot read the cell's code"),
    ],
)
def test_parameters_that_cannot_be_made_are_one_clear_error(cells, argv, message):
    numbers, name, value = argv
    nb = _notebook(cells)
    with pytest.raises(Nb2flowError, match=re.escape(message)):
        edit_cells(nb, cells=numbers, params=[(name, value)], label="nb.ipynb")


def test_tag_param_cli_errors_are_one_line_and_change_nothing(tmp_path, capsys):
    path = write(tmp_path / "nb.ipynb", [code("a = open('x.csv')")])
    before = path.read_bytes()
    for argv, message in [
        (["--param", "oops"], "bad --param 'oops': expected NAME=VALUE"),
        (["--param", "=x"], "bad --param '=x'"),
        (["--param", "p=y.csv"], "no literal 'y.csv' in any cell"),
        (["--auto", "--param", "p=x.csv"], "use either --auto"),
        (["--cell", "1"], "give --add TAG, --remove TAG or --param"),
    ]:
        assert main(["tag", str(path), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert path.read_bytes() == before


# -- properties ------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=st.text(max_size=40), spelled=st.sampled_from(["literal", "value"]))
def test_any_string_literal_round_trips_and_the_result_converts(text, spelled):
    """Any string, written as a literal in a cell and named by its literal text or by its
    value, becomes a parameter whose default is that string; the notebook still computes
    the same, and it converts to a script that compiles and runs."""
    cells = [md("# Load"), code(f"got = str({text!r})"), code("size = len(got)")]
    nb = _notebook(cells)
    value = repr(text) if spelled == "literal" else text
    edited = edit_cells(nb, cells=[2], params=[("path", value)]).notebook
    assignment = ast.parse(edited.cells[1].source).body[0]
    assert ast.literal_eval(assignment.value) == text
    assert edited.cells[1].metadata["tags"] == ["parameters"]
    assert edited.cells[2].source == "got = str(path)"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prop.ipynb"
        nbformat.write(edited, str(path))
        assert run_cells(path)["got"] == text
        conversion = convert_returning_all(path)
        compile(conversion.script, "prop.py", "exec")
        result = run_script_flow(conversion.script, Path(tmp))
        assert result["got"] == text and result["size"] == len(text)
