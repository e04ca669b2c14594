"""Fidelity of the generated script to the notebook: what it keeps and drops (unused
imports) and what the magics it translates mean (IPython's semantics)."""

from __future__ import annotations

import pytest
from notebooks.nbbuild import code, run_cells, run_script_flow, write

from nb2flow.codegen import convert_notebook
from nb2flow.runtime.core.unset import UNSET


def test_imports_the_script_no_longer_uses_are_dropped(tmp_path):
    """The notebook's imports gather at the top of the script; those only cells left out of
    the flow used, or none, go (ruff's F401 fix). Side-effect imports the notebook marks
    `# noqa` stay, and so do the setup cell's (declared global in the setup function)."""
    cells = [
        code(
            "import os\nimport json\nfrom statistics import mean, median, mode\n"
            "import email.mime.text  # noqa: side effects"
        ),
        code("import csv\nimport string", "setup"),
        code("values = [3, 1, 2]\nm = mean(values)", "task:a"),
        code("print(json.dumps(values))", "skip"),  # json's only user is out of the flow
        code("import textwrap\nk = len(values)", "task:b"),
    ]
    path = write(tmp_path / "imports.ipynb", cells)
    script = convert_notebook(path).script
    top = script.split("\ndef ")[0]
    assert "from statistics import mean\n" in top
    assert "import os\n" not in top and "import json" not in top and "textwrap" not in script
    assert "import email.mime.text  # noqa: F401\n" in top
    assert "    import csv\n    import string\n" in script  # the setup cell, as written
    assert script == convert_notebook(path).script  # deterministic
    expected = run_cells(path)
    result = run_script_flow(script, tmp_path)
    assert result == {k: expected.get(k, UNSET) for k in result}


# -- magics: each translation does what IPython does with the cell -----------------------------
#
# Each source runs in a real IPython shell and, translated, as plain Python, each in an empty
# folder of its own; the names it binds (with their values), the files it leaves and the
# environment variable it sets must be the same.
MAGICS = {
    # %time runs once in the notebook's namespace, binds, and gives the statement's value
    "time": "%time a, b = divmod(7, 2)",
    "time value": "t = %time divmod(7, 2)",
    "time cell": "%%time\na = [1]\nb = len(a)",
    # %timeit times its code in a function of its own: binds nothing, gives None (no -o)
    "timeit": "%timeit -n1 -r1 a, b = divmod(7, 2)",
    "timeit attached options": "%timeit -n1 -r1 -q a = 1",
    "timeit value": "t = %timeit -n1 -r1 -q divmod(7, 2)",
    "timeit cell": "%%timeit -n1 -r1 a = [1]\nb = len(a)",
    # %prun profiles in the notebook's namespace: binds; -s takes a value, -q and -r do not
    "prun": "%prun -q a, b = divmod(7, 2)",
    "prun sort key": "%prun -q -s cumulative a = 1",
    "prun value": "t = %prun -q divmod(7, 2)",
    "prun value, no option": "t = %prun divmod(7, 2)",
    "prun cell statement": "%%prun -q -s time a = 1\nb = a + 1",
    "capture": "%%capture\na = [1]\nb = 2",
    # %%capture var: the body runs in the namespace, its output held in `var` (CapturedIO)
    "capture var": (
        "%%capture t\nprint('out')\nimport sys\nprint('err', file=sys.stderr)\n"
        "display({'k': 1})\na = 1"
    ),
    "capture options": "%%capture --no-stderr --no-display t\nprint('out')\ndisplay(3)\na = [1]",
    # IPython's script magics run the cell in another process: they bind nothing
    "python3": "%%python3\nopen('made.txt', 'w').write('x')\na = 1",
    "bash": "%%bash\necho hi > made.txt",
    # shell aliases and shell commands run in the shell
    "mkdir alias": "%mkdir made",
    "shell": "!echo hi > made.txt",
    "shell output": "a = !echo hi",
    "cd quiet": "%mkdir made\n%cd -q made\nopen('here.txt', 'w').write('x')",
    "env": "%env MAGIC_TEST_VAR=1\na = %env MAGIC_TEST_VAR",
    "set_env": "%set_env MAGIC_TEST_VAR=2",
    "writefile": "%%writefile made.txt\nhello\n",
    # %run runs the file as __main__ in a namespace of its own, then binds its globals (the
    # converter reads the file, there when converting, for what it binds)
    "run": "%run helper.py",
}
#: files in a case's folder before it runs (and before it is translated)
MAGIC_FILES = {
    "run": {
        "helper.py": (
            "import os\na = [1, 2]\n\n\ndef _double(v):\n    return v * 2\n\n\n"
            "b = _double(len(a))\nif __name__ == '__main__':\n    t = os.path.basename(__file__)\n"
        )
    },
}


#: runs each cell of MAGICS in a folder of its own, in IPython or translated; prints what
#: each left (in a process of its own: the cells change the environment and the folder)
_RUN_MAGICS = r"""
import json, os, sys
from pathlib import Path

side, root = sys.argv[1], Path(sys.argv[2])
given = json.loads(sys.stdin.read())
sources, made = given["sources"], given["files"]
if side == "ipython":
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
else:
    from nb2flow.artifacts import ipython_display
    from nb2flow.notebook.magics import to_python
out = {}
for name, source in sources.items():
    folder = root / side / name.replace(" ", "_")
    folder.mkdir(parents=True)
    os.chdir(folder)
    for file, text in made.get(name, {}).items():
        Path(file).write_text(text)
    os.environ.pop("MAGIC_TEST_VAR", None)
    if side == "ipython":
        for key in ("a", "b", "t"):
            shell.user_ns.pop(key, None)
        result = shell.run_cell(source, silent=True)
        error = result.error_in_exec or result.error_before_exec
        namespace = shell.user_ns
    else:
        translation = to_python(source, "cell", folder)
        namespace = {m.split(".")[0]: __import__(m) for m in translation.imports}
        namespace["display"] = ipython_display  # the script's stand-in for IPython's
        error = None
        exec(translation.code, namespace)
    values = {
        k: repr(list(v) if isinstance(v, list) else v)  # IPython's SList: a list of lines
        if not hasattr(v, "outputs")
        # a CapturedIO: what it holds
        else repr((v.stdout, v.stderr, [o.data for o in v.outputs]))
        for k, v in namespace.items()
        if k in ("a", "b", "t")
    }
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    env = os.environ.get("MAGIC_TEST_VAR")
    out[name] = {"error": repr(error) if error else None, "values": values, "files": files, "env": env}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def magic_outcomes(tmp_path_factory):
    import json
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("magics")
    outcomes = {}
    for side in ("ipython", "script"):
        proc = subprocess.run(
            [sys.executable, "-c", _RUN_MAGICS, side, str(root)],
            input=json.dumps({"sources": MAGICS, "files": MAGIC_FILES}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        outcomes[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    return outcomes


@pytest.mark.parametrize("name", sorted(MAGICS))
def test_each_translated_magic_does_what_ipython_does(name, magic_outcomes):
    ipython = magic_outcomes["ipython"][name]
    assert ipython["error"] is None
    assert magic_outcomes["script"][name] == ipython


def test_profilers_options_are_theirs():
    """line_profiler's and memory_profiler's magics run their statement once, in the
    notebook's namespace; their options are told apart per magic (``-s`` is a flag of
    %lprun, a sort key of %prun; ``-r`` a repeat count of %memit, a flag of %prun)."""
    from nb2flow.notebook.magics import to_python

    assert to_python("%lprun -s -f f a = f(1)", "c").code.strip() == "a = f(1)"
    assert to_python("%memit -r 3 a = [1] * 9", "c").code.strip() == "a = [1] * 9"
    assert to_python("%mprun -f f a = f(1)", "c").code.strip() == "a = f(1)"
    assert to_python("%prun -r -q a = 1", "c").code.strip() == "a = 1"
    cell = to_python("%%lprun -f f a = f(1)\nb = a + 1", "c").code
    assert cell.strip().split("\n") == ["a = f(1)", "b = a + 1"]


def test_capture_holds_only_the_output_of_the_code_inside_it():
    """IPython's capture_output swaps sys.stdout for the whole process; nb2flow's holds the
    writes of the code inside the block: a task printing on another thread meanwhile keeps
    its output (a log record of its own task run)."""
    import threading

    from nb2flow import flow, task
    from nb2flow.artifacts import capture_output

    both = threading.Barrier(2, timeout=30)

    @task
    def held() -> str:
        with capture_output() as out:
            both.wait()
            print("held")
            both.wait()  # the other task prints while this one is inside the block
        return out.stdout

    @task
    def loud() -> None:
        both.wait()
        print("loud")
        both.wait()

    @flow(task_runner="threads", log_prints=True)
    def concurrent() -> str:
        loud.submit()
        return held.submit()

    run = concurrent(return_state=True)
    assert run.state == "Completed", run.error
    assert run.result() == "held\n"
    assert [log.message for log in run.view.logs if log.task_run_id] == ["loud"]


@pytest.mark.parametrize("runner", ["threads", pytest.param("processes:2", marks=pytest.mark.slow)])
def test_a_captured_cell_binds_what_it_held_for_later_cells(tmp_path, runner):
    """``%%capture out`` in a task: the cell's prints and displays are not the task's output;
    a later task reads ``out.stdout`` and ``out.show()`` shows them there (the CapturedIO
    travels between processes)."""
    import runpy

    cells = [
        code("%%capture out\nprint('hidden')\ndisplay('shown later')\nx = 2", "task:quiet"),
        code("n = len(out.stdout) + x\nout.show()", "task:loud", "output:n"),
    ]
    script = convert_notebook(write(tmp_path / "captured.ipynb", cells)).script
    assert "    with nb2flow.artifacts.capture_output() as out:\n        print(" in script
    assert script.count("import nb2flow.artifacts\n") == 1
    path = tmp_path / "captured_flow.py"
    path.write_text(script)
    main = runpy.run_path(str(path), run_name="captured_flow")["main"]
    run = main.with_options(task_runner=runner, log_prints=True)(return_state=True)
    assert run.state == "Completed", run.error
    assert run.result() == {"n": 9}
    names = {t.id: t.name for t in run.task_runs}
    assert [(names[log.task_run_id], log.message) for log in run.view.logs] == [("loud", "hidden")]
    shown = [(names[a.task_run_id], a.text) for a in run.view.artifacts]
    assert shown == [("loud", "'shown later'")]


def test_run_binds_what_the_file_binds_when_it_is_there(tmp_path):
    """What `%run x.py` binds is read from x.py when converting; names bound only under a
    condition, or by a star import, are not bound (warning); a file not there when converting
    is only run (warning), as before."""
    from nb2flow.notebook.magics import to_python

    (tmp_path / "helper.py").write_text(
        "import os\nfrom math import *\nSCALE = 3\n__all__ = ['SCALE']\n\n\n"
        "def scaled(v):\n    return v * SCALE\n\n\n"
        "if os.sep:\n    slash = True\nfor i in range(2):\n    pass\ngone = 1\ndel gone\n"
    )
    found = to_python("%run helper.py", "nb.ipynb, cell 2", tmp_path)
    assert found.code.strip() == (
        "os, SCALE, scaled = operator.itemgetter('os', 'SCALE', 'scaled')"
        "(runpy.run_path('helper.py', run_name='__main__'))"
    )
    assert found.imports == ["runpy", "operator"]
    assert found.warnings == [
        "nb.ipynb, cell 2, line 1: `%run helper.py`: helper.py binds slash, i only "
        "conditionally; the script does not bind them",
        "nb.ipynb, cell 2, line 1: `%run helper.py`: the names helper.py imports with `*` "
        "are not bound",
    ]
    missing = to_python("%run other.py", "nb.ipynb, cell 2", tmp_path)
    assert missing.code.strip() == "runpy.run_path('other.py', run_name='__main__')"
    assert "the names it defines are not visible to the flow" in missing.warnings[0]


def test_a_notebook_running_a_helper_file_gets_its_names_in_the_flow(tmp_path, monkeypatch):
    """The converter reads the file from the notebook's folder; the flow runs it there (as
    the script does, in the notebook's folder) and later cells (tasks) read what it defines.
    The %run line is in the source map."""
    from nb2flow.generated import locate, parse_source_map

    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpers.py").write_text("SCALE = 3\n\n\ndef scaled(v):\n    return v * SCALE\n")
    cells = [code("%run helpers.py"), code("y = scaled(2)", "task:use", "output:y")]
    path = write(tmp_path / "uses_helpers.ipynb", cells)
    conversion = convert_notebook(path)
    assert not [w for w in conversion.warnings if "helpers" in w], conversion.warnings
    assert run_script_flow(conversion.script, tmp_path) == {"y": 6}
    lines = conversion.script.splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "runpy.run_path(" in text)
    assert locate(parse_source_map(lines)[1], line) == (1, 1)


@pytest.mark.parametrize(
    "source", ["%%capture\n!pip install xgboost", "%%capture out\n", "%%timeit\n%matplotlib inline"]
)
def test_a_cell_magic_whose_body_is_dropped_still_compiles(source):
    """`%%capture` around `!pip install` (a common way to install quietly): the install is
    dropped (warning), the block keeps a statement."""
    from nb2flow.notebook.magics import to_python

    translation = to_python(source, "nb.ipynb, cell 1")
    compile(translation.code, "cell", "exec")
    assert translation.code.rstrip().endswith(("pass", "# nb2flow: removed %%timeit"))
