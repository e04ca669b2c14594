"""Reading notebooks, the tag grammar and magics -> Python."""

from __future__ import annotations

import ast
import json

import pytest
from notebooks.nbbuild import code, md, write

from nb2flow.errors import Nb2flowError
from nb2flow.notebook import magics
from nb2flow.notebook.identifiers import identifier, unique
from nb2flow.notebook.reader import read_notebook
from nb2flow.notebook.tags import is_known_tag, parse_tags

# -- reading ---------------------------------------------------------------------------------


def test_reads_cells_numbered_from_one(tmp_path):
    path = write(tmp_path / "a.ipynb", [md("# T"), code("x = 1", "task:a")])
    nb = read_notebook(path)
    assert [(c.number, c.kind, c.tags) for c in nb.cells] == [
        (1, "markdown", ()),
        (2, "code", ("task:a",)),
    ]
    assert len(nb.sha256) == 64


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"hello": 1}', "not a notebook"),
        ("[1, 2]", "not a notebook"),
        ('{"nbformat": 4, "cells": 3}', "no 'cells' list"),
        ('{"nbformat": 9, "cells": []}', "nbformat 9 is not supported"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    with pytest.raises(Nb2flowError, match=message) as info:
        read_notebook(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(Nb2flowError, match="no such file"):
        read_notebook(tmp_path / "nope.ipynb")


def test_non_python_kernel_is_refused(tmp_path):
    path = write(
        tmp_path / "r.ipynb",
        [code("x <- 1")],
        kernelspec={"name": "ir", "language": "R", "display_name": "R"},
    )
    with pytest.raises(Nb2flowError, match="Python notebooks only"):
        read_notebook(path)


def test_nbformat3_is_upgraded(tmp_path):
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "heading", "level": 1, "source": "Old", "metadata": {}},
                    {
                        "cell_type": "code",
                        "input": "x = 1\ny = x + 1",
                        "language": "python",
                        "outputs": [],
                        "metadata": {},
                    },
                ]
            }
        ],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3))
    nb = read_notebook(path)
    assert nb.original_version == 3
    assert [c.kind for c in nb.cells] == ["markdown", "code"]
    assert nb.cells[1].source == "x = 1\ny = x + 1"
    assert any("upgraded from nbformat 3" in w for w in nb.warnings)


# -- tags ------------------------------------------------------------------------------------


def test_tag_grammar():
    tags = parse_tags(
        ["task:load_data", "retries:3", "retry-delay:2.5", "timeout:60", "cache", "after:prep"],
        "nb, cell 1",
    )
    assert tags.role == "task"
    assert tags.task_name == "load_data"
    assert tags.after == ["prep"]
    assert tags.options == {
        "retries": 3,
        "retry_delay_seconds": 2.5,
        "timeout_seconds": 60,
        "cache": True,
    }
    assert tags.warnings == []
    assert parse_tags(["parameters"], "x").role == "parameters"
    assert parse_tags(["setup"], "x").role == "setup"
    assert parse_tags(["skip"], "x").role == "skip"
    assert parse_tags(["task"], "x").task_name is None


@pytest.mark.parametrize(
    "tag", ["retries:x", "retries:-1", "retries:1.5", "timeout:0", "timeout:nan", "retry-delay:"]
)
def test_malformed_option_is_an_error_naming_the_cell(tag):
    with pytest.raises(Nb2flowError, match=r"nb\.ipynb, cell 4: malformed tag"):
        parse_tags([tag], "nb.ipynb, cell 4")


def test_unknown_tag_is_a_warning_naming_the_cell():
    tags = parse_tags(["tsk:oops", "hide-input"], "nb.ipynb, cell 2")
    assert tags.warnings == ["nb.ipynb, cell 2: unknown tag 'tsk:oops' ignored"]


def test_two_roles_conflict():
    with pytest.raises(Nb2flowError, match="conflicting tags task, skip"):
        parse_tags(["skip", "task:a"], "c")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("x():\n import os", "x_import_os"),
        ("a'b\"c", "a_b_c"),
        ("../../etc/passwd", "etc_passwd"),
        ("class", "class_"),
        ("données", "donnees"),
        ("1st step", "_1st_step"),
        ("💥", "task"),
    ],
)
def test_hostile_task_names_become_safe_identifiers(raw, expected):
    tags = parse_tags([f"task:{raw}"], "c")
    assert tags.task_name == expected
    assert tags.task_name.isidentifier() and tags.task_name.isascii()


def test_identifier_helpers():
    assert identifier("Load the data!", lower=True) == "load_the_data"
    assert identifier("duration-prediction") == "duration_prediction"
    taken = {"a"}
    assert [unique("a", taken), unique("a", taken)] == ["a_2", "a_3"]
    assert is_known_tag("retries:2") and is_known_tag("task:x") and not is_known_tag("bogus")


# -- magics ----------------------------------------------------------------------------------

MAGIC_CELL = """%matplotlib inline
files = !ls data
!echo hello
%time y = f(1)
for i in range(3):
    %timeit g(i)
if files:
    %load_ext autoreload
%env MODE=fast
%cd /tmp
here = %pwd
obj?
"""


def _check_translation(result: magics.Translation) -> str:
    text = result.code
    ast.parse(text)
    assert "get_ipython" not in text
    return text


@pytest.mark.parametrize("use_ipython", [True, False])
def test_magics_become_plain_python(monkeypatch, use_ipython):
    if not use_ipython:
        monkeypatch.setattr(magics, "_ipython_transform", lambda source: None)
    result = magics.to_python(MAGIC_CELL, "nb, cell 3")
    text = _check_translation(result)
    assert "files = subprocess.run('ls data', shell=True, capture_output=True" in text
    assert "subprocess.run('echo hello', shell=True)" in text
    assert "y = f(1)" in text
    assert "    g(i)" in text
    assert "    pass  # nb2flow: removed %load_ext autoreload" in text
    assert "os.environ['MODE'] = 'fast'" in text
    assert "os.chdir(os.path.expanduser('/tmp'))" in text
    assert "here = os.getcwd()" in text
    assert sorted(result.imports) == ["os", "subprocess"]
    assert result.warnings == [
        "nb, cell 3, line 6: `%timeit` runs its statement once in the script"
    ]


@pytest.mark.parametrize("use_ipython", [True, False])
def test_cell_magics(monkeypatch, use_ipython):
    if not use_ipython:
        monkeypatch.setattr(magics, "_ipython_transform", lambda source: None)
    write_cell = magics.to_python("%%writefile out.txt\nhello\n'q'\n", "c")
    namespace: dict = {}
    assert "open('out.txt', 'w')" in _check_translation(write_cell)
    timed = magics.to_python("%%time\nx = 1\ny = x + 1\n", "c")
    exec(_check_translation(timed), namespace)
    assert namespace["y"] == 2
    shell = magics.to_python("%%bash\necho hi\n", "c")
    assert "executable='/bin/bash'" in _check_translation(shell)
    unknown = magics.to_python("%%sql\nselect 1\n", "nb, cell 9")
    assert _check_translation(unknown).startswith("# nb2flow: removed %%sql")
    assert "no Python equivalent" in unknown.warnings[0]


def test_install_commands_are_dropped_with_a_warning():
    result = magics.to_python("!pip install xgboost\n%pip install mlflow", "nb, cell 1")
    assert "subprocess" not in _check_translation(result)
    assert len(result.warnings) == 2
    assert all("install dependencies before running" in w for w in result.warnings)


def test_plain_python_is_untouched():
    source = "x = 1  # 100% sure\nprint('!not shell')\ny = x % 2"
    result = magics.to_python(source, "c")
    assert result.code == source and not result.changed


# every magic the converter runs as Python binds what IPython binds: %timeit times its code
# in a function scope of its own (it binds nothing), %time, %prun, %%time, %%capture run in
# the notebook's namespace
MAGICS_BINDING = [
    "%timeit -n1 -r1 counts, edges = divmod(7, 2)",
    "%%timeit -n1 -r1 counts = [1]\nedges = len(counts)",
    "%time counts, edges = divmod(7, 2)",
    "%%time\ncounts = [1]\nedges = 2",
    "%%capture\ncounts = [1]\nedges = 2",
    "%prun -q counts, edges = divmod(7, 2)",
]


@pytest.mark.parametrize("source", MAGICS_BINDING)
def test_magics_bind_what_ipython_binds(source):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns.pop("counts", None)
    shell.user_ns.pop("edges", None)
    result = shell.run_cell(source, silent=True)
    assert result.success, result.error_in_exec
    ipython = {name for name in ("counts", "edges") if name in shell.user_ns}
    translation = magics.to_python(source, "cell")
    namespace = {m.split(".")[0]: __import__(m) for m in translation.imports}
    exec(translation.code, namespace)
    assert {name for name in ("counts", "edges") if name in namespace} == ipython
