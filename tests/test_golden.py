"""Every script in converted_scripts/ is exactly what its notebook converts to today."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from notebooks.nbbuild import code, write

from nb2flow.cli import main
from nb2flow.codegen import convert_notebook
from nb2flow.generated import is_generated

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "converted_scripts").glob("*.py"))

_COMMAND = re.compile(r"^Re-generate with: (.+)$", re.MULTILINE)


def regenerate(script: Path, root: Path) -> str:
    """Run the header's ``Re-generate with:`` command in-process; return the new text."""
    m = _COMMAND.search(script.read_text(encoding="utf-8"))
    assert m, f"{script}: no 'Re-generate with:' line in the header"
    words = shlex.split(m[1])
    assert words[:2] == ["nb2flow", "convert"], words
    label, options = words[2], words[3:]
    split = options[options.index("--split") + 1] if "--split" in options else "auto"
    return convert_notebook(
        root / label, split=split, cache_all="--cache" in options, label=label
    ).script


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_converted_script_is_up_to_date(script):
    assert is_generated(script), f"{script} lacks the nb2flow marker"
    assert regenerate(script, ROOT) == script.read_text(encoding="utf-8"), (
        f"{script.name} is stale: run the 'Re-generate with:' command of its header"
    )


def test_regenerate_detects_a_stale_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = write(tmp_path / "nb.ipynb", [code("a = 1", "task:a")])
    assert main(["convert", "nb.ipynb", "--split", "cells", "--cache", "-q"]) == 0
    script = tmp_path / "converted_scripts" / "nb.py"
    assert "Re-generate with: nb2flow convert nb.ipynb --split cells --cache" in script.read_text()
    assert regenerate(script, tmp_path) == script.read_text()
    write(nb, [code("a = 2", "task:a")])
    assert regenerate(script, tmp_path) != script.read_text()
