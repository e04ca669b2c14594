"""A generated script answers ``--help`` and bad options before the notebook's imports and
setup run (issue 15, part 3): checked with pandas, mlflow, xgboost and sklearn made
impossible to import, in an empty folder that must stay empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nb2flow.codegen import convert_notebook
from tests.conftest import ROOT

EXAMPLE = ROOT / "converted_scripts" / "duration_prediction.py"
HEAVY = ("pandas", "mlflow", "xgboost", "sklearn", "numpy")


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A folder whose packages shadow the heavy libraries: importing one raises."""
    where = tmp_path / "blocked"
    for name in HEAVY:
        (where / name).mkdir(parents=True)
        (where / name / "__init__.py").write_text(
            f"raise ImportError('{name} must not be imported here')\n"
        )
    return where


def run_script(script: Path, args: list[str], cwd: Path, blocked: Path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), str(ROOT)])
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_help_answers_without_the_notebooks_libraries(blocked, empty):
    proc = run_script(EXAMPLE, ["--help"], empty, blocked)
    assert proc.returncode == 0, proc.stderr
    assert "Run the flow 'duration-prediction': Predicting taxi trip duration" in proc.stdout
    assert "--max-depth MAX_DEPTH" in proc.stdout and "int, default: 8" in proc.stdout
    assert "--task-runner RUNNER" in proc.stdout
    assert proc.stderr == ""
    assert list(empty.iterdir()) == []  # the setup cell (models/) did not run


def test_a_bad_option_answers_without_the_notebooks_libraries(blocked, empty):
    proc = run_script(EXAMPLE, ["--max-depth", "deep"], empty, blocked)
    assert proc.returncode == 2
    assert "error: argument --max-depth: invalid int value: 'deep'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_script(EXAMPLE, ["--no-such-option"], empty, blocked)
    assert proc.returncode == 2
    assert "unrecognized arguments: --no-such-option" in proc.stderr
    assert list(empty.iterdir()) == []


def test_good_options_go_on_to_the_imports(blocked, empty):
    """The check only comes first: with fine options the script imports its libraries
    (here they are blocked, so it stops there)."""
    proc = run_script(EXAMPLE, ["--max-depth", "3"], empty, blocked)
    assert proc.returncode == 1
    assert "ImportError: mlflow must not be imported here" in proc.stderr


def test_the_help_is_the_flows_own(tmp_path):
    """preflight_cli and run_cli build one parser from one signature: same text."""
    early = subprocess.run(
        [sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, check=True
    )
    late = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys; sys.argv = [sys.argv[1], '--help']; "
            "ns = runpy.run_path(sys.argv[0], run_name='as_module'); "
            "from nb2flow import run_cli; run_cli(ns['main'])",
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert late.returncode == 0, late.stderr
    assert early.stdout == late.stdout.replace(str(EXAMPLE), EXAMPLE.name)


def _notebook(path: Path, *cells: tuple[str, list[str]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src, metadata={"tags": tags} if tags else {})
        for src, tags in cells
    ]
    nbformat.write(nb, path)
    return path


def test_a_hint_the_imports_bring_leaves_the_check_out(tmp_path):
    nb = _notebook(
        tmp_path / "paths.ipynb",
        ("from pathlib import Path", []),
        ('out: Path = "results"\nn = 3', ["parameters"]),
        ("total = n * 2", []),
    )
    script = convert_notebook(nb).script
    assert "preflight_cli" not in script
    assert 'def main(out: Path = "results", n: int = 3)' in script


def test_the_check_comes_after_future_imports(tmp_path, empty, blocked):
    nb = _notebook(
        tmp_path / "future.ipynb",
        ("from __future__ import annotations\nimport pandas as pd", []),
        ("n = 3", ["parameters"]),
        ("total = n * 2", []),
    )
    script = convert_notebook(nb).script
    lines = script.splitlines()
    assert lines.index("from __future__ import annotations") < lines.index(
        'if __name__ == "__main__":'
    )
    path = tmp_path / "future.py"
    path.write_text(script)
    proc = run_script(path, ["--n", "x"], empty, blocked)
    assert proc.returncode == 2 and "invalid int value: 'x'" in proc.stderr
