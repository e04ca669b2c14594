"""The run store and what reaches terminals (issue 13, items 2, 3, 7, 9 and the store/JSON
part of 14). Attacker steps run as a second real account (``other_account``)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nb2flow import flow, get_run_logger, task
from nb2flow.cli import main
from nb2flow.store import db, recording
from nb2flow.store.db import Store

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


def home() -> Path:
    return Path(os.environ["NB2FLOW_HOME"])


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NB2FLOW_PANEL": "off"}


@task
def noisy(x: int) -> int:
    get_run_logger().warning("hello %s", ESC)
    return x


@task
def failing(x: int) -> int:
    raise ValueError(f"bad {ESC} value")


@flow(name="noisy")
def noisy_flow(x: int = 1):
    return noisy.submit(x)


@flow(name="escape-failure")
def failing_flow(x: int = 1):
    return failing.submit(x)


def record(fn, *args):
    run = fn(*args, return_state=True)
    assert recording.current().flush(30)
    return run


# -- item 2: owner-only files ---------------------------------------------------------------


def test_home_is_0700_and_the_store_files_0600_whatever_the_umask():
    h = home()
    os.rmdir(h)
    old = os.umask(0o022)
    try:
        record(noisy_flow)
    finally:
        os.umask(old)
    assert h.stat().st_mode & 0o777 == 0o700
    made = [p for p in h.iterdir() if p.name.startswith("runs.db")]
    assert {p.name for p in made} >= {"runs.db", "runs.db-wal", "runs.db-shm"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in made), made


def test_another_account_cannot_read_the_run_history(other_account, shared_dir, monkeypatch):
    monkeypatch.setenv("NB2FLOW_HOME", str(shared_dir / "home"))
    recording.disable()
    record(noisy_flow)
    code = "import sys; open(sys.argv[1], 'rb').read(); print('read it')"
    done = other_account.python(code, str(shared_dir / "home" / "runs.db"))
    assert done.returncode != 0 and "Permission denied" in done.stderr
    listing = other_account.python(
        "import os, sys; os.listdir(sys.argv[1])", str(shared_dir / "home")
    )
    assert listing.returncode != 0 and "Permission denied" in listing.stderr


def test_a_team_home_is_left_as_it_is_with_one_warning(capfd):
    h = home()
    os.chmod(h, 0o2775)  # a team folder the user set up
    record(noisy_flow)
    assert h.stat().st_mode & 0o7777 == 0o2775
    assert (h / "runs.db").stat().st_mode & 0o777 == 0o600
    err = capfd.readouterr().err
    assert err.count("is shared with group") == 1 and "leaves it as it is" in err


def test_an_old_readable_home_and_store_are_made_private(capfd):
    h = home()
    recording.disable()
    db.connect(h / "runs.db").close()
    os.chmod(h, 0o755)
    os.chmod(h / "runs.db", 0o644)
    with Store() as store:
        store.list_runs()
    assert h.stat().st_mode & 0o777 == 0o700
    assert (h / "runs.db").stat().st_mode & 0o777 == 0o600
    assert "made the home folder" in capfd.readouterr().err


# -- item 3: control characters never reach the terminal raw -------------------------------


def test_show_and_runs_neutralise_escape_sequences(capsys):
    record(noisy_flow)
    record(failing_flow)
    capsys.readouterr()
    runs = Store().list_runs()
    for run in runs:
        assert main(["show", run.id]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out
    assert main(["runs"]) == 0
    assert "\x1b" not in capsys.readouterr().out
    for run in runs:
        assert main(["show", run.id]) == 0
        assert "\\x1b]0;owned" in capsys.readouterr().out  # shown, as text


def test_the_terminal_display_and_the_log_lines_neutralise_escape_sequences():
    from nb2flow.runtime.core import events
    from nb2flow.runtime.observation.reporter import TerminalReporter

    for mode, fn in (("plain", noisy_flow), ("live", failing_flow)):
        stream = io.StringIO()
        reporter = TerminalReporter(mode, stream=stream)
        events.subscribe(reporter)
        try:
            reporter.start()
            try:
                fn(return_state=True)
            finally:
                reporter.stop()
        finally:
            events.unsubscribe(reporter)
        text = stream.getvalue()
        assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text, mode
        assert "\\x1b" in text, mode


def test_script_error_lines_neutralise_escape_sequences(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from nb2flow import flow, run_cli, task

            @task
            def boom():
                raise RuntimeError({ESC!r})

            @flow(name="boom")
            def main():
                return boom.submit()

            if __name__ == "__main__":
                run_cli(main)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "\x1b" not in done.stderr and "\\x1b]0;owned" in done.stderr


def test_printable_keeps_text_and_shows_controls():
    from nb2flow.console import printable

    assert printable("naïve café\tok\n") == "naïve café\tok\n"
    assert printable("a\rb\x00c\x9bd\u202ee") == "a\\x0db\\x00c\\x9bd\\u202ee"


# -- item 7: crash detection proves death, the final state wins ----------------------------

NS_FLOW = """
import os, sys, time
from pathlib import Path
from nb2flow import flow, task

@task
def wait_for_go() -> int:
    go = Path(sys.argv[1])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.02)
    return 1

@flow(name="other-namespace")
def main():
    return wait_for_go.submit()

main()
"""


def recording_seen(flow_name: str, seconds: float = 60.0) -> bool:
    """Wait until a run of ``flow_name`` is in the store (another process records it)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (home() / "runs.db").exists():
            with Store(sweep=False) as store:
                if store.list_runs(flow=flow_name):
                    return True
        time.sleep(0.05)
    return False


def test_a_live_run_in_another_pid_namespace_is_never_marked_crashed(tmp_path):
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a second pid namespace needs root and unshare")
    script = tmp_path / "ns_flow.py"
    script.write_text(NS_FLOW)
    go = tmp_path / "go"
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable]
        + [str(script), str(go)],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            pytest.skip(f"unshare --pid is not permitted here: {proc.communicate()[1][-300:]}")
        assert recording_seen("other-namespace")
        # its pid (1 or 2 in its namespace) means another process here: nothing proves it dead
        for _ in range(3):
            with Store() as store:
                assert store.crashed == []
                (run,) = store.list_runs(flow="other-namespace")
                assert run.state == "Running"
        go.touch()
        assert proc.wait(60) == 0, proc.communicate()[1]
    finally:
        proc.kill()
        proc.communicate()
    with Store() as store:
        (run,) = store.list_runs(flow="other-namespace")
        view = store.load_run(run.id)
    assert (run.state, view.state) == ("Completed", "Completed")


def test_a_run_wrongly_swept_as_crashed_ends_with_its_own_final_state():
    """If a sweep marks a live run Crashed, the state the process then records wins, and
    ``runs`` and ``show`` agree."""
    from nb2flow.runtime.core import events as ev

    rec = recording.enable()
    ev.emit("flow_run", "alive", None, {"flow_name": "f", "run_name": "alive", "pid": 1})
    ev.emit("flow_state", "alive", None, {"state": "Running"})
    ev.emit("task_run", "alive", "t", {"task_name": "t"})
    ev.emit("task_state", "alive", "t", {"state": "Running", "attempt": 1})
    assert rec.flush(30)
    with Store(sweep=False) as store:  # as another container's process would see it
        store.conn.execute("UPDATE flow_runs SET proc_pid = 999999999 WHERE id = 'alive'")
        assert db.sweep_crashed(store.conn) == ["alive"]
    ev.emit("task_state", "alive", "t", {"state": "Completed", "attempt": 1})
    ev.emit("flow_state", "alive", None, {"state": "Completed"})
    assert rec.flush(30)
    with Store(sweep=False) as store:
        summary, view = store.summary("alive"), store.load_run("alive")
    assert (summary.state, view.state, summary.error, view.error) == (
        "Completed",
        "Completed",
        None,
        None,
    )
    assert view.tasks["t"].state == "Completed"


# -- item 9: a held write lock never blocks a flow's exit for long -------------------------

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
"""

SMALL_FLOW = """
from nb2flow import flow, run_cli, task

@task
def one(x: int) -> int:
    return x + 1

@flow(name="under-lock")
def main(n: int = 3):
    return [one.submit(i) for i in range(n)]

if __name__ == "__main__":
    run_cli(main)
"""


def test_a_held_write_lock_delays_the_exit_by_seconds_and_the_run_is_recorded_later(
    tmp_path, capsys
):
    path = home() / "runs.db"
    db.connect(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        script = tmp_path / "flow.py"
        script.write_text(SMALL_FLOW)
        # bounded: stall (5 s) at the flow's end and at exit, not the 150 s+ of before
        done = subprocess.run(
            [sys.executable, str(script), "--json"],
            env=env(),
            capture_output=True,
            text=True,
            timeout=4 * recording.STALL_SECONDS + 30,
        )
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 2, 3]
    err = [line for line in done.stderr.splitlines() if line.startswith("nb2flow:")]
    assert any("is locked by another process" in line and "kept in" in line for line in err), err
    assert main(["runs", "--json"]) == 0  # the next command records what was kept
    (run,) = json.loads(capsys.readouterr().out)
    assert (run["flow_name"], run["state"], run["done"], run["tasks"]) == (
        "under-lock",
        "Completed",
        3,
        3,
    )
    assert not list(db.pending_dir(path).glob("*.json"))


# -- item 14: JSON that is valid or one error line; damaged and read-only stores ------------

JSON_FLOW = """
import sys
from nb2flow import flow, run_cli

@flow(name="json-values")
def main(kind: str = "tuple-keys"):
    if kind == "tuple-keys":
        return {(1, 2): "a", "nan": float("nan"), "inf": [float("inf"), -float("inf")]}
    if kind == "cycle":
        x = []
        x.append(x)
        return x
    deep = leaf = []
    for _ in range(300):  # deeper than --json writes, shallower than Python's recursion limit
        leaf.append([])
        leaf = leaf[0]
    return deep

if __name__ == "__main__":
    run_cli(main)
"""


@pytest.mark.parametrize("kind", ["tuple-keys", "deep"])
def test_json_output_is_valid_json_or_one_error_line(tmp_path, kind):
    script = tmp_path / "flow.py"
    script.write_text(JSON_FLOW)
    done = subprocess.run(
        [sys.executable, str(script), "--kind", kind, "--json"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    if kind == "tuple-keys":
        assert done.returncode == 0
        assert json.loads(done.stdout) == {"(1, 2)": "a", "nan": None, "inf": [None, None]}
    else:
        assert done.returncode == 2 and done.stdout == ""
        (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        assert "has no JSON form" in line


def test_json_of_a_cycle_is_one_error_naming_the_place():
    from nb2flow.console import NotJSON, dumps

    value = {"a": [1]}
    value["a"].append(value)
    with pytest.raises(NotJSON, match=r"value\['a'\]\[1\] contains itself"):
        dumps(value)


def test_runs_json_of_nan_parameters_is_valid_json(capsys):
    record(noisy_flow, float("nan"))
    assert main(["runs", "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))


def _one_error_line(argv, capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    return line


def test_a_store_with_damaged_pages_is_one_error_line(capsys):
    for i in range(30):
        record(noisy_flow, i)
    recording.disable()
    path = home() / "runs.db"
    with Store() as store:
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096):  # every page but the first two
        data[offset + 8 : offset + 200] = os.urandom(192)
    path.write_bytes(bytes(data))
    for argv in (["runs"], ["show", "x"], ["report", "x", "-o", "-"]):
        line = _one_error_line(argv, capsys)
        assert line.startswith(f"error: {path}: cannot read the run store"), line


def test_a_store_missing_its_logs_table_is_one_error_line(capsys):
    run = record(noisy_flow)
    recording.disable()
    with sqlite3.connect(home() / "runs.db") as conn:
        conn.execute("DROP TABLE logs")
    line = _one_error_line(["show", run.id], capsys)
    assert "no such table: logs" in line


def test_a_read_only_store_folder_still_shows_history(other_account, shared_dir, monkeypatch):
    h = shared_dir / "home"
    monkeypatch.setenv("NB2FLOW_HOME", str(h))
    recording.disable()
    record(noisy_flow)
    recording.disable()
    with Store() as store:
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for p in [h, *h.iterdir()]:
        os.chown(p, other_account.uid, other_account.gid)
    os.chmod(h, 0o500)  # read-only to its owner
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from nb2flow.cli import main;"
        "sys.exit(main(['runs', '--json']))"
    )
    site = subprocess.run(
        [sys.executable, "-c", "import rich, sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    done = other_account.run(
        [other_account.interpreter(), "-c", code, str(ROOT)],
        env={"NB2FLOW_HOME": str(h), "PYTHONPATH": f"{ROOT}:{site}"},
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert run["flow_name"] == "noisy" and run["state"] == "Completed"
