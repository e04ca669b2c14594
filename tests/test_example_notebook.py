"""The worked example's notebook: tagged as documented, clean, and it runs as a plain notebook."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import ROOT, require_modules

NOTEBOOK = ROOT / "notebooks" / "duration-prediction.ipynb"


def _cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_notebook_is_tagged_and_outputs_cleared():
    cells = _cells()
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    tags = [t for c in code for t in _tags(c)]
    assert tags.count("parameters") == 1
    assert "skip" in tags and "setup" in tags
    for name in ("task:load_data", "task:features", "task:train_model"):
        assert name in tags
    by_task = {
        t: _tags(c) for c in code for t in _tags(c) if t.startswith("task:")
    }  # task -> all its tags
    assert "cache" in by_task["task:load_data"] and "cache" in by_task["task:features"]
    assert "retries:2" in by_task["task:load_data"]
    assert any(t.startswith("after:") for t in tags)
    # the parameters' defaults are the files the generator writes
    params = next(c for c in code if "parameters" in _tags(c))
    source = "".join(params["source"])
    assert 'train_path = "data/green_tripdata_2021-01.parquet"' in source
    assert 'tracking_uri = "sqlite:///mlflow.db"' in source


def test_tags_parse_without_warnings():
    from nb2flow.notebook.tags import parse_tags

    for number, cell in enumerate(_cells(), start=1):
        parsed = parse_tags(_tags(cell), f"cell {number}")
        assert parsed.warnings == []


@pytest.mark.slow
def test_runs_top_to_bottom_as_a_plain_notebook(tmp_path):
    """Run All as shipped, from the notebook's own folder, as JupyterLab runs it: no data yet
    (its skip cell writes the look-alike files beside it), no flow run (the nb2flow tags are
    left out), everything logged to mlflow beside the notebook, nothing written elsewhere."""
    require_modules("jupyter", "nbclient", "ipykernel", "mlflow", "xgboost")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(folder)}}).execute()
    assert (folder / "data" / "green_tripdata_2021-02.parquet").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks"]  # nothing stray
    tmp_path = folder  # mlflow.db, mlruns/ and models/ are the notebook's own
    assert (folder / "models" / "preprocessor.b").is_file()

    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "rmse " in printed and "mlflow run " in printed
    run_id = printed.split("mlflow run ")[1].split()[0]

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        metrics = dict(db.execute("select key, value from metrics where run_uuid=?", (run_id,)))
        params = dict(db.execute("select key, value from params where run_uuid=?", (run_id,)))
        tags = dict(db.execute("select key, value from tags where run_uuid=?", (run_id,)))
    assert 0 < metrics["rmse"] < 20
    assert params["max_depth"] == "8" and params["num_boost_round"] == "50"
    assert not any(k.startswith("nb2flow.") for k in tags)  # not in a flow: no flow-run tags
    artifacts = list((tmp_path / "mlruns").rglob("*"))
    assert any(p.name == "preprocessor.b" for p in artifacts)
    assert any(p.name == "MLmodel" for p in artifacts)


def test_checked_in_script_is_what_convert_makes():
    """converted_scripts/duration_prediction.py is generated, never edited: regenerating it
    gives the same bytes (`--check-only` exits 1 when the file differs)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "nb2flow", "convert", "notebooks/duration-prediction.ipynb"]
        + ["--check-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout
