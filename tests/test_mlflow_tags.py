"""mlflow runs started inside a task are tagged with the nb2flow run, with no code in the task."""

from __future__ import annotations

import importlib
import importlib.util
import tomllib

import pytest

from nb2flow import flow, task
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None, reason="mlflow is an optional extra"
)


def test_an_mlflow_run_started_in_a_task_carries_the_nb2flow_run(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()

    @task
    def train() -> str:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("nb2flow-tags")  # (other tests leave another one active)
        with mlflow.start_run() as active:
            mlflow.log_metric("rmse", 6.5)
            return active.info.run_id

    @flow(name="tag-me")
    def f() -> str:
        return train.submit()

    run = f(return_state=True)
    assert run.state == "Completed", run.error
    tags = mlflow.MlflowClient(uri).get_run(run.value).data.tags
    assert {k: v for k, v in tags.items() if k.startswith("nb2flow.")} == {
        "nb2flow.flow_name": "tag-me",
        "nb2flow.flow_run_name": run.name,
        "nb2flow.flow_run_id": run.id,
        "nb2flow.task_name": "train",
        "nb2flow.task_run_id": run.task_runs[0].id,
    }
    with mlflow.start_run() as outside:  # outside nb2flow runs: no nb2flow tags
        pass
    assert not any(
        k.startswith("nb2flow.")
        for k in mlflow.MlflowClient(uri).get_run(outside.info.run_id).data.tags
    )


def test_the_provider_is_mlflows_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["mlflow.run_context_provider"]["nb2flow"]
    module, _, name = target.partition(":")
    from mlflow.tracking.context.abstract_context import RunContextProvider

    assert issubclass(getattr(importlib.import_module(module), name), RunContextProvider)
