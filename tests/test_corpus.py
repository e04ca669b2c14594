"""Real public notebooks (../shared/corpus, untagged) convert, and the scripts compile."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require

from nb2flow.codegen import convert_notebook

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
NOTEBOOKS = sorted(CORPUS.glob("*.ipynb"))


def test_corpus_is_there():
    require("corpus", bool(NOTEBOOKS), f"no notebooks in {CORPUS}")
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_corpus_notebook_converts_and_compiles(path):
    conversion = convert_notebook(path, label=f"corpus/{path.name}")
    compile(conversion.script, f"{path.stem}.py", "exec")
    assert "get_ipython" not in conversion.script
    code_cells = conversion.plan.graph["order"]
    for name in code_cells:
        task = conversion.plan.nodes[name]
        # every input of a task comes from a parameter, the module, or an earlier task
        for source in task["sources"].values():
            assert source in ("param", "module") or conversion.plan.has_edge(source, name)
