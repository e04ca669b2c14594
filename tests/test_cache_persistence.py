"""Result persistence, lookup, keys and policies (nb2flow.runtime.cache: entries, keys, storage),
driven directly, without a flow."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nb2flow.runtime.cache import entries, keys, storage
from nb2flow.runtime.cache.keys import CacheWarning
from tests.conftest import require_modules


def double(x):
    return x * 2


def make_task(fn=double, **options):
    opts = {"name": fn.__name__, "cache": True, "cache_key_fn": None}
    opts.update(options)
    return SimpleNamespace(fn=fn, **opts)


def roundtrip(tmp_path: Path, value):
    d = tmp_path / "entry"
    d.mkdir()
    info = storage.write_value(value, d)
    return info, storage.read_value(d)


def test_frame_goes_to_parquet_and_comes_back_equal(tmp_path):
    df = pd.DataFrame(
        {
            "x": np.arange(5.0),
            "s": list("abcde"),
            "t": pd.date_range("2021", periods=5, tz="UTC"),
            "c": pd.Categorical(list("ababa")),
            "n": pd.array([1, None, 3, 4, 5], dtype="Int64"),
        },
        index=pd.Index([10, 11, 12, 13, 14], name="id"),
    )
    info, back = roundtrip(tmp_path, df)
    assert info["parts"] == ["0.parquet"]
    pd.testing.assert_frame_equal(back, df)


def test_frames_parquet_cannot_hold_are_pickled_equal(tmp_path):
    odd = [
        pd.DataFrame({"o": [1, "a", None]}),  # mixed objects
        pd.DataFrame({0: [1.0], 1: [2.0]}),  # non-string column names
        pd.DataFrame([[1, 2]], columns=["a", "a"]),  # duplicate names
    ]
    for i, df in enumerate(odd):
        d = tmp_path / str(i)
        d.mkdir()
        info = storage.write_value(df, d)
        assert not any(p.endswith(".parquet") for p in info["parts"])
        pd.testing.assert_frame_equal(storage.read_value(d), df)


def test_nested_values_arrays_and_cloudpickle(tmp_path):
    big = np.arange(100_000, dtype=np.int32)
    value = (pd.DataFrame({"a": [1, 2]}), {"arr": big, "small": np.arange(3)}, lambda v: v + 1)
    info, back = roundtrip(tmp_path, value)
    assert info["serializer"] == "cloudpickle"
    assert sorted(info["parts"]) == ["0.parquet", "1.npy"]
    pd.testing.assert_frame_equal(back[0], value[0])
    np.testing.assert_array_equal(back[1]["arr"], big)
    assert back[1]["arr"].flags.writeable
    assert back[2](1) == 2


def test_save_lookup_hit_with_source_run_and_private_files():
    task = make_task()
    key = keys.key_for(task, {"x": 3})
    assert key and entries.lookup(key, task) is None
    path = entries.save(key, {"v": 6}, task=task, flow_run_id="run-1", flow_name="f")
    hit = entries.lookup(key, task)
    assert hit is not None and hit.value == {"v": 6} and hit.flow_run_id == "run-1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(entries.results_dir().stat().st_mode) == 0o700
    for f in path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    (entry,) = entries.list_entries()
    assert (entry.flow, entry.task, entry.flow_run_id) == ("f", "double", "run-1")
    assert entry.size == sum(f.stat().st_size for f in path.iterdir() if f.name != "meta.json")


def test_keys_depend_on_inputs_code_and_name():
    task = make_task()
    k = keys.key_for(task, {"x": 3})
    assert k == keys.key_for(make_task(), {"x": 3})
    assert k != keys.key_for(task, {"x": 4})
    assert k != keys.key_for(task, {"y": 3})
    assert k != keys.key_for(make_task(name="other"), {"x": 3})
    assert k != keys.key_for(make_task(fn=lambda x: x * 2, name="double"), {"x": 3})
    assert keys.key_for(make_task(cache=False), {"x": 3}) is None


def test_stored_value_is_not_poisoned_by_later_in_place_changes():
    task = make_task()
    df = pd.DataFrame({"a": [1, 2, 3]})
    arr = np.zeros(100_000)
    key = keys.key_for(task, {"x": 1})
    entries.save(key, (df, arr, [1]), task=task)
    df["a"] *= 100  # a downstream task changing the result in place
    arr[:] = 5
    first = entries.lookup(key, task).value
    assert first[0]["a"].tolist() == [1, 2, 3] and first[1].max() == 0
    first[2].append(2)  # a hit is a fresh object each time, too
    assert entries.lookup(key, task).value[2] == [1]


def test_input_key_is_taken_before_the_task_mutates_its_input():
    task = make_task()
    df = pd.DataFrame({"a": [1, 2, 3]})
    key = keys.key_for(task, {"x": df})
    df["a"] += 1  # what the task does while running
    assert keys.key_for(task, {"x": df}) != key
    assert keys.key_for(task, {"x": pd.DataFrame({"a": [1, 2, 3]})}) == key


@pytest.mark.parametrize(
    "damage", ["value", "meta", "meta-fields", "truncate-parquet", "missing-part"]
)
def test_corrupt_entry_is_a_miss_with_a_warning_then_repaired(damage):
    """A damaged file of an entry nb2flow wrote (its manifest proves it) is removed; a
    damaged manifest proves nothing, so the folder is moved aside, never deleted."""
    task = make_task()
    key = keys.key_for(task, {"x": 1})
    path = entries.save(key, (pd.DataFrame({"a": range(10)}), 1), task=task)
    if damage == "value":
        (path / "value.pkl").write_bytes(b"\x80\x05garbage")
    elif damage == "meta":
        (path / "meta.json").write_text("{not json")
    elif damage == "meta-fields":
        (path / "meta.json").write_text('{"version": 1, "created": "yesterday", "expires": []}')
    elif damage == "truncate-parquet":
        data = (path / "0.parquet").read_bytes()
        (path / "0.parquet").write_bytes(data[: len(data) // 2])
    else:
        (path / "0.parquet").unlink()
    manifest = damage in ("meta", "meta-fields")
    expected = "nothing proves nb2flow wrote it" if manifest else "is damaged"
    with pytest.warns(CacheWarning, match=expected):
        assert entries.lookup(key, task) is None
    assert not path.exists()
    quarantined = list((entries.results_dir() / entries.QUARANTINE).glob(f"{key}.*"))
    assert len(quarantined) == (1 if manifest else 0)
    entries.save(key, "fresh", task=task)
    assert entries.lookup(key, task).value == "fresh"


def test_expiration_refresh_and_disable(monkeypatch):
    short = make_task(cache_expiration=timedelta(seconds=0))
    key = keys.key_for(short, {"x": 1})
    entries.save(key, 1, task=short)
    assert entries.lookup(key, short) is None  # expired at once
    entries.save(key, 2, task=short)  # an expired entry is replaced, not kept
    long = make_task(cache_expiration=3600)
    entries.save(key, 3, task=long)
    assert entries.lookup(key, long).value == 3
    (entry,) = entries.list_entries()
    assert entry.expires == pytest.approx(entry.created + 3600)
    assert entries.lookup(key, make_task(refresh_cache=True)) is None
    entries.save(key, 4, task=make_task(refresh_cache=True))  # a refreshed value replaces
    assert entries.lookup(key, long).value == 4
    entries.save(key, 5, task=long)  # without refresh, the first writer's value stays
    assert entries.lookup(key, long).value == 4
    monkeypatch.setenv("NB2FLOW_REFRESH_CACHE", "1")
    assert entries.lookup(key, long) is None
    monkeypatch.delenv("NB2FLOW_REFRESH_CACHE")
    monkeypatch.setenv("NB2FLOW_CACHE", "off")
    assert keys.key_for(long, {"x": 1}) is None


def test_custom_cache_key_fn():
    seen = []

    def by_day(context, arguments):
        seen.append((context.task_name, dict(arguments)))
        return arguments["day"]

    task = make_task(cache=False, cache_key_fn=by_day)
    k1 = keys.key_for(task, {"day": "mon", "noise": 1})
    assert k1 == keys.key_for(task, {"day": "mon", "noise": 2})
    assert k1 != keys.key_for(task, {"day": "tue", "noise": 1})
    assert seen[0] == ("double", {"day": "mon", "noise": 1})
    # namespaced per task: another task returning "mon" does not share the value
    assert k1 != keys.key_for(make_task(name="other", cache_key_fn=by_day), {"day": "mon"})
    # the default key is available to custom functions
    plus = make_task(cache_key_fn=lambda ctx, args: keys.task_input_hash(ctx, args) + "v2")
    assert keys.key_for(plus, {"x": 1}) != keys.key_for(make_task(), {"x": 1})
    assert keys.key_for(make_task(cache_key_fn=lambda c, a: None), {"x": 1}) is None


def test_errors_in_keys_and_values_never_crash():
    import threading

    def broken(context, arguments):
        raise RuntimeError("boom")

    with pytest.warns(CacheWarning, match="boom"):
        assert keys.key_for(make_task(cache_key_fn=broken), {"x": 1}) is None
    with pytest.warns(CacheWarning, match="uncached"):
        assert keys.key_for(make_task(name="locky"), {"x": threading.Lock()}) is None
    task = make_task(name="unpicklable")
    key = keys.key_for(task, {"x": 1})
    with pytest.warns(CacheWarning, match="not cached"):
        assert entries.save(key, threading.Lock(), task=task) is None
    with pytest.warns(CacheWarning, match=r"item 1 of a tuple \(a lock\)"):
        value = (lambda: 1, threading.Lock())  # the lambda is fine: cloudpickle takes it
        assert entries.save(key, value, task=make_task(name="tuple")) is None
    assert entries.list_entries() == [] and entries.lookup(key, task) is None


WRITER = """
import sys, time
import numpy as np
from types import SimpleNamespace
from nb2flow.runtime.cache import entries, keys

start = float(sys.argv[1])
value = {"arr": np.arange(2_000_000), "who": sys.argv[2]}
while time.time() < start:
    time.sleep(0.001)
path = entries.save("ab" * 16, value, task=SimpleNamespace(name="t", fn=None), flow_run_id=sys.argv[2])
print(path)
"""


def test_two_processes_filling_the_same_key_both_succeed_one_entry(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    start = time.time() + 1.5  # both interpreters are up by then: the writes overlap
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0].strip() == outs[1][0].strip() != "None"
    (entry,) = entries.list_entries()
    hit = entries.lookup(entry.key, None)
    assert hit.value["who"] == hit.flow_run_id in ("p0", "p1")
    assert hit.value["arr"].shape == (2_000_000,)
    leftovers = [p for p in (entries.results_dir() / ".tmp").iterdir()]
    assert leftovers == []


def test_entries_and_clear_filter_by_flow_task_and_age():
    made = {}
    for flow, task_name in [("f1", "a"), ("f1", "b"), ("f2", "a")]:
        task = make_task(name=task_name)
        made[flow, task_name] = key = keys.key_for(task, {"flow": flow})
        entries.save(key, list(range(1000)), task=task, flow_name=flow)
    assert {(e.flow, e.task) for e in entries.list_entries(flow="f1")} == {("f1", "a"), ("f1", "b")}
    assert {(e.flow, e.task) for e in entries.list_entries(task="a")} == {("f1", "a"), ("f2", "a")}
    assert entries.list_entries(older_than=3600) == []
    assert len(entries.list_entries(older_than=0)) == 3
    count, freed = entries.clear(flow="f1", task="b")
    assert count == 1 and freed > 0
    assert entries.lookup(made["f1", "b"], make_task(name="b")) is None
    assert entries.lookup(made["f1", "a"], make_task(name="a")).value[-1] == 999
    assert entries.clear() == (2, pytest.approx(freed * 2, rel=0.01))
    assert entries.list_entries() == []


def test_results_location_can_be_chosen(tmp_path, monkeypatch):
    default = entries.results_dir()
    assert default == Path(os.environ["NB2FLOW_HOME"]) / "results"
    monkeypatch.setenv("NB2FLOW_RESULTS", str(tmp_path / "project-results"))
    task = make_task()
    path = entries.save(keys.key_for(task, {"x": 1}), 2, task=task)
    assert path.is_relative_to(tmp_path / "project-results")
    assert not default.exists()
    assert [e.path for e in entries.list_entries()] == [path]


def test_model_objects_keep_their_large_arrays_out_of_the_pickle(tmp_path):
    require_modules("example", "scipy", "sklearn")  # the example's extra
    from scipy import sparse
    from sklearn.linear_model import LinearRegression

    X = sparse.random(5000, 300, density=0.05, format="csr", random_state=0)
    y = np.arange(5000.0)
    model = LinearRegression().fit(X, y)
    info, (X2, model2) = roundtrip(tmp_path, (X, model))
    assert any(p.endswith(".npy") for p in info["parts"])
    assert (X2 != X).nnz == 0
    np.testing.assert_allclose(model2.predict(X[:10]), model.predict(X[:10]))
