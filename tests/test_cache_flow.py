"""Caching seen through real flow runs: Cached states, incremental re-runs after edits,
corrupt entries, concurrent writers, and the run store."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nb2flow.runtime.cache import entries, keys
from nb2flow.runtime.core import events
from nb2flow.runtime.core.model import RunView
from nb2flow.runtime.core.states import CACHED, COMPLETED
from tests.conftest import require_modules

ROOT = Path(__file__).resolve().parent.parent

FLOW = '''
"""A small converted flow: load -> features (changes its input in place) -> train."""
import pandas as pd

from nb2flow import flow, task

SCALE = 2


def scaled(values):
    return values * SCALE


@task(cache=True)
def load(n):
    return pd.DataFrame({"a": range(n)})


@task(cache=True)
def features(df):
    df["b"] = scaled(df["a"])  # in place: must not poison load's entry
    return df


@task(cache=True)
def train(df, alpha):
    return float(df["b"].sum()) * alpha


@flow(name="cache-demo")
def main(n: int = 10, alpha: float = 1.0):
    df = load.submit(n)
    feats = features.submit(df)
    return train.submit(feats, alpha)


if __name__ == "__main__":
    from nb2flow import run_cli

    run_cli(main)
'''


class Runner:
    """Imports versions of a flow module from files and runs them, recording events."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.count = 0

    def load(self, source: str):
        self.count += 1
        name = f"cache_flow_{self.count}"
        path = self.tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def run(self, source: str, **params) -> tuple[object, RunView]:
        module = self.load(source)
        seen: list[events.RunEvent] = []
        events.subscribe(seen.append)
        try:
            result = module.main(**params)
        finally:
            events.unsubscribe(seen.append)
        (run_id,) = {e.flow_run_id for e in seen if e.kind == "flow_run"}
        return result, RunView.from_events(run_id, seen)


def states(view: RunView) -> dict[str, str]:
    return {t.name: t.state for t in view.tasks.values()}


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.setenv("NB2FLOW_STORE", "off")
    return Runner(tmp_path)


def test_same_inputs_cached_with_source_run(runner):
    first, v1 = runner.run(FLOW)
    assert first == 90.0
    assert set(states(v1).values()) == {COMPLETED}
    again, v2 = runner.run(FLOW)
    assert again == first
    assert states(v2) == {"load": CACHED, "features": CACHED, "train": CACHED}
    assert {t.cached_from for t in v2.tasks.values()} == {v1.id}
    assert len(entries.list_entries()) == 3
    assert {e.flow for e in entries.list_entries()} == {"cache-demo"}


def test_changed_input_runs_only_what_it_reaches(runner):
    runner.run(FLOW)
    result, view = runner.run(FLOW, alpha=2.0)
    assert result == 180.0
    assert states(view) == {"load": CACHED, "features": CACHED, "train": COMPLETED}
    result, view = runner.run(FLOW, n=5)
    assert result == 20.0
    assert set(states(view).values()) == {COMPLETED}


FILE_FLOW = """
from pathlib import Path

from nb2flow import flow, task


@task(cache=True)
def read(path):
    return Path(path).read_text()


@flow(name="file-demo")
def main(path: str = ""):
    return read.submit(path)
"""


def test_a_path_argument_keys_on_the_file_it_names(runner, tmp_path):
    data = tmp_path / "trips.csv"
    data.write_text("one")
    assert runner.run(FILE_FLOW, path=str(data))[0] == "one"
    result, view = runner.run(FILE_FLOW, path=str(data))
    assert (result, states(view)) == ("one", {"read": CACHED})
    data.write_text("other data")  # regenerated under the same name
    result, view = runner.run(FILE_FLOW, path=str(data))
    assert (result, states(view)) == ("other data", {"read": COMPLETED})
    result, view = runner.run(FILE_FLOW, path=str(data))
    assert (result, states(view)) == ("other data", {"read": CACHED})


def test_edited_task_runs_and_its_downstream_runs(runner):
    runner.run(FLOW)
    edited = FLOW.replace('df["b"] = scaled(df["a"])', 'df["b"] = scaled(df["a"]) + 1')
    result, view = runner.run(edited)
    assert result == 100.0
    assert states(view) == {"load": CACHED, "features": COMPLETED, "train": COMPLETED}
    # an edit that gives the same value: downstream stays cached (its inputs are equal)
    same_value = FLOW.replace("    return df\n", "    out = df\n    return out\n")
    result, view = runner.run(same_value)
    assert result == 90.0
    assert states(view) == {"load": CACHED, "features": COMPLETED, "train": CACHED}


def test_edited_helper_or_constant_runs_the_task_that_calls_it(runner):
    runner.run(FLOW)
    helper = FLOW.replace("return values * SCALE", "return values * SCALE + 0.5")
    result, view = runner.run(helper)
    assert result == 95.0
    assert states(view) == {"load": CACHED, "features": COMPLETED, "train": COMPLETED}
    constant = FLOW.replace("SCALE = 2", "SCALE = 3")
    result, view = runner.run(constant)
    assert result == 135.0
    assert states(view)["features"] == COMPLETED


def test_in_place_change_downstream_does_not_poison_upstream_entry(runner):
    runner.run(FLOW)
    (load_entry,) = [e for e in entries.list_entries() if e.task == "load"]
    stored = entries.lookup(load_entry.key).value
    assert list(stored.columns) == ["a"]  # features added "b" to the object after the save


def test_corrupted_cache_file_runs_with_a_warning(runner):
    runner.run(FLOW)
    (entry,) = [e for e in entries.list_entries() if e.task == "load"]
    parquet = entry.path / "0.parquet"
    parquet.write_bytes(parquet.read_bytes()[:40])
    result, view = runner.run(FLOW)
    assert result == 90.0
    assert states(view) == {"load": COMPLETED, "features": CACHED, "train": CACHED}
    (warning,) = [log for log in view.logs if log.logger == keys.LOGGER]
    assert warning.levelname == "WARNING" and "is damaged" in warning.message
    assert view.tasks[warning.task_run_id].name == "load"
    _, view = runner.run(FLOW)  # repaired by the run that recomputed it
    assert states(view)["load"] == CACHED


def test_refresh_cache_forces_a_run(runner):
    runner.run(FLOW)
    refreshed = FLOW.replace(
        "@task(cache=True)\ndef load", "@task(cache=True, refresh_cache=True)\ndef load"
    )
    assert refreshed != FLOW
    _, refresh_view = runner.run(refreshed)
    assert states(refresh_view) == {"load": COMPLETED, "features": CACHED, "train": CACHED}
    _, view = runner.run(FLOW)  # the refreshed value replaced the stored one
    (load_run,) = [t for t in view.tasks.values() if t.name == "load"]
    assert (load_run.state, load_run.cached_from) == (CACHED, refresh_view.id)


@pytest.mark.slow
def test_two_processes_filling_the_same_keys_both_succeed_one_entry_each(tmp_path):
    script = tmp_path / "flow_script.py"
    script.write_text(textwrap.dedent(FLOW))
    env = {**os.environ, "NB2FLOW_STORE": "off", "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "--n", "200000", "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    found = entries.list_entries()
    assert sorted(e.task for e in found) == ["features", "load", "train"]
    assert list((entries.results_dir() / ".tmp").iterdir()) == []


def test_cached_state_is_in_the_run_store(tmp_path, monkeypatch):
    monkeypatch.delenv("NB2FLOW_STORE", raising=False)
    runner = Runner(tmp_path)
    _, v1 = runner.run(FLOW)
    _, v2 = runner.run(FLOW)
    from nb2flow.store.db import Store
    from nb2flow.store.recording import current

    recorder = current()
    assert recorder is not None and recorder.flush(timeout=30)
    deadline = time.time() + 10
    with Store() as store:
        view = store.load_run(v2.id)
        while {t.state for t in view.tasks.values()} != {CACHED} and time.time() < deadline:
            time.sleep(0.05)
            view = store.load_run(v2.id)
    assert {t.name: (t.state, t.cached_from) for t in view.tasks.values()} == {
        "load": (CACHED, v1.id),
        "features": (CACHED, v1.id),
        "train": (CACHED, v1.id),
    }


@pytest.mark.slow
def test_cache_works_with_the_process_runner(tmp_path):
    script = tmp_path / "flow_script.py"
    script.write_text(textwrap.dedent(FLOW))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NB2FLOW_STORE", None)
    cmd = [sys.executable, str(script), "--task-runner", "processes:2", "--quiet"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert sorted(e.task for e in entries.list_entries()) == ["features", "load", "train"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(entries.list_entries()) == 3
    from nb2flow.store.db import Store

    with Store() as store:
        latest, earlier = store.list_runs(flow="cache-demo")
        view = store.load_run(latest.id)
    assert {t.name: (t.state, t.cached_from) for t in view.tasks.values()} == {
        name: (CACHED, earlier.id) for name in ("load", "features", "train")
    }


UNHASHABLE = """
import threading

from nb2flow import flow, task


@task(cache=True)
def use_lock(lock, n):
    with lock:
        return n + 1


@flow(name="lock-flow")
def main(n: int = 1):
    return use_lock(threading.Lock(), n)
"""


def test_unhashable_input_runs_uncached_with_a_warning(runner):
    result, view = runner.run(UNHASHABLE)
    assert result == 2
    assert states(view) == {"use_lock": COMPLETED}
    (warning,) = [log for log in view.logs if log.logger == keys.LOGGER]
    assert "runs uncached: argument 'lock': cannot hash a lock" in warning.message
    assert entries.list_entries() == []


KERNEL_CELLS = [
    """
from nb2flow import flow, task
from nb2flow.runtime.core import events
from nb2flow.runtime.core.model import RunView

SCALE = 2


def helper(x):
    return x * SCALE


def run():
    seen = []
    events.subscribe(seen.append)
    try:
        value = main()
    finally:
        events.unsubscribe(seen.append)
    (run_id,) = {e.flow_run_id for e in seen if e.kind == "flow_run"}
    return value, [t.state for t in RunView.from_events(run_id, seen).tasks.values()]
""",
    """
@task(cache=True)
def double(x):
    return helper(x)


@flow(name="in-kernel")
def main(x: int = 3):
    return double(x)
""",
    "print(run(), run())",
    # the user edits the helper's cell and runs it again
    "def helper(x):\n    return x * SCALE + 1\n\nprint(run(), run())",
    # ... then the task's own cell
    "@task(cache=True)\ndef double(x):\n    return helper(x) * 10\n\nprint(run(), run())",
]


@pytest.mark.slow
def test_edits_in_a_live_kernel_rerun_only_what_changed(monkeypatch):
    require_modules("jupyter", "nbclient", "ipykernel")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NB2FLOW_STORE", "off")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in KERNEL_CELLS])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells[2:]]
    assert printed == [
        "(6, ['Completed']) (6, ['Cached'])\n",
        "(7, ['Completed']) (7, ['Cached'])\n",
        "(70, ['Completed']) (70, ['Cached'])\n",
    ]
