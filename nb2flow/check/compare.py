"""Compare a value the notebook computed with the one the flow computed.

:func:`compare` answers one of three things: equal (within tolerance), different (with a
short explanation of where), or not comparable (and why). Numbers, numpy arrays, pandas
objects and scipy sparse matrices are compared with tolerances; containers recursively;
fitted models by their predictions on sample inputs; other objects by their ``__eq__`` when
they define one, else by their attributes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nb2flow.check.dump import USER_MODULES

#: verdicts
EQUAL = "equal"
DIFFERENT = "different"
NOT_COMPARED = "not compared"

_MAX_DEPTH = 12
_SAMPLE_ROWS = 50


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-6
    atol: float = 1e-9


@dataclass(frozen=True)
class Verdict:
    status: str  # EQUAL, DIFFERENT or NOT_COMPARED
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == EQUAL


_EQUAL = Verdict(EQUAL)


def _different(detail: str) -> Verdict:
    return Verdict(DIFFERENT, detail)


def type_name(value: Any) -> str:
    t = type(value)
    module = t.__module__.split(".")[0]
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


def compare(
    expected: Any,
    actual: Any,
    tol: Tolerance | None = None,
    samples: Sequence[Any] = (),
) -> Verdict:
    """Compare the notebook's value (`expected`) with the flow's (`actual`).

    `samples` are candidate inputs (arrays, frames, sparse matrices) for comparing fitted
    models by their predictions; the first one both models accept is used.
    """
    return _compare(expected, actual, tol or Tolerance(), tuple(samples), "", 0)


def _compare(a: Any, b: Any, tol: Tolerance, samples: tuple, path: str, depth: int) -> Verdict:
    if depth > _MAX_DEPTH:
        return Verdict(NOT_COMPARED, f"nested deeper than {_MAX_DEPTH} levels{_at(path)}")
    if a is None or b is None:
        return _EQUAL if a is b else _different(f"{_short(a)} != {_short(b)}{_at(path)}")

    numeric = _as_number(a), _as_number(b)
    if numeric[0] is not None and numeric[1] is not None:
        return _compare_numbers(numeric[0], numeric[1], tol, path)

    if type(a) is not type(b) and not _compatible_types(a, b) and not _same_user_class(a, b):
        return _different(f"type {type_name(a)} != {type_name(b)}{_at(path)}")

    if isinstance(a, str | bytes | bytearray | range | frozenset | set):
        return _EQUAL if a == b else _different(f"{_short(a)} != {_short(b)}{_at(path)}")

    kind = _library_kind(a)
    if kind == "ndarray":
        return _compare_arrays(a, b, tol, path)
    if kind == "pandas":
        return _compare_pandas(a, b, tol, path)
    if kind == "sparse":
        return _compare_sparse(a, b, tol, path)

    if isinstance(a, dict):
        if list(a) != list(b) and set(a) != set(b):
            missing = [k for k in a if k not in b][:3]
            extra = [k for k in b if k not in a][:3]
            return _different(
                f"keys differ{_at(path)}: only in notebook {missing}, only in flow {extra}"
            )
        for key in a:
            v = _compare(a[key], b[key], tol, samples, f"{path}[{key!r}]", depth + 1)
            if not v.ok:
                return v
        return _EQUAL

    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return _different(f"length {len(a)} != {len(b)}{_at(path)}")
        if _fast_equal(a, b):
            return _EQUAL
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            v = _compare(x, y, tol, samples, f"{path}[{i}]", depth + 1)
            if not v.ok:
                return v
        return _EQUAL

    if isinstance(a, type):
        # classes: the same name (a notebook's live in __main__, the flow's in the script
        # module or inside a task function: neither the module nor the qualified name is
        # part of the identity)
        same = a.__name__ == b.__name__
        return _EQUAL if same else _different(f"{_short(a)} != {_short(b)}{_at(path)}")
    if _is_function(a):
        return _compare_functions(a, b, tol, path, depth)

    if _is_matplotlib(a):
        return _compare_plots(a, b, tol, path, depth)

    if callable(getattr(a, "predict", None)):
        return _compare_models(a, b, tol, samples, path)

    if type(a).__eq__ is not object.__eq__:
        eq = _fast_equal(a, b)
        if eq is not None:
            return _EQUAL if eq else _different(f"{_short(a)} != {_short(b)}{_at(path)}")

    rng_state = _random_state(a), _random_state(b)
    if rng_state[0] is not None:
        v = _compare(rng_state[0], rng_state[1], tol, (), "", depth + 1)
        return _EQUAL if v.ok else _different(f"random generator states differ{_at(path)}")

    state_a, state_b = _state(a), _state(b)
    if state_a is not None and state_b is not None:
        v = _compare(state_a, state_b, tol, samples, "", depth + 1)
        if v.status == DIFFERENT:
            return _different(f"{type_name(a)} attributes differ{_at(path)}: {v.detail}")
        if v.status == NOT_COMPARED and depth == 0:
            return Verdict(NOT_COMPARED, f"{type_name(a)}: some attributes are not comparable")
        return v
    return Verdict(NOT_COMPARED, f"no way to compare {type_name(a)} values{_at(path)}")


# --- numbers -------------------------------------------------------------------------------


def _as_number(x: Any) -> complex | float | None:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float | complex):
        return x
    t = type(x)
    if t.__module__ == "numpy" and hasattr(x, "dtype") and getattr(x, "shape", None) == ():
        kind = x.dtype.kind
        if kind in "biuf":
            return float(x)
        if kind == "c":
            return complex(x)
    return None


def _compare_numbers(a: complex | float, b: complex | float, tol: Tolerance, path: str) -> Verdict:
    if isinstance(a, complex) or isinstance(b, complex):
        ok = abs(a - b) <= tol.atol + tol.rtol * abs(b)
    elif math.isnan(a) or math.isnan(b):
        ok = math.isnan(a) and math.isnan(b)
    else:
        ok = math.isclose(a, b, rel_tol=tol.rtol, abs_tol=tol.atol)
    if ok:
        return _EQUAL
    return _different(f"{a!r} != {b!r}{_at(path)}")


# --- numpy, pandas, scipy ------------------------------------------------------------------


def _library_kind(x: Any) -> str | None:
    module = type(x).__module__
    if module == "numpy" and type(x).__name__ in ("ndarray", "matrix"):
        return "ndarray"
    if module.startswith("numpy") and hasattr(x, "dtype") and hasattr(x, "shape"):
        return "ndarray"  # numpy scalars that are not numbers (datetime64, str_...)
    if module.startswith("pandas"):
        return "pandas"
    if module.startswith("scipy.sparse"):
        return "sparse"
    return None


def _same_user_class(a: Any, b: Any) -> bool:
    """A class the notebook defines exists twice (kernel and flow): same name, same role."""
    ta, tb = type(a), type(b)
    return ta.__name__ == tb.__name__ and {ta.__module__, tb.__module__} <= USER_MODULES


def _compatible_types(a: Any, b: Any) -> bool:
    kinds = _library_kind(a), _library_kind(b)
    return kinds[0] is not None and kinds[0] == kinds[1]


def _compare_arrays(a: Any, b: Any, tol: Tolerance, path: str) -> Verdict:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return _different(f"shape {a.shape} != {b.shape}{_at(path)}")
    if a.dtype.kind in "biufc" and b.dtype.kind in "biufc":
        close = np.isclose(a, b, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
        if close.all():
            return _EQUAL
        bad = np.argwhere(~close)
        first = tuple(int(i) for i in bad[0])
        diff = np.abs(a.astype(complex) - b.astype(complex))
        return _different(
            f"{len(bad)} of {a.size} elements differ{_at(path)}, max abs diff "
            f"{float(np.nanmax(diff)):.6g}, first at {first}: {a[first]!r} != {b[first]!r}"
        )
    try:
        equal = np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM")
    except TypeError:
        equal = np.array_equal(a, b)
    if equal:
        return _EQUAL
    if a.dtype == object and b.dtype == object:
        return _compare_object_arrays(a, b, tol, path)
    return _different(f"arrays differ{_at(path)} (dtype {a.dtype} vs {b.dtype})")


def _compare_object_arrays(a: Any, b: Any, tol: Tolerance, path: str) -> Verdict:
    for i, (x, y) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
        v = _compare(x, y, tol, (), f"{path}[{i}]", 1)
        if not v.ok:
            return v
    return _EQUAL


def _compare_pandas(a: Any, b: Any, tol: Tolerance, path: str) -> Verdict:
    import pandas as pd

    testing = pd.testing
    kwargs = {"check_exact": False, "rtol": tol.rtol, "atol": tol.atol}
    try:
        if isinstance(a, pd.DataFrame):
            testing.assert_frame_equal(a, b, **kwargs)
        elif isinstance(a, pd.Series):
            testing.assert_series_equal(a, b, **kwargs)
        elif isinstance(a, pd.Index):
            testing.assert_index_equal(a, b, exact="equiv", check_exact=False)
        elif isinstance(a, pd.api.extensions.ExtensionArray):
            testing.assert_extension_array_equal(a, b, **kwargs)
        else:
            eq = _fast_equal(a, b)
            if eq is None:
                return Verdict(NOT_COMPARED, f"no way to compare {type_name(a)} values{_at(path)}")
            return _EQUAL if eq else _different(f"{_short(a)} != {_short(b)}{_at(path)}")
    except AssertionError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        return _different(f"{'; '.join(lines[:4])}{_at(path)}")
    return _EQUAL


def _compare_sparse(a: Any, b: Any, tol: Tolerance, path: str) -> Verdict:
    if a.shape != b.shape:
        return _different(f"shape {a.shape} != {b.shape}{_at(path)}")
    diff = abs(a - b)
    worst = float(diff.max()) if diff.nnz else 0.0
    scale = float(abs(b).max()) if b.nnz else 0.0
    if worst <= tol.atol + tol.rtol * scale:
        return _EQUAL
    return _different(f"sparse matrices differ{_at(path)}: max abs diff {worst:.6g}")


# --- models and other objects --------------------------------------------------------------


def _compare_models(a: Any, b: Any, tol: Tolerance, samples: tuple, path: str) -> Verdict:
    tried = 0
    for sample in samples:
        for x in _model_inputs(a, sample):
            tried += 1
            try:
                pa, pb = a.predict(x), b.predict(x)
            except Exception:  # noqa: BLE001 - this input does not fit this model; try the next
                continue
            v = _compare(pa, pb, tol, (), f"{path}.predict(sample)", 1)
            if v.status == DIFFERENT:
                return _different(f"predictions differ: {v.detail}")
            if v.ok:
                return Verdict(EQUAL, f"same predictions on {_rows(x)} sample rows")
    why = "no sample input" if not tried else f"none of {tried} sample inputs fits"
    return Verdict(NOT_COMPARED, f"{type_name(a)}: {why} for predict(){_at(path)}")


def _model_inputs(model: Any, sample: Any) -> list[Any]:
    """The sample, cut to a few rows, in the shapes this model's predict() might accept."""
    head = _head(sample)
    if head is None:
        return []
    if type(model).__module__.startswith("xgboost") and type(model).__name__ == "Booster":
        import xgboost as xgb

        try:
            return [xgb.DMatrix(head)]
        except Exception:  # noqa: BLE001
            return []
    return [head]


def _head(x: Any) -> Any:
    kind = _library_kind(x)
    if kind == "ndarray" and getattr(x, "ndim", 0) >= 1 and len(x):
        return x[:_SAMPLE_ROWS]
    if kind == "pandas" and hasattr(x, "iloc") and len(x):
        return x.iloc[:_SAMPLE_ROWS]
    if kind == "sparse" and x.shape[0]:
        return x.tocsr()[:_SAMPLE_ROWS]
    return None


def _rows(x: Any) -> int:
    try:
        return int(x.num_row()) if hasattr(x, "num_row") else int(x.shape[0])
    except Exception:  # noqa: BLE001
        return 0


def _is_function(x: Any) -> bool:
    import types

    return isinstance(x, types.FunctionType | types.BuiltinFunctionType | types.MethodType)


def _compare_functions(a: Any, b: Any, tol: Tolerance, path: str, depth: int) -> Verdict:
    """Functions by what they say: their source (normalised by :mod:`ast`: layout and
    comments do not count), then their defaults and the values they close over. The
    bytecode is no measure: the same ``def`` compiles differently inside a task."""
    import types

    from nb2flow.check.dump import source_of

    if a is b:
        return _EQUAL
    if isinstance(a, types.MethodType):
        for attr in ("__func__", "__self__"):
            v = _compare(getattr(a, attr), getattr(b, attr), tol, (), f"{path}.{attr}", depth + 1)
            if not v.ok:
                return v
        return _EQUAL
    if not (isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType)):
        # builtins (a library's functions load as the very same object on both sides)
        same = _home(a) == _home(b)
        return _EQUAL if same else _different(f"{_short(a)} != {_short(b)}{_at(path)}")
    source_a, source_b = source_of(a), source_of(b)
    if source_a is None or source_b is None:
        side = "notebook" if source_a is None else "flow"
        return Verdict(
            NOT_COMPARED, f"function {a.__name__}: no source on the {side} side{_at(path)}"
        )
    if source_a != source_b:
        return _different(
            f"function {a.__name__}: the source differs{_at(path)}: "
            f"{_first_difference(source_a, source_b)}"
        )
    for attr in ("__defaults__", "__kwdefaults__"):
        v = _compare(getattr(a, attr), getattr(b, attr), tol, (), f"{path}.{attr}", depth + 1)
        if not v.ok:
            return v
    closure_a, closure_b = _closure(a), _closure(b)
    for var in sorted(closure_a.keys() & closure_b.keys()):
        v = _compare(closure_a[var], closure_b[var], tol, (), f"{path}.<{var}>", depth + 1)
        if not v.ok:
            return v
    return Verdict(EQUAL, "same source")


def _home(func: Any) -> tuple[Any, Any]:
    return getattr(func, "__module__", None), getattr(func, "__qualname__", None)


def _closure(func: Any) -> dict[str, Any]:
    """The values a function closes over, by name (functions left out: a recursive inner
    function closes over itself)."""
    values = {}
    for var, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if not _is_function(value):
            values[var] = value
    return values


def _first_difference(a: str, b: str) -> str:
    for line_a, line_b in zip(a.splitlines(), b.splitlines(), strict=False):
        if line_a != line_b:
            return f"{_short(line_a.strip())} != {_short(line_b.strip())}"
    return "one is longer"


# --- matplotlib ----------------------------------------------------------------------------


def _is_matplotlib(x: Any) -> bool:
    return type(x).__module__.startswith(("matplotlib.", "mpl_toolkits."))


def _compare_plots(a: Any, b: Any, tol: Tolerance, path: str, depth: int) -> Verdict:
    """Figures, axes and artists by what they plot (the data of lines, collections,
    patches and images; titles, labels, texts, limits); what only affects rendering
    (colours, transforms, callbacks, renderer caches) is not compared."""
    try:
        plotted = _plotted(a), _plotted(b)
    except Exception as exc:  # noqa: BLE001 - an artist this code does not know how to read
        return Verdict(
            NOT_COMPARED, f"{type_name(a)}: cannot read what it plots ({exc}){_at(path)}"
        )
    if plotted[0] is None or plotted[1] is None:
        return Verdict(NOT_COMPARED, f"{type_name(a)}: render-only matplotlib state{_at(path)}")
    v = _compare(plotted[0], plotted[1], tol, (), path, depth + 1)
    if v.status == DIFFERENT:
        return _different(f"{type_name(a)} plots other data: {v.detail}")
    return Verdict(EQUAL, "plots the same data") if v.ok else v


def _plotted(x: Any) -> dict[str, Any] | None:
    """What a figure, axes or artist plots, as plain values; None for other objects."""
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase

    if isinstance(x, FigureBase):
        suptitle = getattr(x, "_suptitle", None)
        return {
            "suptitle": suptitle.get_text() if suptitle is not None else "",
            "axes": [_plotted_axes(a) for a in x.get_children() if isinstance(a, Axes)],
        }
    if isinstance(x, Axes):
        return _plotted_axes(x)
    if isinstance(x, Artist):
        return _plotted_artist(x)
    if isinstance(x, Sequence):  # ax.lines and the like (an ArtistList)
        return {"artists": [_plotted(item) for item in x]}
    return None


def _plotted_axes(ax: Any) -> dict[str, Any]:
    legend = ax.get_legend()
    return {
        "title": [ax.get_title(loc) for loc in ("left", "center", "right")],
        "labels": [ax.get_xlabel(), ax.get_ylabel()],
        "limits": [tuple(ax.get_xlim()), tuple(ax.get_ylim())],
        "scales": [ax.get_xscale(), ax.get_yscale()],
        "lines": [_plotted_artist(a) for a in ax.lines],
        "collections": [_plotted_artist(a) for a in ax.collections],
        "patches": [_plotted_artist(a) for a in ax.patches],
        "images": [_plotted_artist(a) for a in ax.images],
        "texts": [_plotted_artist(a) for a in ax.texts],
        "legend": _plotted_artist(legend) if legend is not None else None,
    }


def _plotted_artist(artist: Any) -> dict[str, Any] | None:
    import numpy as np
    from matplotlib.collections import Collection
    from matplotlib.image import _ImageBase
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.text import Text

    def data(values: Any) -> Any:
        return None if values is None else np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)

    if isinstance(artist, Line2D):
        return {"line": data(artist.get_xydata())}
    if isinstance(artist, Collection):
        return {
            "offsets": data(artist.get_offsets()),
            "values": data(artist.get_array()),
            "paths": [data(p.vertices) for p in artist.get_paths()],
        }
    if isinstance(artist, Patch):
        vertices = artist.get_patch_transform().transform(artist.get_path().vertices)
        return {"patch": data(vertices)}
    if isinstance(artist, _ImageBase):
        return {"image": np.asarray(artist.get_array())}
    if isinstance(artist, Text):
        return {"text": artist.get_text(), "at": tuple(artist.get_position())}
    if isinstance(artist, Legend):
        return {"legend": [t.get_text() for t in artist.get_texts()]}
    return None


def _random_state(x: Any) -> Any:
    """The state of a numpy random generator (RandomState, Generator), else None."""
    name = type(x).__name__
    if not type(x).__module__.startswith("numpy"):
        return None
    if name == "RandomState":
        return list(x.get_state())
    if name == "Generator":
        return x.bit_generator.state
    return None


def _state(x: Any) -> dict | None:
    try:
        state = vars(x)
    except TypeError:
        return None
    return dict(state) if isinstance(state, dict) and state else None


def _fast_equal(a: Any, b: Any) -> bool | None:
    """``a == b`` as a bool, or None when the comparison itself fails or is ambiguous."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. lists holding arrays: "truth value is ambiguous"
        return None


def is_sample(x: Any) -> bool:
    """Whether a value could serve as input when comparing models by prediction."""
    return _library_kind(x) in ("ndarray", "pandas", "sparse") and _head(x) is not None


def _at(path: str) -> str:
    if len(path) > 80:
        path = "..." + path[-77:]
    return f" at {path}" if path else ""


def _short(x: Any, limit: int = 60) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."
