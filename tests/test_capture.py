"""Output capture and artifacts: what a task prints, writes to stderr, logs through a
library's logger, draws and displays is recorded with its task run, on every runner (Dask:
tests/test_dask_runner.py); ``--json`` keeps stdout for the JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading

import pytest

from nb2flow import artifacts, flow, task
from nb2flow.runtime.core.model import StoredPart
from nb2flow.runtime.observation import capture
from nb2flow.store.db import Store
from tests.capture_tasks import capture_flow, check_capture_run
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _capture_on(monkeypatch):
    """Capture is on where no one chose (run_cli scripts, Jupyter kernels); here by setting."""
    monkeypatch.setenv("NB2FLOW_CAPTURE", "on")


@pytest.mark.parametrize("runner", ["threads", "sequential", "processes:2"])
def test_every_capture_path_on_a_local_runner(runner):
    run = capture_flow.with_options(task_runner=runner)(return_state=True)
    check_capture_run(run)
    with Store() as store:  # the store keeps all of it
        stored = store.load_run(run.id)
    check_capture_run(type("Stored", (), {"state": stored.state, "view": stored, "error": ""}))


def test_figures_a_task_leaves_open_are_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = plt.figure()  # open before the run: not the task's
    run = capture_flow.with_options(task_runner="threads")(return_state=True)
    assert run.state == "Completed"
    assert plt.get_fignums() == [kept.number]
    plt.close(kept)


def test_concurrent_tasks_on_threads_each_get_their_own_output():
    barrier = threading.Barrier(3, timeout=10)

    @task
    def speaker(who: str) -> None:
        for i in range(5):
            barrier.wait()  # all three print each line at the same moment
            print(f"{who} says {i}", end="")
            sys.stdout.write(" and more\n")

    @flow(task_runner="threads:3")
    def f():
        return [speaker.submit(w) for w in ("ann", "bob", "cy")]

    run = f(return_state=True)
    assert run.state == "Completed"
    for t in run.task_runs:
        who = run.view.tasks[t.id]
        lines = [lg.message for lg in run.view.logs if lg.task_run_id == t.id]
        name = {"ann", "bob", "cy"} & {lines[0].split()[0]}
        assert len(name) == 1, lines
        (person,) = name
        assert lines == [f"{person} says {i} and more" for i in range(5)], who


def test_capture_is_off_by_default_in_a_plain_program(monkeypatch, capsys):
    monkeypatch.delenv("NB2FLOW_CAPTURE")

    @task
    def talk():
        print("to stdout, as always")

    @flow
    def f():
        talk.submit()

    assert f(return_state=True).view.logs == []
    assert "to stdout, as always" in capsys.readouterr().out


def test_print_outside_runs_is_untouched(capsys):
    capture.ensure_installed()
    print("plain")
    assert capsys.readouterr().out == "plain\n"


def test_log_prints_false_and_no_capture_leave_output_alone(capsys, monkeypatch):
    @task
    def talk():
        print("said")
        logging.getLogger("nb2flow_tests.lib").info("logged")

    @flow(log_prints=False)
    def f():
        talk.submit()

    run = f(return_state=True)
    assert run.view.logs == [] and "said" in capsys.readouterr().out
    monkeypatch.setenv("NB2FLOW_CAPTURE", "off")
    run = f.with_options(log_prints=None)(return_state=True)
    assert run.view.logs == [] and "said" in capsys.readouterr().out


def test_a_record_two_handlers_write_is_recorded_once_with_its_level():
    lib = logging.getLogger("nb2flow_tests.twice")
    lib.handlers[:] = [logging.StreamHandler(sys.stderr), logging.StreamHandler(sys.stdout)]
    lib.setLevel(logging.DEBUG)
    lib.propagate = False

    @task
    def t():
        lib.error("boom %s", 1)
        try:
            raise ZeroDivisionError("no")
        except ZeroDivisionError:
            lib.exception("failed")

    @flow
    def f():
        t.submit()

    run = f(return_state=True)
    logs = [(lg.levelname, lg.logger, lg.message.splitlines()[0]) for lg in run.view.logs]
    assert logs == [
        ("ERROR", "nb2flow_tests.twice", "boom 1"),
        ("ERROR", "nb2flow_tests.twice", "failed"),
    ]
    assert "ZeroDivisionError" in run.view.logs[1].message  # with its traceback


def test_output_beyond_the_cap_is_dropped_with_one_warning(monkeypatch):
    monkeypatch.setattr(capture, "MAX_BYTES", 100)

    @task
    def loud():
        for i in range(50):
            print(f"line {i:03d} " + "x" * 10)

    @flow
    def f():
        loud.submit()

    run = f(return_state=True)
    messages = [lg.message for lg in run.view.logs]
    assert messages[0] == "line 000 xxxxxxxxxx" and len(messages) < 10
    assert "more bytes of output" in messages[-1] and run.view.logs[-1].levelname == "WARNING"


def test_progress_bars_keep_their_last_redraw_and_a_last_line_without_newline_is_kept():
    @task
    def bar():
        for i in range(3):
            sys.stderr.write(f"\r{i}/3")
        sys.stderr.write("\rdone\n")
        print("no newline at the end", end="")

    @flow
    def f():
        bar.submit()

    run = f(return_state=True)
    assert [lg.message for lg in run.view.logs] == ["done", "no newline at the end"]


def test_explicit_artifacts_api():
    @task
    def report():
        artifacts.markdown("**RMSE** 6.1", name="metric")
        artifacts.table([{"a": 1, "b": "<x>"}, {"a": 2}], name="rows")
        artifacts.table({"col": [1, 2, 3]})
        png = b"\x89PNG\r\n\x1a\n" + b"0" * 10
        artifacts.image(png, name="raw")
        with pytest.raises(TypeError, match="matplotlib figure, PNG bytes"):
            artifacts.image(object())
        artifacts.display("a <b>string</b>")
        artifacts.display({"rich": 1})

    @flow
    def f():
        report.submit()

    run = f(return_state=True)
    assert run.state == "Completed", run.error
    arts = run.view.artifacts
    assert [(a.kind, a.name) for a in arts] == [
        ("markdown", "metric"),
        ("table", "rows"),
        ("table", ""),
        ("image", "raw"),
        ("value", ""),
        ("value", ""),
    ]
    assert arts[0].get("text/markdown") == "**RMSE** 6.1"
    rows = arts[1].get("text/html")
    assert "<th>a</th><th>b</th>" in rows and "&lt;x&gt;" in rows and "<x>" not in rows
    assert "[3 rows x 1 columns]" in arts[2].text
    assert arts[4].text == "'a <b>string</b>'" and arts[4].get("text/html") is None
    with Store() as store:  # parts beside the store, owner-only
        stored = store.load_run(run.id).artifacts
    assert stored == arts
    part = stored[3].bundle["image/png"]
    assert isinstance(part, StoredPart) and part.read() == arts[3].get("image/png")
    import os
    import stat

    assert stat.S_IMODE(os.stat(part.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(part.path)).st_mode) == 0o700


def test_artifact_parts_over_their_cap_are_left_out():
    from nb2flow.runtime.observation import artifacts as A

    class Huge:
        def __repr__(self) -> str:
            return "r" * (A.MAX_TEXT + 10)

        def _repr_html_(self) -> str:
            return "<p>" + "h" * A.MAX_HTML + "</p>"

    @task
    def show():
        artifacts.display(Huge())

    @flow
    def f():
        show.submit()

    (art,) = f(return_state=True).view.artifacts
    assert art.truncated and art.get("text/html") is None
    assert len(art.text) == A.MAX_TEXT and art.text.endswith("\u2026")


def test_artifacts_outside_a_run_record_nothing():
    assert artifacts.markdown("hello") is False


def test_json_output_is_only_json_whatever_the_flow_prints(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging, os, sys
            from nb2flow import flow, task, run_cli

            @task
            def work(x):
                print("a print in a task")
                sys.stderr.write("stderr in a task\\n")
                os.system("echo a subprocess writes to fd 1")
                logging.getLogger("lib").warning("a library warns")
                return x * 2

            @flow
            def main(x: int = 21) -> dict:
                print("a print in the flow body")
                return {"answer": work.submit(x), "pi": 3.141592653589793}

            if __name__ == "__main__":
                run_cli(main)
            """
        )
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    for cmd in (
        [sys.executable, str(script), "--json"],
        [sys.executable, "-m", "nb2flow", "run", str(script), "--json"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"answer": 42, "pi": 3.141592653589793}
        # not a terminal: prints are written as the flow wrote them, but under --json what
        # goes to stdout goes to stderr, fd 1 (a subprocess) included
        for text in (
            "a print in a task",
            "stderr in a task",
            "a print in the flow body",
            "a subprocess writes to fd 1",
        ):
            assert f"{text}\n" in proc.stderr
        assert "WARNING work | a library warns" in proc.stderr  # a record: a log line
    with Store() as store:
        (run, _) = store.list_runs(limit=2)
        logged = [lg.message for lg in store.load_run(run.id).logs]
    assert "a print in a task" in logged and "a print in the flow body" in logged
    # without --json, in a pipe: the prints stay on stdout (and in the record)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "a print in a task\n" in proc.stdout and "a print in the flow body\n" in proc.stdout
    assert "stderr in a task\n" in proc.stderr and "a print" not in proc.stderr
