"""`nb2flow check`: parameters, the notebook side in a real kernel, and whole checks."""

from __future__ import annotations

import importlib.util

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nb2flow.check import parse_parameters
from nb2flow.errors import Nb2flowError
from tests.conftest import require


def _need_kernel() -> None:
    for module in ("nbclient", "ipykernel"):
        require("jupyter", importlib.util.find_spec(module) is not None, f"{module} missing")


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
    assert sources[:4] == ["import math", "n = 3", "n = 5\n", "y = n * 2"]
    assert "_nb2flow_dump" in sources[-1] and "'y'" in sources[-1]
    assert numbers == [2, 3, 0, 5, 0]  # original cell numbers; 0 for the check's own cells


@pytest.mark.slow
def test_notebook_side_collects_values_and_names_the_failing_cell(tmp_path):
    _need_kernel()
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
    assert result.values["y"] == ("value", [2, 2])
    kind, reason = result.values["lock"]
    assert kind == "error" and "cannot be pickled" in reason
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
