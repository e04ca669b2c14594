"""The CLI's contract: user errors are one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nb2flow import cli
from nb2flow.errors import Nb2flowError, where


def test_where_names_file_cell_and_line() -> None:
    assert where("nb.ipynb") == "nb.ipynb"
    assert where("nb.ipynb", 7) == "nb.ipynb, cell 7"
    assert where("nb.ipynb", 7, 3) == "nb.ipynb, cell 7, line 3"


def test_user_error_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def failing(args) -> int:
        raise Nb2flowError("nb.ipynb, cell 3: bad tag")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(_run=failing)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: nb.ipynb, cell 3: bad tag\n"


def test_help_lists_the_commands_and_exits_0() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nb2flow", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "nb2flow" in out and "COMMAND" in out


def test_cli_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from nb2flow import cli; cli.build_parser();"
        "heavy = {'pandas', 'numpy', 'ipywidgets', 'dask', 'mlflow', 'xgboost', 'rich', 'nbclient'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_output_piped_into_head_stops_quietly() -> None:
    # `nb2flow inspect --json NB | head -1`: the reader goes away; no traceback for that
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "duration-prediction.ipynb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2flow", "inspect", "--json", str(notebook)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err
