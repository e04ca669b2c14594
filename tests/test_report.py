"""``nb2flow report``: a stored run as one self-contained HTML file."""

from __future__ import annotations

import re
import subprocess
import sys

from sample_run import record, sample_events

from nb2flow import cli
from nb2flow.commands.report import default_name


def test_report_writes_one_self_contained_page(tmp_path, capsys):
    record(sample_events("run-aaa"), sample_events("run-bbb", fail=False))
    out = tmp_path / "sub" / "run.html"
    assert cli.main(["report", "run-aaa", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.count('class="nb2f-node"') == 8
    assert 'data-task="evaluate" data-state="Failed"' in page
    assert "inconsistent numbers of samples" in page and "Traceback" in page
    assert 'class="nb2f-timeline"' in page and 'class="nb2f-table"' in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_report_default_name_and_stdout(tmp_path, monkeypatch, capsys):
    record(sample_events("run-ccc", fail=False))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "run-c"]) == 0  # a unique id prefix
    written = tmp_path / "duration-prediction-brave-otter.html"
    assert written.exists() and 'data-state="Completed"' in written.read_text()
    capsys.readouterr()
    assert cli.main(["report", "run-ccc", "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")
    assert default_name("my flow/x", "", "0123456789") == "my_flow_x-01234567.html"


def test_report_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["report", "nope"]) == 2  # no store yet
    assert capsys.readouterr().err.startswith("error: no runs recorded yet")
    record(sample_events("run-ddd"))
    assert cli.main(["report", "zzz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run named 'zzz'") and "Traceback" not in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["report", "run-ddd", "-o", str(blocker / "x.html")]) == 2
    assert "cannot write the report" in capsys.readouterr().err


def test_report_command_imports_only_the_standard_library():
    code = (
        "import sys, nb2flow.commands.report as r; "
        "bad = [m for m in sys.modules if m.startswith(('nb2flow.jupyter', 'nb2flow.store', "
        "'networkx', 'ipywidgets'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
