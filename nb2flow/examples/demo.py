"""``make demo``: the worked example end to end, from the repository root.

1. generate two months of green-taxi data in ``notebooks/data/`` (synthetic, offline), where
   the notebook's own paths (``data/...``, relative to its folder) find them;
2. convert ``notebooks/duration-prediction.ipynb`` to ``converted_scripts/duration_prediction.py``;
3. run the flow as production would: ``python converted_scripts/duration_prediction.py``,
   then once more to show the cached tasks. The script runs in the notebook's folder, as
   Jupyter runs the notebook, so both read ``notebooks/data/`` and log to
   ``notebooks/mlflow.db``;
4. read the mlflow run back and print the RMSE, the mlflow run id, the nb2flow run name,
   where the mlflow database and the run store are, and how to watch a run in Jupyter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

NOTEBOOK = Path("notebooks/duration-prediction.ipynb")
SCRIPT = Path("converted_scripts/duration_prediction.py")
#: where the notebook and its flow run: their relative paths resolve here
FOLDER = NOTEBOOK.parent
#: the notebook's default tracking URI (relative to its folder), seen from here
TRACKING_URI = f"sqlite:///{FOLDER / 'mlflow.db'}"
EXPERIMENT = "nyc-taxi-experiment"
MONTHS = ("2021-01", "2021-02")


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(cmd)}` failed with exit status {proc.returncode}")


def latest_mlflow_run(tracking_uri: str, experiment: str, flow_run_id: str | None = None):
    """The most recent mlflow run of `experiment` (the one tagged with `flow_run_id` if given)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = f"tags.`nb2flow.flow_run_id` = '{flow_run_id}'" if flow_run_id else ""
    runs = client.search_runs(
        [exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
        max_results=1,
    )  # fmt: skip
    return runs[0] if runs else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nb2flow.examples.demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="trips per month (20,000)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (0)")
    parser.add_argument(
        "--data", default=str(FOLDER / "data"), help="data directory (notebooks/data)"
    )
    parser.add_argument("--once", action="store_true", help="run the flow once, not twice")
    args = parser.parse_args(argv)

    if not NOTEBOOK.exists():
        print(f"demo: run me from the repository root ({NOTEBOOK} not found)", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    python = sys.executable
    t0 = time.perf_counter()

    _step(f"data: {len(MONTHS)} months of synthetic green-taxi trips in {args.data}/")
    _run([python, "-m", "nb2flow.examples.taxi", "--out", args.data, "--months", *MONTHS,
          "--rows", str(args.rows), "--seed", str(args.seed)])  # fmt: skip

    _step(f"convert: {NOTEBOOK} -> {SCRIPT}")
    _run([python, "-m", "nb2flow", "convert", str(NOTEBOOK)])

    _step(f"run the flow, as production would (it runs in {FOLDER}/, as the notebook does)")
    # the notebook's own paths (data/..., relative to its folder) find the default data;
    # paths given on the command line resolve in that folder too, so others go in absolute
    paths: list[str] = []
    if Path(args.data).resolve() != (FOLDER / "data").resolve():
        for option, month in zip(("--train-path", "--val-path"), MONTHS, strict=True):
            paths += [option, str((Path(args.data) / f"green_tripdata_{month}.parquet").resolve())]
    _run([python, str(SCRIPT), *paths])
    if not args.once:
        _step("run it again: load_data and features (tagged `cache`) come from the cache")
        _run([python, str(SCRIPT), *paths])

    _step("result")
    run = latest_mlflow_run(TRACKING_URI, EXPERIMENT)
    if run is None:
        print("demo: the flow ran but no mlflow run was found", file=sys.stderr)
        return 1
    tags = run.data.tags
    flow_run_id = tags.get("nb2flow.flow_run_id")
    from nb2flow.store.db import default_path

    rows = [
        ("validation RMSE", f"{run.data.metrics.get('rmse', float('nan')):.3f} minutes"),
        ("mlflow run id", run.info.run_id),
        ("nb2flow run name", tags.get("nb2flow.flow_run_name", "(not tagged)")),
        ("nb2flow run id", flow_run_id or "(not tagged)"),
        ("mlflow database", f"{(FOLDER / 'mlflow.db').resolve()}  (artifacts in {FOLDER}/mlruns)"),
        ("nb2flow run store", str(default_path())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(
        f"""
Next:
  the runs recorded so far:      nb2flow runs
  this run, task by task:        nb2flow show {(flow_run_id or "RUN")[:8]}
  the same run as an HTML page:  nb2flow report {(flow_run_id or "RUN")[:8]}
  the mlflow UI:                 mlflow ui --backend-store-uri {TRACKING_URI}
  the flow's options:            python {SCRIPT} --help
  the notebook loop in Jupyter:  .venv/bin/jupyter lab {NOTEBOOK}
                                 (Run All; then "Run as flow", or %load_ext nb2flow and
                                 %nb2flow run in a cell: the live panel shows the run)

demo finished in {time.perf_counter() - t0:.1f} s"""
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
