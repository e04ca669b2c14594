"""What nb2flow makes of each cell (``nb2flow.extensions.cells.summarize``, behind the JupyterLab
badges and ``%nb2flow inspect``), the tag grammar the tag controls get, the cells that drive
nb2flow left out of the flow, the notebook-folder rule of generated scripts, and the server
extension's endpoints on a real Jupyter server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from notebooks.nbbuild import code, md, write

from nb2flow.errors import Nb2flowError
from nb2flow.extensions.cells import plan_svg, summarize
from nb2flow.notebook.reader import notebook_from_json, read_notebook
from nb2flow.notebook.tags import grammar, parse_tags

CELLS = [
    md("# Title"),
    code("import math"),
    code("n = 3\nscale = 2.0", "parameters"),
    code("import os\nHOME = os.sep", "setup"),
    code("xs = [math.sqrt(i) for i in range(n)]", "task:load", "cache", "retries:2"),
    code("ys = [x * scale for x in xs]"),
    code("xs[:3]", "skip"),
    code("%load_ext nb2flow\n%nb2flow run"),
    code("total = sum(ys)", "task:total", "after:load"),
    code(""),
]


def by_cell(summary):
    return {c["cell"]: c for c in summary["cells"]}


def test_every_cell_says_what_it_becomes(tmp_path: Path):
    summary = summarize(read_notebook(write(tmp_path / "nb.ipynb", CELLS)))
    cells = by_cell(summary)
    assert summary["ok"] and summary["flow"] == "nb"
    assert [cells[i]["role"] for i in range(1, 11)] == [
        "markdown", "module", "parameters", "setup", "task", "task", "skip", "nb2flow",
        "task", "empty",
    ]  # fmt: skip
    assert cells[3]["parameters"] == ["n", "scale"]
    load, cont = cells[5], cells[6]
    assert (load["task"], load["first"], load["last"]) == ("load", True, False)
    assert load["inputs"] == ["n", "scale"] and load["options"] == {"retries": 2, "cache": True}
    assert (cont["task"], cont["first"], cont["last"]) == ("load", False, True)
    assert cont["inputs"] == [] and cont["outputs"] == ["ys"]  # what `total` reads
    total = cells[9]
    assert total["task"] == "total" and total["inputs"] == ["ys"] and total["after"] == ["load"]
    assert [t["name"] for t in summary["tasks"]] == ["load", "total"]
    assert summary["edges"] == [{"from": "load", "to": "total", "kind": "data", "vars": ["ys"]}]
    assert all(not c["problems"] for c in summary["cells"])


def test_unsaved_content_is_analysed_as_given():
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "source": "a = 1", "metadata": {"tags": ["task:one"]}},
            {"cell_type": "code", "source": "b = a + c", "metadata": {}, "outputs": []},
        ],
    }
    summary = summarize(notebook_from_json(nb, "draft.ipynb"))
    cells = by_cell(summary)
    assert cells[1]["task"] == "one" and cells[2]["task"] == "one"
    # a name no earlier cell defines is a problem on the cell that reads it
    assert cells[2]["problems"] == [
        {"level": "warning", "message": "reads `c`, which no cell defines"}
    ]
    with pytest.raises(Nb2flowError, match="not a version-4 notebook"):
        notebook_from_json({"nbformat": 3}, "old.ipynb")


def test_a_malformed_tag_is_a_problem_on_its_cell_and_the_rest_is_still_analysed(tmp_path):
    cells = [
        code("a = 1", "task:one", "retries:x"),
        code("b = a", "task:two", "timeout:0"),
        code("c = b", "task:one"),  # a duplicate name
        code("d = (", "task:broken"),  # a syntax error
        code("e = c", "task:five"),
    ]
    summary = summarize(read_notebook(write(tmp_path / "bad.ipynb", cells)))
    got = by_cell(summary)
    assert not summary["ok"]
    assert got[1]["problems"] == [
        {"level": "error", "message": "malformed tag 'retries:x': expected a whole number"}
    ]
    assert got[2]["problems"][0]["message"] == (
        "malformed tag 'timeout:0': the value must be greater than 0"
    )
    assert "already used by cell 1" in got[3]["problems"][0]["message"]
    assert got[4]["role"] == "error"
    assert got[4]["problems"][0]["message"].startswith("line 1: syntax error")
    # the other cells keep their badges: the bad tags were set aside, not the cells
    assert got[1]["task"] == "one" and got[2]["task"] == "two" and got[5]["task"] == "five"
    assert got[5]["inputs"] == ["c"]


def test_plan_svg_has_a_node_per_task_naming_its_cells(tmp_path: Path):
    summary = summarize(read_notebook(write(tmp_path / "nb.ipynb", CELLS)))
    svg = plan_svg(summary)
    assert svg.count('class="nb2f-node"') == 2
    assert 'data-task="load"' in svg and 'data-task="total"' in svg
    assert ">cells 5-6<" in svg and ">cell 9<" in svg
    assert 'data-names="ys"' in svg


def test_grammar_is_the_parsers_own():
    g = grammar()
    assert g["roles"] == ["task", "parameters", "setup", "skip"] and g["flags"] == ["cache"]
    for option in g["options"]:
        smallest = option["min"] + (1 if option["exclusive_min"] else 0)
        parsed = parse_tags([f"{option['tag']}:{smallest}"], "c").options
        assert parsed == {option["key"]: smallest}
        below = option["min"] if option["exclusive_min"] else option["min"] - 1
        with pytest.raises(Nb2flowError):
            parse_tags([f"{option['tag']}:{below}"], "c")
        if option["integer"]:
            with pytest.raises(Nb2flowError):
                parse_tags([f"{option['tag']}:1.5"], "c")
    assert "class" in g["keywords"] and "match" in g["keywords"]


def test_cells_driving_nb2flow_are_left_out_of_the_flow(tmp_path: Path):
    from nb2flow.codegen import convert_notebook

    cells = [
        code("%load_ext nb2flow"),
        code("x = 1", "task:one"),
        code("%reload_ext nb2flow\n%nb2flow run -p x=2"),
        code("  %nb2flow inspect\ny = x"),  # other code too: left out, with a warning
        code("z = x + 1"),
    ]
    conversion = convert_notebook(write(tmp_path / "nb.ipynb", cells))
    assert "nb2flow run" not in conversion.script and "load_ext" not in conversion.script
    assert "y = x" not in conversion.script and "z = x + 1" in conversion.script
    assert conversion.plan.skipped == (1, 3, 4)
    assert any("cell 4: holds %nb2flow lines" in w for w in conversion.warnings)


def test_generated_script_runs_in_the_notebooks_folder(tmp_path: Path):
    from nb2flow.codegen import convert_notebook, write_script

    folder = tmp_path / "project" / "notebooks"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("41")
    cells = [
        code('path = "data.txt"', "parameters"),
        code("value = int(open(path).read()) + 1", "task:read"),
        code('with open("out.txt", "w") as f:\n    f.write(str(value))', "task:save"),
    ]
    nb = write(folder / "nb.ipynb", cells)
    script = write_script(convert_notebook(nb), tmp_path / "project" / "converted_scripts")
    assert 'run_in_folder(__file__, "../notebooks")' in script.read_text()
    env = dict(os.environ, NB2FLOW_STORE="off")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), "--quiet", *args],
            cwd=elsewhere, env=env, capture_output=True, text=True,
        )  # fmt: skip

    assert run().returncode == 0
    assert (folder / "out.txt").read_text() == "42"  # relative paths: the notebook's folder
    (elsewhere / "data.txt").write_text("9")
    # --cwd DIR (relative to where the command runs) runs it there instead
    assert run("--cwd", ".").returncode == 0 and (elsewhere / "out.txt").read_text() == "10"
    # a path given on the command line resolves in the folder the flow runs in
    (folder / "other.txt").write_text("1")
    assert run("--path", "other.txt").returncode == 0
    assert (folder / "out.txt").read_text() == "2"
    # the script moved away from its notebook: one error line saying what to pass
    moved = elsewhere / "nb.py"
    moved.write_text(script.read_text())
    done = subprocess.run(
        [sys.executable, str(moved)], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {moved}: the flow runs in the notebook's folder")
    assert "pass --cwd DIR" in done.stderr


def test_run_cli_cwd_comes_back(tmp_path: Path):
    import nb2flow

    @nb2flow.flow(persist=False)
    def where() -> str:
        return os.getcwd()

    seen: list[str] = []
    back = os.getcwd()

    @nb2flow.flow(persist=False)
    def record() -> None:
        seen.append(os.getcwd())

    assert nb2flow.run_cli(record, ["--quiet"], exit=False, cwd=tmp_path) == 0
    assert seen == [str(tmp_path)] and os.getcwd() == back
    assert nb2flow.run_cli(record, ["--quiet", "--cwd", "/"], exit=False, cwd=tmp_path) == 0
    assert seen[-1] == "/" and os.getcwd() == back
    assert nb2flow.run_cli(where, ["-q"], exit=False, cwd=tmp_path / "nope") == 2


# --------------------------------------------------------------------------- the endpoints


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from browser_harness import jupyter_server

    with jupyter_server(tmp_path_factory.mktemp("endpoints"), "server") as s:
        yield s


def _call(server, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.slow
def test_server_endpoints(server, tmp_path: Path):
    status, g = _call(server, "/nb2flow/grammar")
    assert status == 200 and g == json.loads(json.dumps(grammar()))
    nb = json.loads(write(tmp_path / "nb.ipynb", CELLS).read_text())
    status, answer = _call(server, "/nb2flow/analyze", {"path": "dir/nb.ipynb", "notebook": nb})
    assert status == 200
    assert answer["summary"] == json.loads(
        json.dumps(summarize(notebook_from_json(nb, "dir/nb.ipynb")))
    )
    assert 'data-task="load"' in answer["svg"] and answer["ms"] > 0
    status, answer = _call(server, "/nb2flow/analyze", {"path": "x.ipynb", "notebook": [1]})
    assert status == 400 and answer["error"] == "x.ipynb: not a version-4 notebook"

    (server.root / "dir").mkdir(exist_ok=True)
    status, answer = _call(server, "/nb2flow/convert", {"path": "dir/nb.ipynb", "notebook": nb})
    assert status == 200 and answer["written"] == "dir/converted_scripts/nb.py"
    assert answer["tasks"] == 2
    text = (server.root / "dir" / "converted_scripts" / "nb.py").read_text()
    assert 'run_in_folder(__file__, "..")' in text
    status, _ = _call(server, "/nb2flow/convert", {"path": "../up.ipynb", "notebook": nb})
    assert status == 400

    # snapshots: taken once, by the cell they were made for; none without the extension
    assert _call(server, "/nb2flow/snapshot?path=new.ipynb&cell=c1&wait=5")[0] == 404
    body = {"path": "dir/nb.ipynb", "cell": "c1", "notebook": nb}
    assert _call(server, "/nb2flow/snapshot", body) == (200, {"ok": True})
    assert _call(server, "/nb2flow/snapshot?path=dir/nb.ipynb&cell=c2&wait=0")[0] == 404
    assert _call(server, "/nb2flow/snapshot?path=dir/nb.ipynb&cell=c1&wait=0") == (
        200,
        {"notebook": nb},
    )
    assert _call(server, "/nb2flow/snapshot?path=dir/nb.ipynb&cell=c1&wait=0")[0] == 404


def test_nb2flow_run_cwd_runs_the_setup_there_too(tmp_path: Path):
    (tmp_path / "there").mkdir()
    script = tmp_path / "flow.py"
    script.write_text(
        "import os\nfrom nb2flow import flow\nHERE = os.getcwd()\n\n"
        "@flow(persist=False)\ndef main(x: int = 1):\n"
        "    print('setup in', HERE, 'flow in', os.getcwd(), 'x', x)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "nb2flow", "run", str(script), "--cwd", "there", "--x", "2", "-q"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    there = tmp_path / "there"
    assert done.returncode == 0, done.stderr
    assert f"setup in {there} flow in {there} x 2" in done.stdout


@pytest.mark.slow
def test_parameter_endpoints(server, tmp_path: Path):
    source = "df = pd.read_parquet('./data/x.parquet')\nrate = -0.5  # 7"
    assert _call(server, "/nb2flow/literals", {"path": "nb.ipynb", "source": source}) == (
        200,
        {"literals": ["'./data/x.parquet'", "-0.5"]},
    )
    assert _call(server, "/nb2flow/literals", {"path": "nb.ipynb"})[0] == 400

    cells = [md("# Taxi"), code("import pandas as pd"), code(source, "task:load")]
    nb = json.loads(write(tmp_path / "nb.ipynb", cells).read_text())
    body = {"path": "dir/nb.ipynb", "notebook": nb, "cell": 3, "literal": "'./data/x.parquet'"}
    status, answer = _call(server, "/nb2flow/parameter", {**body, "name": "data_path"})
    assert status == 200, answer
    # what the front end applies to its model: the new parameters cell (before the first
    # code cell), and the cell that now reads the parameter
    assert answer["cells"] == [
        {"index": None, "at": 1, "cell_type": "code",
         "source": "data_path = './data/x.parquet'", "tags": ["parameters"]},
        {"index": 2, "at": 3, "cell_type": "code",
         "source": source.replace("'./data/x.parquet'", "data_path"), "tags": ["task:load"]},
    ]  # fmt: skip
    assert answer["changes"][0] == "cell 3: './data/x.parquet' -> parameter data_path"
    # the edited notebook converts with the literal as the flow's parameter
    edited = json.loads(json.dumps(nb))
    edited["cells"][2]["source"] = answer["cells"][1]["source"]
    edited["cells"].insert(1, code(answer["cells"][0]["source"], "parameters"))
    summary = summarize(notebook_from_json(edited, "nb.ipynb"))
    assert by_cell(summary)[4]["inputs"] == ["data_path"]

    # refusals: one line naming the cell, as `nb2flow tag --param` says them
    status, answer = _call(server, "/nb2flow/parameter", {**body, "name": "pd"})
    assert (status, answer) == (
        400,
        {"error": "nb.ipynb, cell 2: the name 'pd' is in use; choose another"},
    )
    status, answer = _call(server, "/nb2flow/parameter", {**body, "literal": "7", "name": "x"})
    assert (status, answer) == (400, {"error": "nb.ipynb, cell 3: no literal '7' in this cell"})
    status, answer = _call(server, "/nb2flow/parameter", {**body, "notebook": [], "name": "x"})
    assert (status, answer) == (400, {"error": "dir/nb.ipynb: not a version-4 notebook"})
    assert _call(server, "/nb2flow/parameter", {**body, "cell": "3", "name": "x"})[0] == 400
    assert _call(server, "/nb2flow/parameter", {**body, "cell": 9, "name": "x"}) == (
        400,
        {"error": "nb.ipynb: no cell 9 (the notebook has 3 cells, counted from 1)"},
    )


def test_the_server_analyses_only_the_edited_cells_again(tmp_path: Path):
    from nb2flow.analysis.names import remembering
    from nb2flow.extensions.server import analyze

    nb = json.loads(write(tmp_path / "nb.ipynb", CELLS).read_text())
    memo: dict = {}
    with remembering(memo):
        summarize(notebook_from_json(nb, "nb.ipynb"))
    known = set(memo)
    assert "ys = [x * scale for x in xs]" in known
    nb["cells"][5]["source"] = "ys = [x * scale for x in xs]\nedited = len(zs)"
    with remembering(memo):
        summary = summarize(notebook_from_json(nb, "nb.ipynb"))
    assert {key for key in memo if key not in known} == {nb["cells"][5]["source"]}
    # the same answer as analysing every cell again
    assert summary == summarize(notebook_from_json(nb, "nb.ipynb"))
    assert by_cell(summary)[6]["problems"] == [
        {"level": "warning", "message": "reads `zs`, which no cell defines"}
    ]
    first, again = analyze("nb.ipynb", nb), analyze("nb.ipynb", nb)
    assert first["summary"] == again["summary"] == summary and first["svg"] == again["svg"]


@pytest.mark.slow
def test_tags_endpoint_checks_outputs_with_the_tag_grammar(server, tmp_path: Path):
    cells = [md("# Taxi"), code("total = 1", "task:load", "retries:2")]
    nb = json.loads(write(tmp_path / "nb.ipynb", cells).read_text())
    body = {"path": "dir/nb.ipynb", "notebook": nb, "cell": 2}
    status, answer = _call(server, "/nb2flow/tags", {**body, "add": ["output:total"]})
    assert (status, answer["tags"]) == (200, ["task:load", "retries:2", "output:total"]), answer
    assert answer["changes"] == ["cell 2: tags task:load, retries:2, output:total"]
    # not a variable name: refused by the converter's grammar, one line naming the cell
    for bad in ("9lives", "class", "a-b", "x y"):
        status, answer = _call(server, "/nb2flow/tags", {**body, "add": [f"output:{bad}"]})
        assert (status, answer) == (400, {"error": (
            f"nb.ipynb, cell 2: malformed tag 'output:{bad}': output: needs a variable name "
            "(output:NAME, one per tag)")}), bad  # fmt: skip
    status, answer = _call(server, "/nb2flow/tags", {**body, "remove": ["retries:2"]})
    assert (status, answer["tags"]) == (200, ["task:load"])
    assert _call(server, "/nb2flow/tags", {**body, "add": "output:total"})[0] == 400
    assert _call(server, "/nb2flow/tags", {**body, "cell": True, "add": []})[0] == 400
    assert _call(server, "/nb2flow/tags", {**body, "cell": 5, "add": ["output:x"]}) == (
        400,
        {"error": "nb.ipynb: no cell 5 (the notebook has 2 cells, counted from 1)"},
    )
