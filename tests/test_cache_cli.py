"""``nb2flow cache ls|clear``."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest

from nb2flow.cli import main
from nb2flow.commands.cache import parse_duration
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.cache import entries, keys


def store(flow: str, task: str, age_seconds: float = 0.0, size: int = 1000) -> str:
    t = SimpleNamespace(name=task, fn=None, cache=True)
    key = keys.key_for(SimpleNamespace(name=task, fn=store, cache=True), {"f": flow})
    path = entries.save(key, b"x" * size, task=t, flow_run_id=f"run-{flow}", flow_name=flow)
    if age_seconds:
        meta = json.loads((path / "meta.json").read_text())
        meta["created"] -= age_seconds
        meta["mac"] = entries._mac(entries.secret_key(), meta)  # re-signed: still nb2flow's
        (path / "meta.json").write_text(json.dumps(meta))
    return key


def test_parse_duration():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("1.5m") == 90
    assert parse_duration("2w") == 14 * 86400
    for bad in ("7", "d", "7y", "-1d", ""):
        with pytest.raises(Nb2flowError, match="older-than"):
            parse_duration(bad)


def test_ls_lists_flow_task_size_age_and_source_run(capsys):
    assert main(["cache", "ls"]) == 0
    assert "no cache entries" in capsys.readouterr().out
    k_old = store("taxi", "load_data", age_seconds=10 * 86400, size=3000)
    store("taxi", "train")
    store("other", "load_data")
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "FLOW", "TASK", "SIZE", "CREATED", "SOURCE", "RUN"]
    assert k_old[:12] in lines[1] and "10d ago" in lines[1] and "run-taxi" in lines[1]
    assert lines[-1].startswith("3 entries")
    assert main(["cache", "ls", "--flow", "taxi", "--older-than", "7d", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["key"], row["flow"], row["task"]) == (k_old, "taxi", "load_data")
    assert row["size"] >= 3000 and row["flow_run_id"] == "run-taxi"


def test_clear_by_flow_and_age(capsys):
    store("taxi", "load_data", age_seconds=2 * 3600)
    store("taxi", "train")
    keep = store("other", "load_data", age_seconds=2 * 3600)
    assert main(["cache", "clear", "--flow", "taxi", "--older-than", "1h"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 cache entry")
    assert sorted(e.task for e in entries.list_entries(flow="taxi")) == ["train"]
    assert main(["cache", "clear", "--flow", "taxi"]) == 0
    assert [e.key for e in entries.list_entries()] == [keep]
    assert main(["cache", "clear"]) == 0
    assert "removed 1 cache entry" in capsys.readouterr().out
    assert entries.list_entries() == []


def test_clear_reclaims_dead_writers_leftovers_and_leaves_unproven_folders_alone(capsys):
    key = store("taxi", "train")
    (entries.entry_dir(key) / "meta.json").unlink()  # nothing proves nb2flow wrote it now
    tmp = entries.results_dir() / ".tmp" / f"{key}.123.{'a' * 12}"
    tmp.mkdir(parents=True)
    stranger = entries.results_dir() / ".tmp" / "my-notes"  # not a name nb2flow gives
    stranger.mkdir()
    old = time.time() - 2 * 3600
    os.utime(tmp, (old, old))
    os.utime(stranger, (old, old))
    assert main(["cache", "ls"]) == 0
    assert "(not proven)" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 0 cache entries" in out
    assert "left alone 1 folder nb2flow cannot prove it wrote" in out and key in out
    assert entries.entry_dir(key).exists() and stranger.exists() and not tmp.exists()


def test_bad_duration_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cache", "ls", "--older-than", "soon"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--older-than 'soon'" in err and "Traceback" not in err
