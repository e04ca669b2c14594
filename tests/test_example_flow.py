"""The worked example end to end: `make demo`'s script (data, convert, run the flow as
production would), then a second run from notebooks/run-the-flow.ipynb (cached loading and
features); the mlflow runs and the nb2flow run store are read back."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

NOTEBOOK = ROOT / "notebooks" / "duration-prediction.ipynb"

pytestmark = pytest.mark.slow


def _need(*modules: str) -> None:
    for module in modules:
        require("example", importlib.util.find_spec(module) is not None, f"{module} missing")


def _run_notebook(root: Path) -> str:
    """Run notebooks/run-the-flow.ipynb from root/notebooks, as Jupyter would; its output."""
    _need("nbclient", "ipykernel")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "run-the-flow.ipynb", as_version=4)
    resources = {"metadata": {"path": str(root / "notebooks")}}
    NotebookClient(nb, timeout=240, resources=resources).execute()
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _run_demo(root: Path) -> str:
    """python -m nb2flow.examples.demo in `root`, a checkout holding only the notebook."""
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
    args = [sys.executable, "-m", "nb2flow.examples.demo", "--rows", "3000", "--seed", "11"]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [*args, "--once"], cwd=root, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_converted_flow_trains_logs_to_mlflow_and_caches(tmp_path, _isolated_home):
    _need("mlflow", "xgboost", "pandas", "sklearn")
    import mlflow

    from nb2flow.store.db import Store

    demo = _run_demo(tmp_path)
    # the data and mlflow.db are the notebook's own: beside it, for the script too
    assert (tmp_path / "notebooks" / "data" / "green_tripdata_2021-02.parquet").exists()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "models").exists()
    script = tmp_path / "converted_scripts" / "duration_prediction.py"
    assert script.read_text() == (ROOT / "converted_scripts" / script.name).read_text()
    printed = _run_notebook(tmp_path)

    db = tmp_path / "notebooks" / "mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("nyc-taxi-experiment")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    first, second = runs
    for run in runs:
        assert 0 < run.data.metrics["rmse"] < 20
        assert run.data.params["num_boost_round"] == "50"
        assert run.data.params["max_depth"] == "8"
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "preprocessor")]
        assert artifacts == ["preprocessor/preprocessor.b"]
        models = client.search_logged_models(
            experiment_ids=[experiment.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'",
        )
        assert [m.name for m in models] == ["models_mlflow"]
    # the demo printed the first run, the notebook the second
    assert f"validation RMSE    {first.data.metrics['rmse']:.3f} minutes" in demo
    assert f"mlflow run id      {first.info.run_id}" in demo
    assert f"nb2flow run name   {first.data.tags['nb2flow.flow_run_name']}" in demo
    assert f"validation RMSE {second.data.metrics['rmse']:.3f} minutes" in printed
    assert f"mlflow run {second.info.run_id}" in printed
    # same data, same seed: the cached features give the same model
    assert first.data.metrics["rmse"] == pytest.approx(second.data.metrics["rmse"])

    # the mlflow runs name the nb2flow runs that made them, and the run store agrees
    with Store(_isolated_home / "runs.db") as store:
        views = [store.load_run(r.data.tags["nb2flow.flow_run_id"]) for r in runs]
    for run, view in zip(runs, views, strict=True):
        assert view.state == "Completed" and view.flow_name == "duration-prediction"
        assert run.data.tags["nb2flow.flow_name"] == "duration-prediction"
        assert run.data.tags["nb2flow.flow_run_id"] == view.id
        assert run.data.tags["nb2flow.flow_run_name"] == view.run_name
    states = [{t.name: t.state for t in view.tasks.values()} for view in views]
    assert states[0] == {
        "load_data": "Completed",
        "features": "Completed",
        "train_model": "Completed",
        "best_run": "Completed",
    }
    # second run (the notebook): loading and features come from the cache, training runs
    assert states[1]["load_data"] == "Cached" and states[1]["features"] == "Cached"
    assert states[1]["train_model"] == "Completed"
