"""Real public notebooks (../shared/corpus, untagged) convert, and the scripts compile."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require

from nb2flow.analysis.plan import FromTask
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
    code_cells = conversion.plan.order
    for name in code_cells:
        task = conversion.plan.tasks[name]
        # every input of a task comes from a parameter, the module, or an earlier task
        for source in task.sources.values():
            if isinstance(source, FromTask):
                assert conversion.plan.has_edge(source.task, name)


RUNNABLE = [p for p in NOTEBOOKS if p.stem.startswith("sklearn-")]


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=[p.stem for p in RUNNABLE])
def test_runnable_corpus_flows_compute_the_notebook_values(path, tmp_path, monkeypatch):
    """The scikit-learn gallery notebooks run offline: the flow's values equal the
    notebook's (arrays and numbers; fitted models and figures by type)."""
    import importlib.util

    for module in ("numpy", "sklearn", "matplotlib"):
        found = importlib.util.find_spec(module) is not None
        require("example_deps", found, f"{module} is not installed (pip install '.[example]')")
    import numpy as np
    from notebooks.nbbuild import run_cells, run_flow_values

    monkeypatch.setenv("MPLBACKEND", "Agg")
    # as nb2flow check takes them: every value the notebook leaves, from the task runs
    conversion = convert_notebook(path, every_value=True)
    expected = run_cells(path)
    result = run_flow_values(conversion, tmp_path)
    compared = 0
    for name in conversion.final_names:
        value, want = result[name], expected[name]
        assert type(value) is type(want), name
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(value, want)
            compared += 1
        elif isinstance(value, int | float | str | list | tuple):
            assert value == want, name
            compared += 1
    assert compared >= 5
