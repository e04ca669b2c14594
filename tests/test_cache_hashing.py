"""Input and code fingerprints used by cache keys (nb2flow.runtime.cache.hashing)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb2flow.runtime.cache import hashing
from nb2flow.runtime.cache.hashing import code_closure_digest, digest

ROOT = Path(__file__).resolve().parent.parent


def frame(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.random(n),
            "k": rng.integers(0, 10, n),
            "s": [f"s{i % 7}" for i in range(n)],
            "t": pd.date_range("2021-01-01", periods=n, freq="min"),
            "c": pd.Categorical([("a", "b")[i % 2] for i in range(n)]),
            "n": pd.array([None if i % 5 == 0 else i for i in range(n)], dtype="Int64"),
        }
    )


def test_equal_frames_equal_digests_any_change_differs():
    df = frame()
    base = digest(df)
    assert digest(df.copy()) == base
    variants = []
    v = df.copy()
    v.loc[500, "x"] += 1e-12
    variants.append(v)
    v = df.copy()
    v.loc[3, "s"] = "other"
    variants.append(v)
    variants.append(df.rename(columns={"x": "y"}))
    variants.append(df[["k", "x", "s", "t", "c", "n"]])  # column order
    variants.append(df.assign(k=df["k"].astype("float64")))  # same values, other dtype
    variants.append(df.set_axis(range(1, len(df) + 1)))  # index
    variants.append(df.iloc[:-1])
    v = df.copy()
    v.loc[0, "n"] = 7  # a missing value filled in
    variants.append(v)
    v = df.copy()
    v.loc[1, "c"] = "a"
    variants.append(v)
    digests = {digest(v) for v in variants}
    assert base not in digests
    assert len(digests) == len(variants)


def test_series_index_and_multiindex():
    s = pd.Series(np.arange(10.0), name="a")
    assert digest(s) == digest(s.copy())
    assert digest(s) != digest(s.rename("b"))
    assert digest(s) != digest(s.set_axis(list("abcdefghij")))
    mi = pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]])
    df = pd.DataFrame({"v": range(6)}, index=mi)
    assert digest(df) == digest(df.copy())
    assert digest(df) != digest(df.set_axis(mi.swaplevel(), axis=0))
    assert digest(pd.Index([1, 2])) != digest(pd.Index([1.0, 2.0]))


def test_object_column_with_unhashable_cells_is_pickled():
    df = pd.DataFrame({"lists": [[1, 2], [3]]})
    assert digest(df) == digest(df.copy())
    assert digest(df) != digest(pd.DataFrame({"lists": [[1, 2], [4]]}))


def test_numpy_arrays_by_dtype_shape_and_bytes():
    a = np.arange(12, dtype=np.int64)
    assert digest(a) == digest(a.copy())
    assert digest(a) != digest(a.reshape(3, 4))
    assert digest(a) != digest(a.view(np.float64))  # same bytes, other dtype
    m = np.arange(20.0).reshape(4, 5)
    assert digest(m[:, 1:3]) == digest(np.ascontiguousarray(m[:, 1:3]))  # strided view
    assert digest(np.float64(1.5)) != digest(1.5)
    assert digest(np.array(["a", None], dtype=object)) != digest(np.array(["a", "b"], dtype=object))


def test_containers_and_scalars():
    assert digest([1, 2]) != digest((1, 2))
    assert digest(("ab", "c")) != digest(("a", "bc"))
    assert digest(1) != digest(1.0) != digest(True)
    assert digest({"a": 1, "b": 2}) != digest({"a": 1, "b": 3})
    assert digest({"a": [np.arange(3)]}) == digest({"a": [np.arange(3)]})
    assert digest({"x", "y"}) == digest({"y", "x"})
    assert digest(float("nan")) == digest(float("nan"))
    big = list(range(50_000))  # beyond the walk limit: pickled in one go
    assert digest(big) == digest(list(big)) != digest(big[:-1])


def test_sets_of_strings_hash_the_same_in_every_process():
    code = "from nb2flow.runtime.cache.hashing import digest; print(digest({'alpha', 'beta', 'gamma', 'd'}))"
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(out.stdout.strip())
    assert len(outs) == 1


def test_plain_values_do_not_import_pandas_or_numpy():
    code = (
        "import sys, types; from nb2flow.runtime.cache.hashing import digest\n"
        "from nb2flow.runtime.cache import entries, keys\n"
        "digest({'a': [1, 2.5, 'x', None, (b'y',)], 'b': {1, 2}})\n"
        "def f(x):\n    return x\n"
        "task = types.SimpleNamespace(fn=f, name='f', cache=True)\n"
        "key = keys.key_for(task, {'x': [1, 'a']})\n"
        "entries.save(key, {'v': 1}, task=task)\n"
        "assert entries.lookup(key, task).value == {'v': 1}\n"
        "print('pandas' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_other_objects_by_pickle_then_cloudpickle_else_unhashable():
    assert digest(Point(1)) == digest(Point(1)) != digest(Point(2))
    assert digest(lambda x: x + 1) != digest(lambda x: x + 2)  # cloudpickle
    with pytest.raises(hashing.Unhashable):
        digest(threading.Lock())


# --------------------------------------------------------------------------- code


def load(tmp_path: Path, source: str, name: str = "flowmod") -> object:
    """Import `source` as a fresh module from its own file (as a converted script is)."""
    load.counter = getattr(load, "counter", 0) + 1
    path = tmp_path / f"{name}_{load.counter}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(f"{name}_{load.counter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = """
    import functools
    import math
    from pathlib import Path


    def task(**options):
        return lambda fn: fn

    SCALE = 3
    OUT = Path("models")
    UNUSED = 9


    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            return fn(*args)

        return wrapper


    @logged
    def deep(x):
        OUT.exists()
        return x * SCALE


    @functools.lru_cache
    def root(x):
        return math.sqrt(x)


    def helper(x):
        return deep(x) + root(4)


    class Model:
        bias = 1

        def predict(self, x):
            return helper(x) + self.bias


    def unrelated():
        return 0


    @task(
        retries=1,
    )
    def train(x):
        # the training cell
        return Model().predict(x)
"""


def test_code_digest_follows_helpers_transitively(tmp_path):
    base = code_closure_digest(load(tmp_path, BASE).train)
    assert code_closure_digest(load(tmp_path, BASE).train) == base  # other module, same code
    edits = {
        "task source": ("return Model().predict(x)", "return Model().predict(x) + 0"),
        "task comment": ("# the training cell", "# the training cell, edited"),
        "class method": ("return helper(x) + self.bias", "return helper(x) - self.bias"),
        "class attribute": ("bias = 1", "bias = 2"),
        "helper": ("return deep(x) + root(4)", "return deep(x) + root(9)"),
        "lru_cache'd helper": ("return math.sqrt(x)", "return math.sqrt(x + 1)"),
        "helper of helper": ("return x * SCALE", "return x * SCALE * 1"),
        "constant": ("SCALE = 3", "SCALE = 4"),
        "path constant": ('OUT = Path("models")', 'OUT = Path("models2")'),
    }
    seen = {base}
    for what, (old, new) in edits.items():
        assert old in BASE, what
        d = code_closure_digest(load(tmp_path, BASE.replace(old, new)).train)
        assert d not in seen, f"editing the {what} did not change the key"
        seen.add(d)
    for old, new in [
        ("return 0", "return 1"),
        ("UNUSED = 9", "UNUSED = 10"),
        ("retries=1", "retries=3"),  # task options are not the task's code
    ]:
        d = code_closure_digest(load(tmp_path, BASE.replace(old, new)).train)
        assert d == base, f"editing code train never reaches ({old}) changed the key"


def test_code_digest_ignores_position_and_survives_recursion(tmp_path):
    src = """
    def a(n):
        return b(n - 1) if n else 0


    def b(n):
        return a(n)
    """
    base = code_closure_digest(load(tmp_path, src).a)
    assert code_closure_digest(load(tmp_path, "\n\n\n" + src).a) == base
    assert code_closure_digest(load(tmp_path, src.replace("n - 1", "n - 2")).a) != base


def test_code_digest_of_functions_without_source():
    ns: dict = {}
    exec("def f(x):\n    return x + 1\n", ns)  # noqa: S102 - no file behind it
    ns2: dict = {}
    exec("def f(x):\n    return x + 2\n", ns2)  # noqa: S102
    assert code_closure_digest(ns["f"]) != code_closure_digest(ns2["f"])


def test_hash_of_large_frame_does_not_copy_the_data():
    # numeric columns are hashed straight from their buffers: no pickle, no copy
    df = pd.DataFrame({f"c{i}": np.arange(200_000, dtype=np.float64) for i in range(4)})
    import tracemalloc

    tracemalloc.start()
    digest(df)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < df.memory_usage(deep=True).sum() / 4


def random_frame(seed: int, rows: int, kinds: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    makers = {
        "f": lambda: rng.normal(size=rows),
        "i": lambda: rng.integers(-5, 5, rows),
        "b": lambda: rng.random(rows) > 0.5,
        "s": lambda: pd.array([f"v{v}" for v in rng.integers(0, 4, rows)], dtype="str"),
        "o": lambda: np.array([("a", 1, None)[v] for v in rng.integers(0, 3, rows)], dtype=object),
        "t": lambda: pd.to_datetime(rng.integers(0, 10**9, rows), unit="s"),
    }
    return pd.DataFrame({f"{k}{i}": makers[k]() for i, k in enumerate(kinds)})


@pytest.mark.parametrize("seed", range(12))
def test_any_single_cell_change_changes_the_digest(seed):
    rng = np.random.default_rng(seed)
    kinds = list(rng.choice(list("fibsot"), size=int(rng.integers(1, 6))))
    rows = int(rng.integers(1, 200))
    df = random_frame(seed, rows, kinds)
    base = digest(df)
    assert digest(random_frame(seed, rows, kinds)) == base
    changed = df.copy()
    row, col = int(rng.integers(0, rows)), int(rng.integers(0, len(kinds)))
    kind = kinds[col]
    name = changed.columns[col]
    new_value = {
        "f": lambda v: v + 1.0,
        "i": lambda v: v + 1,
        "b": lambda v: not v,
        "s": lambda v: v + "x",
        "o": lambda v: "changed",
        "t": lambda v: v + pd.Timedelta(seconds=1),
    }[kind](changed.iat[row, col])
    changed[name] = changed[name].copy()
    changed.iat[row, col] = new_value
    assert not changed.equals(df)
    assert digest(changed) != base


def test_callable_objects_by_class_code_and_state(tmp_path):
    src = """
    class Scaler:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x * self.k
    """
    base = code_closure_digest(load(tmp_path, src).Scaler(2))
    assert code_closure_digest(load(tmp_path, src).Scaler(2)) == base
    assert code_closure_digest(load(tmp_path, src).Scaler(3)) != base
    assert (
        code_closure_digest(load(tmp_path, src.replace("x * self.k", "x + self.k")).Scaler(2))
        != base
    )
