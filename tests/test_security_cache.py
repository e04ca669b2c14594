"""The task result cache trusts nothing on disk (issue 13, items 1, 5, 6, 8).

The attacker steps run as a second real account (``other_account``); the victim is this
process. A planted pickle here, when loaded, creates a marker file: it must never exist.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nb2flow import flow, task
from nb2flow.runtime.cache import entries, keys, storage
from nb2flow.runtime.cache.keys import CacheWarning
from nb2flow.runtime.core.states import CACHED, COMPLETED

ROOT = Path(__file__).resolve().parent.parent


@task(cache=True)
def cached_double(x: int) -> int:
    return x * 2


@flow(name="security-cache")
def double_flow(x: int = 21):
    return cached_double.submit(x)


def run_once(x: int = 21):
    run = double_flow(x, return_state=True)
    (state,) = [t.state for t in run.view.tasks.values()]
    warned = [log.message for log in run.view.logs if log.logger == keys.LOGGER]
    return run.value, state, warned


def key_of(x: int = 21) -> str:
    return keys.key_for(cached_double, cached_double.bind((x,), {}))


class Planted:
    """Unpickling this creates ``path``: proof that a planted pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


PLANT = """
import json, os, sys
root, key, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
entry = os.path.join(root, key[:2], key)
os.makedirs(entry, exist_ok=True)
for d in (root, os.path.join(root, key[:2]), entry):
    os.chmod(d, 0o777)
with open(os.path.join(entry, "value.pkl"), "wb") as f:
    f.write(payload)
meta = {"version": 2, "key": key, "flow": "x", "task": "cached_double", "created": 1.0,
        "expires": None, "digests": {"value.pkl": "0" * 64}, "mac": "0" * 64,
        "flow_run_id": None, "parts": [], "size": len(payload), "serializer": "pickle"}
with open(os.path.join(entry, "meta.json"), "w") as f:
    json.dump(meta, f)
print(entry)
"""


def test_another_accounts_planted_pickle_is_never_loaded(
    other_account, shared_dir, tmp_path, monkeypatch
):
    results = shared_dir / "results"  # a shared place the attacker reached first
    monkeypatch.setenv("NB2FLOW_RESULTS", str(results))
    marker = shared_dir / "pwned"
    payload = pickle.dumps(Planted(str(marker)))
    done = other_account.python(PLANT, str(results), key_of(), payload.hex())
    assert done.returncode == 0, done.stderr
    value, state, warned = run_once()
    value2, state2, warned2 = run_once()
    assert not marker.exists()
    # Completed, not Cached, both times: the task ran, the planted entry was no hit
    assert (value, state, value2, state2) == (42, COMPLETED, 42, COMPLETED)
    assert len(warned + warned2) == 1  # one clear warning, not one per task run
    assert "not used" in warned[0] and f"belongs to user {other_account.name}" in warned[0]


def test_a_replaced_value_file_is_a_miss_and_never_unpickled(tmp_path):
    """Same owner, same modes: only the manifest's HMAC tells the file is not nb2flow's."""
    value, state, _ = run_once()
    assert state == COMPLETED
    path = entries.entry_dir(key_of())
    marker = tmp_path / "pwned"
    forged = pickle.dumps(Planted(str(marker)))
    (path / "value.pkl").write_bytes(forged)
    meta = json.loads((path / "meta.json").read_text())
    meta["digests"]["value.pkl"] = __import__("hashlib").sha256(forged).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))  # digest right, HMAC now wrong
    value, state, warned = run_once()
    assert not marker.exists()
    assert (value, state) == (42, COMPLETED)
    assert "nothing proves nb2flow wrote it" in warned[0]
    assert run_once()[1] == CACHED  # rewritten: the next run is a hit again


def test_group_writable_results_folder_is_refused_with_one_warning():
    run_once()
    root = entries.results_dir()
    os.chmod(root, 0o775)
    first, second = run_once(), run_once()
    assert [first[1], second[1]] == [COMPLETED, COMPLETED]
    (warning,) = first[2] + second[2]
    assert f"{root} is writable by its group (mode 0775)" in warning


def test_cache_key_planted_by_another_account_is_refused(other_account, shared_dir, monkeypatch):
    home = shared_dir / "team"  # a team folder the user shared on purpose (2775)
    home.mkdir()
    os.chmod(home, 0o2777)
    monkeypatch.setenv("NB2FLOW_HOME", str(home))
    code = "import sys; open(sys.argv[1], 'wb').write(b'k' * 32)"
    assert other_account.python(code, str(home / entries.KEY_FILE)).returncode == 0
    with warnings.catch_warnings(record=True):
        first, second = run_once(), run_once()
    assert [first[1], second[1]] == [COMPLETED, COMPLETED]
    (warning,) = first[2] + second[2]
    assert "cache.key" in warning and f"belongs to user {other_account.name}" in warning
    assert oct(os.stat(home).st_mode & 0o7777) == "0o2777"  # the team folder is left as it is


def test_cache_key_and_entries_are_owner_only():
    run_once()
    home = Path(os.environ["NB2FLOW_HOME"])
    key = home / entries.KEY_FILE
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    for path in [entries.results_dir(), *entries.results_dir().rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == want, path


@pytest.mark.parametrize("damage", ["flipped-bit", "valid-but-wrong"])
def test_a_damaged_array_file_is_a_miss_with_a_warning_and_is_rewritten(damage):
    t = SimpleNamespace(name="arrays", fn=None, cache=True)
    key = keys.key_for(SimpleNamespace(name="arrays", fn=run_once, cache=True), {"x": 1})
    value = {"a": np.arange(100_000, dtype=np.float64)}
    path = entries.save(key, value, task=t)
    (npy,) = path.glob("*.npy")
    if damage == "flipped-bit":
        data = bytearray(npy.read_bytes())
        data[-1000] ^= 0x01
        npy.write_bytes(bytes(data))
    else:  # a perfectly valid .npy, but not the one that was written
        npy.unlink()
        np.save(npy, np.zeros(100_000))
    with pytest.warns(CacheWarning, match="is damaged .*digest differs.*writing the entry again"):
        assert entries.lookup(key, t) is None
    entries.save(key, value, task=t)
    hit = entries.lookup(key, t)
    np.testing.assert_array_equal(hit.value["a"], value["a"])
    assert hit.value["a"].flags.writeable  # read without a second copy, still writable


def test_an_entry_folder_replaced_by_a_file_is_moved_aside_and_rewritten():
    run_once()
    path = entries.entry_dir(key_of())
    import shutil

    shutil.rmtree(path)
    path.write_text("not a folder")
    value, state, warned = run_once()
    assert (value, state) == (42, COMPLETED)
    (warning,) = warned
    assert "is a file, not an entry folder" in warning and ".quarantine" in warning
    assert path.is_dir()
    assert run_once()[1] == CACHED  # never silently uncached from then on


def test_clear_deletes_only_what_nb2flow_proves_it_wrote(capsys):
    from nb2flow.cli import main

    run_once()
    root = entries.results_dir()
    mine = [root / "20" / "2023", root / "ca" / "cafe", root / "1" / "abc"]
    for folder in mine:
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("keep me")
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 cache entry" in out and "left alone 2 folders" in out
    assert all((folder / "notes.txt").read_text() == "keep me" for folder in mine)


def test_clear_older_than_goes_by_the_recorded_time_not_the_folder_time(capsys):
    from nb2flow.cli import main

    run_once()
    path = entries.entry_dir(key_of())
    os.utime(path, (1.0, 1.0))  # an old folder time: the entry itself was created now
    assert main(["cache", "clear", "--older-than", "1d"]) == 0
    assert "removed 0 cache entries" in capsys.readouterr().out and path.exists()


RACE = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, sys, threading, time
    from types import SimpleNamespace

    started, release = threading.Event(), threading.Event()

    class Slow(importlib.abc.MetaPathFinder):
        # pandas' import stays half done until released: the window of the race
        def find_spec(self, name, path, target=None):
            if name != "pandas":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            real = spec.loader.exec_module

            def exec_module(module):
                started.set()
                release.wait()
                real(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Slow())
    importer = threading.Thread(target=lambda: __import__("pandas"))
    importer.start()
    started.wait()

    from nb2flow.runtime.cache import entries
    result = {}
    t = SimpleNamespace(name="t", fn=None, cache=True)
    saver = threading.Thread(
        target=lambda: result.setdefault("path", entries.save("ab" * 16, [1, 2, 3], task=t))
    )
    saver.start()
    # let the save reach pandas (it waits for the import there) or finish without it
    while saver.is_alive():
        frame = sys._current_frames().get(saver.ident)
        stack = []
        while frame is not None:
            stack.append(frame.f_code.co_filename)
            frame = frame.f_back
        if any("importlib._bootstrap" in f for f in stack):
            break
        time.sleep(0.001)
    release.set()
    saver.join()
    importer.join()
    print(result["path"])
    print(entries.lookup("ab" * 16, t).value)
    """
)


def test_a_cached_result_saved_while_another_thread_imports_pandas_is_cached(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", RACE], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    path, value = done.stdout.strip().splitlines()
    assert path != "None" and value == "[1, 2, 3]", done.stderr
    assert "partially initialized" not in done.stderr and "not cached" not in done.stderr


def test_read_value_checks_every_file_before_unpickling(tmp_path):
    d = tmp_path / "entry"
    d.mkdir()
    info = storage.write_value({"a": np.arange(50_000)}, d)
    marker = tmp_path / "pwned"
    (d / storage.VALUE_FILE).write_bytes(pickle.dumps(Planted(str(marker))))
    with pytest.raises(storage.DamagedEntry, match="value.pkl"):
        storage.read_value(d, info["digests"])
    assert not marker.exists()


def test_concurrent_first_use_agrees_on_one_cache_key(tmp_path):
    code = "from nb2flow.runtime.cache import entries; print(entries.secret_key().hex())"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outs) == 1 and len(outs.pop()) == 64


def test_nothing_is_loaded_through_a_symbolic_link(tmp_path):
    run_once()
    path = entries.entry_dir(key_of())
    elsewhere = tmp_path / "elsewhere"
    os.rename(path, elsewhere)
    os.symlink(elsewhere, path)
    value, state, warned = run_once()
    assert (value, state) == (42, COMPLETED)
    assert "is a symbolic link" in warned[0]


def test_threads_saving_at_once_never_break_an_entry():
    t = SimpleNamespace(name="t", fn=None, cache=True)
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            entries.save(f"{i % 3:02x}" * 16, list(range(i)), task=t)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert {len(entries.lookup(f"{i:02x}" * 16, t).value) % 3 for i in range(3)} == {0, 1, 2}
