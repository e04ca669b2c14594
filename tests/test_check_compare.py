"""Value comparison used by `nb2flow check`: tolerances, containers, frames, models."""

from __future__ import annotations

import io

import pytest

from nb2flow.check.compare import DIFFERENT, EQUAL, NOT_COMPARED, Tolerance, compare, is_sample

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


def status(a, b, **kw):
    return compare(a, b, **kw).status


def test_numbers_within_tolerance():
    assert status(1.0, 1.0 + 1e-9) == EQUAL
    assert status(1.0, 1.001) == DIFFERENT
    assert status(1.0, 1.001, tol=Tolerance(rtol=1e-2)) == EQUAL
    assert status(float("nan"), float("nan")) == EQUAL
    assert status(np.float64(3.5), 3.5) == EQUAL
    assert status(np.int64(3), 3) == EQUAL
    assert "1.0 != 2.0" in compare(1.0, 2.0).detail


def test_strings_none_and_types():
    assert status("a", "a") == EQUAL
    assert status("a", "b") == DIFFERENT
    assert status(None, None) == EQUAL
    assert status(None, 0) == DIFFERENT
    v = compare([1, 2], (1, 2))
    assert v.status == DIFFERENT and "type list != tuple" in v.detail


def test_containers_recurse_with_paths():
    a = {"x": [1.0, {"y": np.arange(3.0)}]}
    b = {"x": [1.0, {"y": np.arange(3.0) + 1e-12}]}
    assert status(a, b) == EQUAL
    c = {"x": [1.0, {"y": np.array([0.0, 1.0, 2.5])}]}
    v = compare(a, c)
    assert v.status == DIFFERENT
    assert "['x'][1]['y']" in v.detail and "1 of 3 elements differ" in v.detail
    v = compare({"a": 1}, {"b": 1})
    assert v.status == DIFFERENT and "keys differ" in v.detail


def test_arrays_shapes_and_values():
    assert status(np.ones((2, 3)), np.ones((2, 3))) == EQUAL
    v = compare(np.ones((2, 3)), np.ones((3, 2)))
    assert v.status == DIFFERENT and "shape" in v.detail
    a = np.array([1.0, np.nan, 3.0])
    assert status(a, a.copy()) == EQUAL
    assert status(np.array(["a", "b"]), np.array(["a", "c"])) == DIFFERENT
    assert status(np.array(["a", "b"]), np.array(["a", "b"])) == EQUAL


def test_frames_and_series_with_tolerance():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    assert status(df, df.copy()) == EQUAL
    near = df.assign(a=df.a + 1e-10)
    assert status(df, near) == EQUAL
    far = df.assign(a=[1.0, 2.5])
    v = compare(df, far)
    assert v.status == DIFFERENT and "a" in v.detail
    assert status(df.a, df.a.copy()) == EQUAL
    assert status(df.a, df.a.rename("z")) == DIFFERENT
    assert status(df.index, df.index.copy()) == EQUAL


def test_sparse_matrices():
    sparse = pytest.importorskip("scipy.sparse")
    m = sparse.csr_matrix(np.eye(4))
    assert status(m, m.copy()) == EQUAL
    m2 = m.copy()
    m2[0, 0] = 2.0
    assert status(m, m2) == DIFFERENT


def test_models_compared_by_prediction():
    linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ [1.0, 2.0, 3.0]
    a = linear.LinearRegression().fit(X, y)
    b = linear.LinearRegression().fit(X, y)
    v = compare(a, b, samples=[y, X])  # y does not fit predict(); X does
    assert v.status == EQUAL and "same predictions" in v.detail
    c = linear.LinearRegression().fit(X, y + 1.0)
    v = compare(a, c, samples=[X])
    assert v.status == DIFFERENT and "predictions differ" in v.detail
    v = compare(a, b)  # no sample input
    assert v.status == NOT_COMPARED


def test_xgboost_boosters_by_prediction():
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] * 2
    params = {"max_depth": 2, "seed": 1}
    a = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=3)
    b = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=3)
    assert status(a, b, samples=[X]) == EQUAL
    c = xgb.train(params, xgb.DMatrix(X, label=-y), num_boost_round=3)
    assert status(a, c, samples=[X]) == DIFFERENT


def test_fitted_transformers_by_attributes():
    fe = pytest.importorskip("sklearn.feature_extraction")
    a = fe.DictVectorizer().fit([{"a": 1, "b": "x"}])
    b = fe.DictVectorizer().fit([{"a": 1, "b": "x"}])
    assert status(a, b) == EQUAL
    c = fe.DictVectorizer().fit([{"a": 1, "b": "y"}])
    v = compare(a, c)
    assert v.status == DIFFERENT
    assert v.detail.startswith("sklearn.DictVectorizer attributes differ: ")
    assert "['feature_names_'][1]" in v.detail


def test_random_generators_by_state():
    assert status(np.random.RandomState(1), np.random.RandomState(1)) == EQUAL
    assert status(np.random.RandomState(1), np.random.RandomState(2)) == DIFFERENT
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert status(a, b) == EQUAL
    b.random()
    assert compare(a, b).detail == "random generator states differ"


def test_uncomparable_objects_are_reported_not_failed():
    assert status(io.BytesIO(b"x"), io.BytesIO(b"x")) == NOT_COMPARED
    assert status(object(), object()) == NOT_COMPARED


def test_functions_by_name_code_and_defaults():
    def outer():
        return [lambda i=i: i * 2 for i in range(2)]

    inner = [lambda i=i: i * 2 for i in range(2)]  # another qualname, the same code
    assert status(outer()[0], inner[0]) == EQUAL
    assert status(outer()[0], inner[1]) == DIFFERENT  # other default
    assert status(len, len) == EQUAL and status(len, abs) == DIFFERENT


def test_is_sample():
    assert is_sample(np.zeros((3, 2)))
    assert is_sample(pd.DataFrame({"a": [1]}))
    assert not is_sample(np.zeros((0, 2)))
    assert not is_sample(3.0)
    assert not is_sample([1, 2])
