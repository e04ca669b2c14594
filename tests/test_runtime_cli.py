"""run_cli and ``nb2flow run``: options from the flow signature, exit codes, Ctrl-C."""

from __future__ import annotations

import enum
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Literal

import pytest

from nb2flow.cli import main as nb2flow_main
from nb2flow.runtime.api import flow, run_cli, task

ROOT = Path(__file__).resolve().parent.parent


@task
def add(x, y):
    return x + y


@flow
def params_flow(
    count: int,
    rate: float = 0.5,
    label: str = "a",
    dry_run: bool = False,
    names: list[str] | None = None,
    options: dict | None = None,
    path: Path = Path("data"),
    untyped=3,
) -> dict:
    return {
        "count": count,
        "rate": rate,
        "label": label,
        "dry_run": dry_run,
        "names": names,
        "options": options,
        "path": path,
        "untyped": untyped,
        "sum": add.submit(count, untyped),
    }


def test_options_are_typed_from_the_signature(capsys):
    code = run_cli(
        params_flow,
        [
            "--count", "4", "--rate", "1.5", "--dry-run", "--names", "x", "y",
            "--options", '{"k": [1]}', "--path", "/tmp/p", "--untyped", "7", "--json", "--quiet",
        ],
        exit=False,
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "count": 4,
        "rate": 1.5,
        "label": "a",
        "dry_run": True,
        "names": ["x", "y"],
        "options": {"k": [1]},
        "path": "/tmp/p",
        "untyped": 7,
        "sum": 11,
    }


def test_bad_and_missing_options_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(params_flow, ["--rate", "2"], exit=False)  # --count is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        run_cli(params_flow, ["--count", "two"], exit=False)
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_help_lists_parameters_and_runtime_options(capsys):
    with pytest.raises(SystemExit):
        run_cli(params_flow, ["--help"], exit=False, prog="demo")
    text = capsys.readouterr().out
    for option in ("--count COUNT", "--dry-run, --no-dry-run", "--task-runner", "--executor"):
        assert option in text
    assert "--quiet" in text and "--no-store" in text and "--json" in text


@flow(persist=False)
def clashing_flow(
    quiet: int = 1,
    json: str = "j",
    task_runner: str = "t",
    executor: str = "e",
    no_store: bool = False,
    help: str = "h",
    store: bool = True,
    param_quiet: int = 5,
    self: int = 2,
) -> list:
    return [quiet, json, task_runner, executor, no_store, help, store, param_quiet, self]


def test_parameters_named_like_runtime_options_get_param_options_and_the_script_works(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(clashing_flow, ["--help"], exit=False, prog="demo")
    assert exc.value.code == 0  # --help still works
    text = capsys.readouterr().out
    for option in (
        "--param-json JSON",
        "--param-task-runner TASK_RUNNER",
        "--param-executor EXECUTOR",
        "--param-no-store, --no-param-no-store",
        "--param-help HELP",
        "--param-store, --no-param-store",  # its --no- form would be --no-store
        "--param-quiet PARAM_QUIET",  # the parameter whose name it is keeps it
        "--param-param-quiet QUIET",
        "--self SELF",
    ):
        assert option in text, option
    assert "int, default: 1; parameter 'quiet'" in text
    argv = ["--param-param-quiet", "3", "--param-json", "x", "--param-help", "y"]
    argv += ["--no-param-store", "--param-no-store", "--self", "9"]
    # and the runtime options keep their meaning
    assert run_cli(clashing_flow, [*argv, "--quiet", "--json", "--no-store"], exit=False) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [3, "x", "t", "e", True, "y", False, 5, 9]


def test_a_flow_parameter_named_self_is_passed_by_keyword():
    assert clashing_flow(self=7)[-1] == 7

    @task
    def method_like(self, x):
        return self + x

    @flow(persist=False)
    def uses_it():
        return [method_like(self=1, x=2), method_like.submit(self=3, x=4)]

    assert uses_it() == [3, 7]


def test_a_flow_parameter_named_return_state_is_refused_with_the_fix():
    from nb2flow.errors import Nb2flowError

    def bad(return_state: bool = False):
        return return_state

    with pytest.raises(Nb2flowError) as exc:
        flow(bad)
    assert str(exc.value) == (
        "@flow bad: the parameter name 'return_state' is taken by the flow call "
        "(bad(..., return_state=True) returns the run); rename the parameter"
    )


def test_a_dict_parameter_given_a_json_list_is_one_clear_error(capsys):
    for bad in ("[1,2]", '"text"', "3"):
        with pytest.raises(SystemExit) as exc:
            run_cli(params_flow, ["--count", "1", "--options", bad], exit=False, prog="demo")
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert err.splitlines()[-1] == (
            "demo: error: argument --options: expected a JSON object such as "
            f"'{{\"key\": 1}}', not {bad!r}"
        )
    # an optional dict still takes null
    assert (
        run_cli(params_flow, ["--count", "1", "--options", "null", "-q", "--json"], exit=False) == 0
    )
    assert json.loads(capsys.readouterr().out)["options"] is None


@task
def explode():
    raise ValueError("broken input")


@flow
def failing_flow():
    return explode.submit()


def test_failed_flow_exits_1_with_one_error_line(capsys):
    assert run_cli(failing_flow, ["--no-store"], exit=False) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "task 'explode' failed: ValueError: broken input" in lines[0]
    assert "Traceback" not in err
    assert run_cli(failing_flow, ["--executor", "nope"], exit=False) == 2


@pytest.mark.parametrize("store", ["on", "false", "off", "0", "no", "--no-store"])
def test_the_error_line_points_to_nb2flow_show_only_for_recorded_runs(store, monkeypatch, capsys):
    argv = []
    if store == "--no-store":
        argv.append(store)
    else:
        monkeypatch.setenv("NB2FLOW_STORE", store)
    assert run_cli(failing_flow, argv, exit=False) == 1
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert ("details: nb2flow show" in line) == (store == "on")
    if store != "on":  # nothing was recorded: nothing to show
        assert not (Path(os.environ["NB2FLOW_HOME"]) / "runs.db").exists()


def test_summary_line_when_not_a_terminal(capsys):
    assert run_cli(params_flow, ["--count", "1", "--task-runner", "sequential"], exit=False) == 0
    err = capsys.readouterr().err
    assert "params-flow" in err and "1 of 1 tasks completed" in err


def test_runs_are_recorded_in_the_store():
    from nb2flow.store.db import Store

    assert run_cli(params_flow, ["--count", "1", "--quiet"], exit=False) == 0
    with Store() as store:
        runs = store.list_runs()
        assert len(runs) == 1
        view = store.load_run(runs[0].id)
    assert view.state == "Completed" and view.flow_name == "params-flow"
    assert [t.name for t in view.tasks.values()] == ["add"]


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nb2flow import flow, task, run_cli, get_run_logger

    @task
    def square(x: int) -> int:
        get_run_logger().info("squaring %d", x)
        return x * x

    @task
    def wait_forever(marker):
        Path(marker).write_text("started")
        time.sleep(60)

    @flow(name="script-flow")
    def main(x: int = 3, hang: str = "", direct: bool = False) -> dict:
        y = square.submit(x)
        if hang and direct:
            wait_forever(hang)  # Ctrl-C lands in the task, in the flow's thread
        elif hang:
            wait_forever.submit(hang)  # Ctrl-C lands in the flow waiting for it
        return {"y": y}

    if __name__ == "__main__":
        run_cli(main)
    """
)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "flow_script.py"
    path.write_text(SCRIPT)
    return path


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_nb2flow_run_uses_the_same_command_line(script, capsys):
    assert nb2flow_main(["run", str(script), "--x", "5", "--json", "--no-store"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"y": 25}
    assert "squaring 5" in captured.err


def test_nb2flow_run_errors(tmp_path, capsys):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert nb2flow_main(["run", str(empty)]) == 2
    assert "defines no @flow" in capsys.readouterr().err
    assert nb2flow_main(["run", str(tmp_path / "missing.py")]) == 2
    bad = tmp_path / "bad.py"
    bad.write_text("def (:\n")
    assert nb2flow_main(["run", str(bad)]) == 2
    assert "bad.py, line 1: syntax error" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("import os\n\nvalue = int('x')\n")
    assert nb2flow_main(["run", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.py, line 3: the script failed while loading: ValueError: invalid literal" in err
    assert "Traceback" not in err


def test_script_runs_as_a_program_and_no_store_records_nothing(script, _isolated_home):
    proc = subprocess.run(
        [sys.executable, str(script), "--x", "4", "--json", "--no-store"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"y": 16}
    assert not (_isolated_home / "runs.db").exists()


@pytest.mark.parametrize(
    ("how", "sig", "code"),
    [
        ("--no-direct", signal.SIGINT, 130),
        ("--direct", signal.SIGINT, 130),
        ("--no-direct", signal.SIGTERM, 143),
    ],
)
def test_ctrl_c_and_sigterm_cancel_cleanly(script, tmp_path, how, sig, code):
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--hang", str(marker), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10  # did not wait for the 60 s task
    assert proc.returncode == code, err
    assert "Traceback" not in err and "cancelled" in err
    from nb2flow.store.db import Store

    with Store() as store:
        view = store.load_run(store.list_runs()[0].id)
    assert view.state == "Cancelled"
    assert {t.name: t.state for t in view.tasks.values()} == {
        "wait_forever": "Cancelled",
        "square": "Completed",
    }


@task
def chatty(i):
    from nb2flow import get_run_logger

    log = get_run_logger()
    log.info("info %d", i)
    log.warning("warning %d", i)
    return i


@flow
def chatty_flow(n: int = 3):
    return chatty.map(range(n))


def _report(mode):
    import io

    from nb2flow.runtime.observation import hooks
    from nb2flow.runtime.observation.reporter import TerminalReporter

    stream = io.StringIO()
    reporter = TerminalReporter(mode, stream=stream)
    hooks.register("terminal", reporter.observe)  # as run_cli does
    try:
        reporter.start()
        run = chatty_flow(return_state=True)
        reporter.stop()
    finally:
        hooks.unregister("terminal")
    return run, stream.getvalue()


def test_live_display_renders_every_task_and_the_logs():
    run, text = _report("live")
    assert run.state == "Completed"
    assert f"chatty-flow · {run.name} · Completed" in text and f"run {run.id[:8]}" in text
    assert "3 of 3 tasks completed" in text
    for i in range(3):
        assert f"chatty[{i}]" in text and f"warning {i}" in text and f"info {i}" in text
    assert text.count("Completed") >= 4  # the header and one row per task


def test_plain_and_quiet_reporting():
    _, plain = _report("plain")
    assert "INFO    chatty[0] | info 0" in plain and "WARNING chatty[2] | warning 2" in plain
    _, quiet = _report("quiet")
    assert "warning 1" in quiet and "info 1" not in quiet


class Color(enum.Enum):
    red = 1
    blue = 2


@flow
def pick(mode: Literal["fast", "slow"] = "fast", color: Color = Color.red):
    return {"mode": mode, "color": color.name}


def test_choices_from_literal_and_enum(capsys):

    assert run_cli(pick, ["--mode", "slow", "--color", "blue", "--json", "-q"], exit=False) == 0
    assert json.loads(capsys.readouterr().out) == {"mode": "slow", "color": "blue"}
    with pytest.raises(SystemExit):
        run_cli(pick, ["--mode", "medium"], exit=False)
    assert "invalid choice" in capsys.readouterr().err
