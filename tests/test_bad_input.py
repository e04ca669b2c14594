"""Bad input on the command line and on disk: one clear `error:` line, exit 2, nothing changed.

Issue 13, items 14 (notebook and CLI input) and 15 (`nb2flow tag` respects the notebook's
permissions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nb2flow.cli import main
from nb2flow.notebook.reader import MAX_NESTING


def _cell(source="x = 1", metadata=None):
    return {
        "cell_type": "code",
        "source": source,
        "metadata": {} if metadata is None else metadata,
        "outputs": [],
        "execution_count": None,
    }


def _notebook(cells=None, metadata=None) -> dict:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {} if metadata is None else metadata,
        "cells": [_cell()] if cells is None else cells,
    }


def _commands(path, tmp_path) -> dict[str, list[str]]:
    return {
        "convert": ["convert", str(path), "-o", str(tmp_path / "out")],
        "inspect": ["inspect", str(path)],
        "tag": ["tag", str(path), "--cell", "1", "--add", "skip"],
        "check": ["check", str(path)],
    }


def _assert_one_error_line(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err
    return err


WRONG_TYPES = {
    "notebook metadata an array": (
        _notebook(metadata=[]),
        "the notebook's metadata must be a JSON object, not an array",
    ),
    "notebook metadata a string": (
        _notebook(metadata="x"),
        "the notebook's metadata must be a JSON object, not a string",
    ),
    "kernelspec an array": (
        _notebook(metadata={"kernelspec": [1]}),
        "notebook metadata 'kernelspec' must be a JSON object, not an array",
    ),
    "language_info a string": (
        _notebook(metadata={"language_info": "python"}),
        "notebook metadata 'language_info' must be a JSON object, not a string",
    ),
    "nb2flow metadata a number": (
        _notebook(metadata={"nb2flow": 3}),
        "notebook metadata 'nb2flow' must be a JSON object, not a number",
    ),
    "cell metadata an array": (
        _notebook([_cell(metadata=["task"])]),
        "cell 1: cell metadata must be a JSON object, not an array",
    ),
    "cell metadata a number": (
        _notebook([_cell(metadata=5)]),
        "cell 1: cell metadata must be a JSON object, not a number",
    ),
    "cell metadata null": (
        _notebook([_cell("y = 2"), _cell(metadata=None) | {"metadata": None}]),
        "cell 2: cell metadata must be a JSON object, not null",
    ),
    "cell source an object": (
        _notebook([_cell({"a": 1})]),
        "cell 1: cell source must be text (a string or an array of strings), not an object",
    ),
    "cell source a number": (
        _notebook([_cell(5)]),
        "cell 1: cell source must be text (a string or an array of strings), not a number",
    ),
    "cell source lines holding a number": (
        _notebook([_cell(["x = ", 1])]),
        "cell 1: cell source must be text (a string or an array of strings), not an array "
        "holding a number",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_notebook_json_of_the_wrong_type_is_one_error_line_in_every_command(case, tmp_path, capsys):
    """Was an AttributeError traceback (metadata) or silently code (`str(5)`) before."""
    data, message = WRONG_TYPES[case]
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    for command, argv in _commands(path, tmp_path).items():
        assert main(argv) == 2, command
        _assert_one_error_line(capsys, str(path), message)
    assert path.read_bytes() == before  # tag wrote nothing
    assert not (tmp_path / "out").exists()  # convert wrote nothing


def test_check_metadata_of_the_wrong_type_is_one_error_line(tmp_path, capsys):
    for check, message in (
        ([1], "'nb2flow.check' must be a JSON object"),
        ({"ignore": "run_id"}, "'nb2flow.check.ignore' must be an array of names"),
        ({"ignore": [1]}, "'nb2flow.check.ignore' must be an array of names"),
    ):
        path = tmp_path / "bad.ipynb"
        path.write_text(json.dumps(_notebook(metadata={"nb2flow": {"check": check}})))
        assert main(["check", str(path)]) == 2
        _assert_one_error_line(capsys, message)


def _nested(depth: int):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_deeply_nested_json_is_refused_with_one_error_line(tmp_path, capsys):
    """Deeper than the JSON decoder's own limit (was RecursionError), and deep enough to
    pass the decoder but overflow nbformat or a copy later (cell metadata)."""
    too_deep = tmp_path / "deep.ipynb"
    too_deep.write_text('{"nbformat": 4, "cells": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    in_metadata = tmp_path / "deep-meta.ipynb"
    in_metadata.write_text(json.dumps(_notebook([_cell(metadata={"x": _nested(900)})])))
    for path in (too_deep, in_metadata):
        for command, argv in _commands(path, tmp_path).items():
            assert main(argv) == 2, command
            _assert_one_error_line(capsys, f"nests deeper than {MAX_NESTING} levels")


def test_json_nested_up_to_the_limit_is_read_tagged_and_converted(tmp_path, capsys):
    # root object, cells array, cell, metadata: 4 levels before the nested value
    path = tmp_path / "ok.ipynb"
    path.write_text(json.dumps(_notebook([_cell(metadata={"x": _nested(MAX_NESTING - 4)})])))
    assert main(["tag", str(path), "--cell", "1", "--add", "task:a"]) == 0
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 0
    saved = json.loads(path.read_text())["cells"][0]["metadata"]
    assert saved["tags"] == ["task:a"] and saved["x"] == _nested(MAX_NESTING - 4)
    path.write_text(json.dumps(_notebook([_cell(metadata={"x": _nested(MAX_NESTING - 3)})])))
    assert main(["inspect", str(path)]) == 2
    _assert_one_error_line(capsys, "nests deeper than")


def test_runs_limit_beyond_sqlite_integers_is_one_error_line(capsys):
    from test_store import emit_run

    from nb2flow.store import recording

    rec = recording.enable()
    run_id = emit_run("alpha", "quick-fox", fail=False)
    assert rec.flush(10)
    recording.disable()
    assert main(["runs", "--limit", "99999999999999999999"]) == 2  # was sqlite3 IntegrityError
    _assert_one_error_line(capsys, "--limit must be from 1 to 9223372036854775807")
    assert main(["runs", "--limit", str(2**63 - 1), "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [run_id]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--timeout", "nan"], "--timeout must be more than 0 seconds, not nan"),
        (["--timeout", "inf"], "--timeout must be more than 0 seconds, not inf"),
        (["--rtol", "-1"], "--rtol must be a finite number, 0 or more"),
        (["--atol", "nan"], "--atol must be a finite number, 0 or more"),
    ],
)
def test_check_numbers_that_are_not_finite_are_one_error_line(tmp_path, capsys, argv, message):
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(_notebook()))
    assert main(["check", str(path), *argv]) == 2
    _assert_one_error_line(capsys, message)


# -- issue 13 item 15: `tag` respects the notebook's permissions -------------------------------


def test_tag_refuses_to_rewrite_a_read_only_notebook(tmp_path, capsys):
    path = tmp_path / "ro.ipynb"
    path.write_text(json.dumps(_notebook()))
    path.chmod(0o444)
    before = path.read_bytes()
    assert main(["tag", str(path), "--cell", "1", "--add", "skip"]) == 2
    _assert_one_error_line(capsys, "is read-only (mode 0444): not changed")
    assert path.read_bytes() == before
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro.ipynb"]  # no temporary file left


def _as_member_of(groups: list[int]) -> list[str]:
    """A command prefix running as an unprivileged account that belongs to `groups` only:
    root without any capability (so no chown, no permission override), via util-linux
    setpriv. A second real account cannot run the interpreter here (/root is 0700)."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as a second, unprivileged account")
    return [
        "setpriv",
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
        "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def _tag(prefix: list[str], argv: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "nb2flow", "tag", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def outside_tmp():
    """A folder another account can reach (pytest's own temporary folders are 0700)."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="nb2flow-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_tag_keeps_a_group_owned_notebooks_group_and_mode(outside_tmp):
    """A team notebook (alice's, group `team`, 0664, in a setgid 2775 folder) tagged by
    another member of the team keeps its group and mode; tagged by root, also its owner."""
    team, alice = 4242, 4243  # ids no account uses: nameless, but real, owners
    member = _as_member_of([team])
    folder = outside_tmp / "shared"
    folder.mkdir()
    os.chown(folder, alice, team)
    folder.chmod(0o2775)
    path = folder / "team.ipynb"
    path.write_text(json.dumps(_notebook([_cell(), _cell("y = x")])))
    os.chown(path, alice, team)
    path.chmod(0o664)

    proc = _tag(member, [str(path), "--cell", "1", "--add", "task:first"], folder)
    assert proc.returncode == 0, proc.stderr
    st = path.stat()
    assert (st.st_gid, st.st_mode & 0o777) == (team, 0o664)  # the owner is now the member
    assert json.loads(path.read_text())["cells"][0]["metadata"]["tags"] == ["task:first"]

    os.chown(path, alice, team)
    assert main(["tag", str(path), "--cell", "2", "--add", "task:second"]) == 0  # as root
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (alice, team, 0o664)
    assert sorted(p.name for p in folder.iterdir()) == ["team.ipynb"]


def test_tag_that_cannot_keep_the_group_changes_nothing(outside_tmp):
    """The account may write the file (world-writable) but is not in its group: refused,
    the notebook unchanged, no temporary file left."""
    team = 4242
    outsider = _as_member_of([])
    outside_tmp.chmod(0o777)
    path = outside_tmp / "team.ipynb"
    path.write_text(json.dumps(_notebook()))
    os.chown(path, 4243, team)
    path.chmod(0o666)
    before = path.read_bytes()

    proc = _tag(outsider, [str(path), "--cell", "1", "--add", "skip"], outside_tmp)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot keep its group 4242" in proc.stderr and "not changed" in proc.stderr
    assert path.read_bytes() == before and path.stat().st_gid == team
    assert sorted(p.name for p in outside_tmp.iterdir()) == ["team.ipynb"]


def test_tag_as_an_account_that_may_not_write_the_notebook_changes_nothing(outside_tmp):
    path = outside_tmp / "theirs.ipynb"
    path.write_text(json.dumps(_notebook()))
    os.chown(path, 4243, 4243)
    path.chmod(0o644)
    outside_tmp.chmod(0o777)
    proc = _tag(_as_member_of([]), [str(path), "--cell", "1", "--add", "skip"], outside_tmp)
    assert proc.returncode == 2 and "you may not write it (mode 0644): not changed" in proc.stderr
    assert "Traceback" not in proc.stderr
