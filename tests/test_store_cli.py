"""`nb2flow runs` and `nb2flow show` through nb2flow.cli.main, on runs recorded from events."""

from __future__ import annotations

import json

import pytest
from test_store import emit_run

from nb2flow.cli import main
from nb2flow.store import recording


@pytest.fixture
def two_runs(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    rec = recording.enable()
    failed = emit_run("alpha", "quick-fox", fail=True)
    ok = emit_run("beta", "lazy-dog", fail=False)
    assert rec.flush(10)
    recording.disable()
    return failed, ok


def test_runs_table(two_runs, capsys):
    failed, ok = two_runs
    assert main(["runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:7] == ["Run", "Flow", "State", "Start", "Duration", "Tasks", "Failed"]
    lazy, quick = out[1].split(), out[2].split()  # most recent first
    assert lazy[:3] == ["lazy-dog", "beta", "Completed"] and "5/5" in lazy
    assert quick[:3] == ["quick-fox", "alpha", "Failed"]
    assert quick[quick.index("3/5") + 1] == "1"  # one failed task
    assert quick[-1] == failed[:12]


def test_runs_filters_and_json(two_runs, capsys):
    failed, ok = two_runs
    assert main(["runs", "--flow", "beta", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [ok]
    assert rows[0]["done"] == 5 and rows[0]["state"] == "Completed"
    assert main(["runs", "--limit", "1", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [ok]
    assert main(["runs", "--flow", "gamma"]) == 0
    assert "No matching runs" in capsys.readouterr().out
    assert main(["runs", "--limit", "0"]) == 2
    assert "--limit must be from 1 to" in capsys.readouterr().err
    assert main(["runs", "--state", "failed", "--json"]) == 0  # any case
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [failed]
    assert main(["runs", "--state", "broken"]) == 2
    assert "not one of: Pending, Running" in capsys.readouterr().err


def test_runs_before_anything_was_recorded(capsys):
    assert main(["runs"]) == 0
    assert "No runs recorded yet" in capsys.readouterr().out
    assert main(["show", "x"]) == 2
    assert "no runs recorded yet" in capsys.readouterr().err


def test_show_text(two_runs, capsys):
    failed, _ = two_runs
    assert main(["show", "quick-fox"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"quick-fox  flow alpha  id {failed}"
    assert lines[1].startswith("state Failed")
    task_rows = {ln.split()[0]: ln.split() for ln in lines if ln.split()[:1]}
    assert task_rows["load"][1:2] == ["Completed"] and "2" in task_rows["load"]
    assert task_rows["train"][1] == "Failed" and "ValueError:" in task_rows["train"]
    graph = out[out.index("\nGraph\n") : out.index("\nError\n")].strip().splitlines()[1:]
    assert graph[0].split() == ["1", "load", "Completed"]
    assert graph[2].split() == ["2", "feat", "Completed", "<-", "load", "(df_train,", "df_val)"]
    assert graph[4].split() == ["4", "report", "NotRun", "<-", "train"]
    assert "ValueError: bad depth" in out[out.index("\nError\n") :]
    logs = out[out.index("\nLogs\n") :].strip().splitlines()[1:]
    assert logs[0].split()[1:] == ["INFO", "load:", "rows:", "10"]
    assert logs[1].split()[1:] == ["ERROR", "flow:", "train", "failed"]


def test_show_json_by_prefix(two_runs, capsys):
    _, ok = two_runs
    assert main(["show", ok[:8], "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == ok and data["state"] == "Completed"
    assert [t["name"] for t in data["tasks"]] == ["load", "cached", "feat", "train", "report"]
    assert len(data["graph_layers"]) == 4


def test_show_unknown_or_ambiguous_run(two_runs, capsys):
    assert main(["show", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run named 'no-such-run'") and "Traceback" not in err
    rec = recording.enable()
    emit_run(run_id="abcd1", run_name="one")
    emit_run(run_id="abcd2", run_name="two")
    assert rec.flush(10)
    recording.disable()
    assert main(["show", "abcd"]) == 2
    assert "ambiguous" in capsys.readouterr().err


def test_show_limits_long_runs(monkeypatch, capsys):
    from nb2flow.runtime.core import events

    rec = recording.enable()
    events.emit("flow_run", "big", data={"flow_name": "big", "run_name": "big-run"})
    for i in range(250):
        events.emit("task_run", "big", f"t{i}", {"task_name": f"t{i}"})
    assert rec.flush(10)
    recording.disable()
    assert main(["show", "big-run"]) == 0
    out = capsys.readouterr().out
    assert "... 50 more task runs (--all lists them)" in out
    assert main(["show", "big-run", "--all"]) == 0
    out = capsys.readouterr().out
    assert "more task runs" not in out and "t249" in out


def test_a_file_that_is_not_a_store_is_a_clear_error(capsys):
    from nb2flow.store import db

    path = db.default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not sqlite " * 100)
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: cannot read the run store") and "Traceback" not in err


def test_odd_state_names_do_not_break_the_history():
    from nb2flow.runtime.core import events
    from nb2flow.store.db import Store

    rec = recording.enable()
    events.emit("flow_run", "odd", data={"flow_name": "f", "run_name": "odd-run"})
    events.emit("task_run", "odd", "t", {"task_name": "t"})
    events.emit("task_state", "odd", "t", {"state": "Weird;state,1", "attempt": 1})
    assert rec.flush(10)
    recording.disable()
    with Store() as store:
        assert store.load_run("odd").tasks["t"].state == "Weird state 1"


def test_show_a_run_still_running(capsys):
    rec = recording.enable()
    emit_run("alpha", "busy-bee", finish=False)
    assert rec.flush(10)
    recording.disable()
    assert main(["show", "busy-bee"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("state Running") and "running for" in lines[1]
    train = next(ln.split() for ln in lines if ln.split()[:1] == ["train"])
    assert train[1] == "Running" and train[3].endswith("...")


def test_runs_table_in_a_pipe_is_not_cut_to_80_columns(monkeypatch):
    import subprocess
    import sys

    rec = recording.enable()
    emit_run("a-flow-name-long-enough-to-be-cut-at-eighty-columns", "quick-fox", fail=False)
    assert rec.flush(10)
    recording.disable()
    env = {k: v for k, v in __import__("os").environ.items() if k != "COLUMNS"}
    out = subprocess.run(
        [sys.executable, "-m", "nb2flow", "runs"], capture_output=True, text=True, env=env
    ).stdout
    assert "a-flow-name-long-enough-to-be-cut-at-eighty-columns" in out
    assert "…" not in out


def test_runs_and_show_tell_what_ran_where_and_what_it_showed(monkeypatch, capsys, tmp_path):
    import os

    from nb2flow import artifacts, flow, task

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NB2FLOW_CAPTURE", "on")
    monkeypatch.chdir(tmp_path)

    @task
    def train(depth: int) -> float:
        print(f"training at depth {depth}")
        artifacts.markdown("**RMSE** 6.25", name="metric")
        return 6.25

    @flow(name="tagged-flow", tags=["nightly"])
    def f(depth: int = 3) -> dict:
        return {"rmse": train.submit(depth), "depth": depth}

    run = f(return_state=True)
    f.with_options(tags=["adhoc"])()
    assert main(["runs", "--tag", "nightly", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == run.id and row["tags"] == ["nightly"]
    assert row["task_runner"].startswith("threads:") and row["cwd"] == str(tmp_path)
    assert row["script"] == os.path.abspath(__file__)
    assert main(["runs"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[-5:] == ["Runner", "Tags", "Parameters", "Where", "Id"]
    assert main(["show", run.name]) == 0
    out = capsys.readouterr().out
    assert "tags nightly" in out and f"in {tmp_path}" in out and "end 20" in out
    assert "returned rmse = 6.25; depth = 3" in out
    assert "Results\ntrain: 6.25" in out
    assert "Outputs\ntrain: markdown metric  (text/markdown 13 B)" in out
    assert "training at depth 3" in out
    assert main(["show", run.id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result"]["items"]["rmse"] == {"type": "float", "repr": "6.25"}
    assert data["tasks"][0]["result"] == {"type": "float", "repr": "6.25"}
    (art,) = data["artifacts"]
    assert art["kind"] == "markdown" and art["text"] == "**RMSE** 6.25"
    assert art["parts"]["text/markdown"]["bytes"] == 13
    assert open(art["parts"]["text/markdown"]["file"]).read() == "**RMSE** 6.25"
