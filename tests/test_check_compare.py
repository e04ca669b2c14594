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


def test_is_sample():
    assert is_sample(np.zeros((3, 2)))
    assert is_sample(pd.DataFrame({"a": [1]}))
    assert not is_sample(np.zeros((0, 2)))
    assert not is_sample(3.0)
    assert not is_sample([1, 2])


def test_functions_by_source_defaults_and_closures():
    def outer():
        return [lambda i=i: i * 2 for i in range(2)]

    inner = [lambda i=i: i * 2 for i in range(2)]  # another qualname, the same source
    assert status(outer()[0], inner[0]) == EQUAL
    assert status(outer()[0], inner[1]) == DIFFERENT  # other default
    assert status(len, len) == EQUAL and status(len, abs) == DIFFERENT

    def make(k):
        def scaled(x):
            return x * k

        return scaled

    assert status(make(2), make(2)) == EQUAL
    v = compare(make(2), make(3))
    assert v.status == DIFFERENT and "<k>" in v.detail  # the value it closes over


def _cell(source: str, filename: str, module: str = "__main__") -> dict:
    """Run `source` as a kernel runs a cell: module __main__, the text in linecache."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": module}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def test_notebook_functions_are_compared_by_source_after_pickling(tmp_path):
    """A `def` the converter moved into a task compiles to other bytecode (a closure
    instead of a global); the check compares what it says. Its source travels with it:
    the checker has neither the kernel's cells nor the script."""
    import linecache

    cloudpickle = pytest.importorskip("cloudpickle")
    from nb2flow.check.dump import dumps

    notebook = _cell(
        "rate = 3\n\ndef price(x, tax=0.2):\n    # a comment\n    return x * rate * (1 + tax)\n"
        "double, triple = (lambda v: v * 2), (lambda v: v * 3)\n",
        "/tmp/ipykernel_1/101.py",
    )
    flow = _cell(
        "def task_body():\n    rate = 3\n\n    def price(x, tax=0.2):\n"
        "        return (x * rate * (1 + tax))\n\n"
        "    double, triple = (lambda v: v * 2), (lambda v: v * 3)\n"
        "    return price, double, triple\n",
        "/tmp/nb2flow-check-x/flow.py",
        module="_nb2flow_checked_flow",
    )
    price, double, triple = flow["task_body"]()
    assert price.__code__.co_code != notebook["price"].__code__.co_code
    saved = [dumps(f) for f in (notebook["price"], notebook["triple"], price, double, triple)]
    for filename in ("/tmp/ipykernel_1/101.py", "/tmp/nb2flow-check-x/flow.py"):
        del linecache.cache[filename]  # as in the checker's process
    nb_price, nb_triple, fl_price, fl_double, fl_triple = [cloudpickle.loads(s) for s in saved]
    assert status(nb_price, fl_price) == EQUAL
    assert status(nb_triple, fl_triple) == EQUAL  # the right one of two lambdas on a line
    v = compare(nb_triple, fl_double)
    assert v.status == DIFFERENT and "source differs" in v.detail and "v * 3" in v.detail
    other = _cell("def price(x, tax=0.3):\n    return x * 3 * (1 + tax)\n", "/tmp/k/2.py")
    assert status(notebook["price"], other["price"]) == DIFFERENT
    unknown: dict = {"__name__": "__main__"}
    exec(compile("f = lambda: 0", "<not in linecache>", "exec"), unknown)
    v = compare(lambda: 0, unknown["f"])
    assert v.status == NOT_COMPARED and "no source on the flow side" in v.detail


def test_recarray_saved_where_numpy_rec_was_never_imported_compares(tmp_path):
    """cloudpickle copied `recarray` by value when numpy.rec was not imported; that copy
    breaks in every method using super() (`TypeError: super(type, obj)`), which crashed
    the check. The dump imports the class's module first: the class goes by reference."""
    import subprocess
    import sys

    from nb2flow.check import _compare_all
    from nb2flow.check.runs import load_values

    script = (
        "import sys, numpy as np\n"
        "assert 'numpy.rec' not in sys.modules\n"
        "r = np.zeros(5, dtype=[('a', int), ('b', float)]).view(np.recarray)\n"
        "values = {'part': r[1:3], 'whole': r}\n"
        "if sys.argv[2] == 'dump':\n"
        "    from nb2flow.check.dump import dump\n"
        "    dump(values, sys.argv[1])\n"
        "else:  # what the check did before: cloudpickle alone\n"
        "    import cloudpickle, json\n"
        "    open(sys.argv[1] + '/0.pkl', 'wb').write(cloudpickle.dumps(values['part']))\n"
        "    open(sys.argv[1] + '/index.json', 'w').write(json.dumps({'part': 0}))\n"
    )
    for side in ("nb", "flow", "old-nb", "old-flow"):
        (tmp_path / side).mkdir()
        how = "old" if side.startswith("old") else "dump"
        subprocess.run([sys.executable, "-c", script, str(tmp_path / side), how], check=True)
    nb, flow = load_values(tmp_path / "nb"), load_values(tmp_path / "flow")
    assert type(nb["part"][1]) is np.recarray  # the real class, by reference
    rows = _compare_all(["part", "whole"], nb, flow, set(), None)
    assert [(r.name, r.status) for r in rows] == [("part", EQUAL), ("whole", EQUAL)]

    old_nb, old_flow = load_values(tmp_path / "old-nb"), load_values(tmp_path / "old-flow")
    with pytest.raises(TypeError, match="super"):
        repr(old_nb["part"][1])  # the crash, still there for copies made by value
    rows = _compare_all(["part"], old_nb, old_flow, set(), None)  # handled: no exception
    assert rows[0].status in (EQUAL, NOT_COMPARED)


def test_figures_are_compared_by_what_they_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import cloudpickle
    import matplotlib.pyplot as plt

    def draw(ys, color):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], ys, color=color, label="trend")
        ax.scatter([1, 2], [3, 4], c=[0.1, 0.2])
        ax.bar(["a", "b"], [5, 6])
        ax.set_title("Sales")
        ax.legend()
        image = ax.imshow(np.arange(4.0).reshape(2, 2))
        bar = fig.colorbar(image)
        return fig, ax, image, bar

    fig_a, ax_a, image_a, bar_a = draw([1, 2, 3], "red")
    fig_b, ax_b, image_b, bar_b = cloudpickle.loads(cloudpickle.dumps(draw([1, 2, 3], "blue")))
    v = compare(fig_a, fig_b)  # only the colour (render-only) differs; ids, callbacks too
    assert v.status == EQUAL and v.detail == "plots the same data"
    assert status(ax_a, ax_b) == EQUAL and status(image_a, image_b) == EQUAL
    assert status(ax_a.lines, ax_b.lines) == EQUAL
    v = compare(bar_a, bar_b)
    assert v.status == NOT_COMPARED and "render-only matplotlib state" in v.detail
    fig_c, ax_c, _, _ = draw([1, 2, 4], "red")
    v = compare(fig_a, fig_c)
    assert v.status == DIFFERENT and "plots other data" in v.detail and "lines" in v.detail
    ax_c.lines[0].set_ydata([1, 2, 3])
    ax_c.set_title("Costs")
    assert "Sales" in compare(ax_a, ax_c).detail
    plt.close("all")
