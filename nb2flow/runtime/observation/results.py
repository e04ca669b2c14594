"""Result summaries: what a task run returned and what a flow run returned, in a few words
that can be stored and shown without the value (type, shape, length, the head of its repr,
numbers in full).

Summaries are made where the value is (a worker thread, a pool process, a Dask worker) and
travel with the final state. They cost little: containers are shown with :mod:`reprlib`
(bounded however big they are), a DataFrame by its first rows.
"""

from __future__ import annotations

import numbers
import reprlib
from typing import Any

#: characters of a repr kept
REPR_HEAD = 300
#: items of a returned dict / nout tuple summarised one by one
MAX_ITEMS = 100

Summary = dict[str, Any]


class _Repr(reprlib.Repr):
    """reprlib's bounded repr, with dicts in their own order (reprlib sorts them)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = []
        for i, (k, v) in enumerate(x.items()):
            if i >= self.maxdict:
                items.append("...")
                break
            items.append(f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}")
        return "{" + ", ".join(items) + "}"


_repr = _Repr()
_repr.maxstring = REPR_HEAD
_repr.maxother = REPR_HEAD
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = 12
_repr.maxdict = 12
_repr.maxlevel = 3


def type_name(value: Any) -> str:
    t = type(value)
    module = t.__module__
    if module == "builtins":
        return t.__qualname__
    # pandas.core.frame.DataFrame -> pandas.DataFrame: the name people import it by
    top = module.partition(".")[0]
    if top in ("pandas", "numpy", "polars", "scipy", "sklearn", "xgboost", "torch"):
        public = __import__(top)
        if getattr(public, t.__name__, None) is t:
            return f"{top}.{t.__name__}"
    return f"{module}.{t.__qualname__}"


def _head(text: str) -> str:
    return text if len(text) <= REPR_HEAD else text[: REPR_HEAD - 1] + "\u2026"


def summarize(value: Any) -> Summary:
    """``{"type": ..., "repr": ...}`` plus ``shape``/``dtype``/``len``/``columns`` where the
    value has them."""
    t = type(value)
    if value is None or t is bool or t is int or t is float or t is str and len(value) < 80:
        return {"type": t.__name__, "repr": repr(value)}
    out: Summary = {"type": type_name(value)}
    if isinstance(value, numbers.Number):
        item = getattr(value, "item", None)  # a numpy scalar: its Python number, in full
        try:
            out["repr"] = repr(item() if callable(item) else value)
        except Exception:  # noqa: BLE001
            out["repr"] = _safe(value)
        return out
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        out["shape"] = list(shape)
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            out["dtype"] = str(dtype)
        columns = getattr(value, "columns", None)
        if columns is not None and len(shape) == 2:
            try:
                out["columns"] = [str(c) for c in list(columns)[:20]]
            except Exception:  # noqa: BLE001
                pass
        head = getattr(value, "head", None)
        if callable(head) and type(value).__module__.startswith(("pandas", "polars")):
            try:
                out["repr"] = _head(repr(head(5)))
                return out
            except Exception:  # noqa: BLE001
                pass
        out["repr"] = _head(_safe(value))
        return out
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        out["len"] = len(value)
        out["repr"] = _head(_bounded(value))
        return out
    out["repr"] = _head(_safe(value))
    return out


def _bounded(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception:  # noqa: BLE001
        return _safe(value)


def _safe(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001
        return f"<{type(value).__qualname__}: repr failed: {type(exc).__name__}>"


def summarize_items(value: Any, nout: int | None) -> Summary:
    """A task's return: one summary, or one per item for a ``nout`` task."""
    t = type(value)
    if t is int or t is float or value is None or t is bool:  # the hot path: no more calls
        return {"type": t.__name__, "repr": repr(value)}
    if nout and t in (tuple, list):
        return {
            "type": type(value).__name__,
            "len": len(value),
            "items": [summarize(v) for v in value[:MAX_ITEMS]],
        }
    return summarize(value)


def summarize_return(value: Any) -> Summary:
    """A flow's return: a dict is summarised key by key (what ``--json`` prints, in words)."""
    if type(value) is dict:
        keys = list(value)[:MAX_ITEMS]
        return {
            "type": "dict",
            "len": len(value),
            "items": {str(k): summarize(value[k]) for k in keys},
        }
    return summarize(value)
