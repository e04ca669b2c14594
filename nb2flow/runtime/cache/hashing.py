"""Fast, deterministic fingerprints of task inputs and of task code, for cache keys.

Values are fed into one streaming hash (xxh3-128 when ``xxhash`` is installed, else
``hashlib.blake2b``) without building a pickle of the whole object where a buffer exists:

- numpy arrays: dtype, shape and the raw bytes (no copy when contiguous);
- pandas frames/series/indexes: column names, dtypes, index, then per column either the
  raw numpy buffer (numeric, bool, datetime columns) or ``pandas.util.hash_pandas_object``
  (strings, categoricals, extension types);
- lists, tuples, dicts, sets: recursively (sets order-free, dicts in insertion order);
- everything else: a protocol-5 pickle whose large buffers are hashed out of band
  (cloudpickle where plain pickle fails).

pandas and numpy are imported only when a value comes from them (checked by the module
name of its type), so hashing a plain ``dict`` never pays for their import.

Code is fingerprinted by its source text (as generated: an edited cell changes it) and
its bytecode structure (so a stale source file can never give a wrong hit), together with
the module-level helpers it reaches: functions and classes defined in the same module,
followed transitively, plus simple module-level constants (numbers, strings, paths,
dates, small containers of them) that the code reads.
"""

from __future__ import annotations

import ast
import inspect
import pickle
import struct
import textwrap
import types
import weakref
from collections.abc import Callable
from typing import Any

try:  # xxh3 hashes at memory speed; blake2b (standard library) at about 1 GB/s
    import xxhash as _xxhash

    def new_hasher() -> Any:
        """A fresh streaming hasher with ``update(buffer)`` and ``hexdigest()``."""
        return _xxhash.xxh3_128()

    HASH_NAME = "xxh3_128"
except ImportError:  # pragma: no cover - xxhash is a declared dependency
    import hashlib

    def new_hasher() -> Any:
        """A fresh streaming hasher with ``update(buffer)`` and ``hexdigest()``."""
        return hashlib.blake2b(digest_size=16)

    HASH_NAME = "blake2b"


class Unhashable(Exception):
    """A value that neither pickle nor cloudpickle can serialise (so it cannot be keyed)."""


_PRIMITIVES = (type(None), bool, int, float, complex, str, bytes)
#: containers larger than this are not walked element by element but pickled in one go
_WALK_LIMIT = 10_000
_pack_len = struct.Struct("<Q").pack


def _tag(h: Any, tag: bytes, text: bytes = b"") -> None:
    # length-prefixed, so that ("ab", "c") and ("a", "bc") never feed the same bytes
    h.update(tag + _pack_len(len(text)) + text)


def feed(h: Any, obj: Any) -> None:
    """Feed a deterministic encoding of ``obj`` into the hasher ``h``."""
    t = type(obj)
    if t is str:
        _tag(h, b"s", obj.encode("utf-8", "surrogatepass"))
    elif t is int:
        _tag(h, b"i", str(obj).encode())
    elif t is float:
        _tag(h, b"f", obj.hex().encode())
    elif obj is None:
        h.update(b"N")
    elif t is bool:
        h.update(b"T" if obj else b"F")
    elif t is bytes:
        _tag(h, b"b", obj)
    elif t is complex:
        _tag(h, b"c", f"{obj.real.hex()},{obj.imag.hex()}".encode())
    elif (t is list or t is tuple) and len(obj) <= _WALK_LIMIT:
        _tag(h, b"l" if t is list else b"t", _pack_len(len(obj)))
        for item in obj:
            feed(h, item)
    elif t is dict and len(obj) <= _WALK_LIMIT:
        _tag(h, b"d", _pack_len(len(obj)))
        for k, v in obj.items():
            feed(h, k)
            feed(h, v)
    elif (t is set or t is frozenset) and len(obj) <= _WALK_LIMIT:
        # iteration order of a set of strings changes between processes: sort the digests
        digests = sorted(digest(item) for item in obj)
        _tag(h, b"S", "".join(digests).encode())
    else:
        module = t.__module__ or ""
        if module == "numpy" or module.startswith("numpy."):
            _feed_numpy(h, obj)
        elif module == "pandas" or module.startswith("pandas."):
            _feed_pandas(h, obj)
        else:
            _feed_pickle(h, obj)


def digest(obj: Any) -> str:
    """Hex digest of one value (see :func:`feed`)."""
    h = new_hasher()
    feed(h, obj)
    return h.hexdigest()


def _feed_array(h: Any, arr: Any) -> None:
    import numpy as np

    if arr.dtype.hasobject:
        _feed_pickle(h, arr)
        return
    _tag(h, b"A", f"{arr.dtype.str}{arr.shape}".encode())
    flat = np.ascontiguousarray(arr).reshape(-1)  # a view unless arr is strided
    h.update(flat.view(np.uint8))


def _feed_numpy(h: Any, obj: Any) -> None:
    import numpy as np

    if isinstance(obj, np.ndarray) and type(obj) is np.ndarray:
        _feed_array(h, obj)
    elif isinstance(obj, np.generic) and not obj.dtype.hasobject:
        _tag(h, b"g", obj.dtype.str.encode() + obj.tobytes())
    else:  # masked arrays, matrices, object scalars...
        _feed_pickle(h, obj)


def _feed_pandas_values(h: Any, values: Any) -> None:
    """One column / series / index worth of values (no index, no name)."""
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    _tag(h, b"y", str(dtype).encode())
    if isinstance(dtype, np.dtype) and not dtype.hasobject:
        _feed_array(h, values.to_numpy(copy=False))
        return
    try:
        hashed = pd.util.hash_pandas_object(values, index=False)
    except TypeError:  # unhashable elements (lists, dicts) in an object column
        _feed_pickle(h, values)
        return
    _feed_array(h, hashed.to_numpy(copy=False))


def _feed_index(h: Any, index: Any) -> None:
    import pandas as pd

    feed(h, list(index.names))
    if type(index) is pd.RangeIndex:
        _tag(h, b"R", f"{index.start}:{index.stop}:{index.step}".encode())
    elif isinstance(index, pd.MultiIndex):
        _tag(h, b"M", _pack_len(index.nlevels))
        for level in range(index.nlevels):
            _feed_pandas_values(h, index.get_level_values(level))
    else:
        _tag(h, b"I", type(index).__name__.encode())
        _feed_pandas_values(h, index)


def _feed_pandas(h: Any, obj: Any) -> None:
    import pandas as pd

    t = type(obj)
    if t is pd.DataFrame:
        _tag(h, b"DF", _pack_len(obj.shape[1]))
        _feed_index(h, obj.columns)
        _feed_index(h, obj.index)
        for i in range(obj.shape[1]):
            _feed_pandas_values(h, obj.iloc[:, i])
        feed(h, dict(obj.attrs))
    elif t is pd.Series:
        _tag(h, b"SR")
        feed(h, obj.name)
        _feed_index(h, obj.index)
        _feed_pandas_values(h, obj)
    elif isinstance(obj, pd.Index):
        _tag(h, b"IX")
        _feed_index(h, obj)
    else:  # Timestamp, Categorical, Interval, ...: small or rare, pickle is fine
        _feed_pickle(h, obj)


def _feed_pickle(h: Any, obj: Any) -> None:
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception:  # noqa: BLE001 - lambdas, local classes: cloudpickle handles those
        buffers.clear()
        try:
            import cloudpickle

            data = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as exc:  # noqa: BLE001
            raise Unhashable(f"cannot hash a {type(obj).__qualname__}: {exc}") from exc
    _tag(h, b"P", data)
    for buf in buffers:
        raw = buf.raw()  # large numpy buffers, hashed without a copy
        _tag(h, b"B", _pack_len(raw.nbytes))
        h.update(raw)


# --------------------------------------------------------------------------- code


_code_digests: dict[types.CodeType, str] = {}
_fn_digests: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _const_text(c: Any) -> str:
    if isinstance(c, types.CodeType):
        return "code:" + code_digest(c)
    if isinstance(c, frozenset):  # order of a frozenset of strings varies per process
        return "frozenset(" + ",".join(sorted(_const_text(x) for x in c)) + ")"
    if isinstance(c, tuple):
        return "(" + ",".join(_const_text(x) for x in c) + ")"
    return f"{type(c).__name__}:{c!r}"


def code_digest(code: types.CodeType) -> str:
    """Digest of a code object's behaviour: bytecode, names, constants (nested code
    included), but not line numbers, so moving a function does not change it."""
    found = _code_digests.get(code)
    if found is not None:
        return found
    h = new_hasher()
    for part in (
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags),
    ):
        _tag(h, b"c", repr(part).encode() if not isinstance(part, bytes) else part)
    _tag(h, b"k", ";".join(_const_text(c) for c in code.co_consts).encode())
    found = h.hexdigest()
    _code_digests[code] = found
    return found


def _global_names(code: types.CodeType, out: set[str]) -> set[str]:
    out.update(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _global_names(c, out)
    return out


def _without_decorators(source: str) -> str:
    """The ``def`` onwards: changing ``@task(retries=3)`` must not invalidate results."""
    text = textwrap.dedent(source)
    if not text.lstrip().startswith("@"):
        return text
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    node = tree.body[0] if tree.body else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
        return "".join(text.splitlines(keepends=True)[node.lineno - 1 :])
    return text


def function_digest(fn: Callable[..., Any]) -> str:
    """Digest of one function's own source text and bytecode (helpers not included)."""
    try:
        return _fn_digests[fn]
    except (KeyError, TypeError):
        pass
    h = new_hasher()
    _tag(h, b"q", getattr(fn, "__qualname__", "").encode())
    try:
        source = _without_decorators(inspect.getsource(fn))
    except (OSError, TypeError):  # defined in a REPL or exec'd text: bytecode only
        source = ""
    _tag(h, b"src", source.encode("utf-8", "surrogatepass"))
    code = getattr(fn, "__code__", None)
    if code is not None:
        _tag(h, b"code", code_digest(code).encode())
    defaults = (getattr(fn, "__defaults__", None), getattr(fn, "__kwdefaults__", None))
    try:
        feed(h, defaults)
    except Unhashable:
        _tag(h, b"def", repr(defaults).encode())
    found = h.hexdigest()
    try:
        _fn_digests[fn] = found
    except TypeError:
        pass
    return found


def _class_members(cls: type) -> list[tuple[str, Any]]:
    members = []
    for name, value in sorted(vars(cls).items()):
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = (value.fget, value.fset, value.fdel)
        members.append((name, value))
    return members


def _value_types() -> tuple[type, ...]:
    """Standard-library value types a setup cell commonly assigns (paths, dates, enums)."""
    import datetime
    import decimal
    import enum
    import fractions
    import pathlib
    import uuid

    return (
        pathlib.PurePath,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        fractions.Fraction,
        enum.Enum,
        uuid.UUID,
    )


_VALUE_TYPES = _value_types()


def _is_simple_constant(value: Any) -> bool:
    """A module-level value small and plain enough to be part of the code's key."""
    t = type(value)
    if t in _PRIMITIVES or isinstance(value, _VALUE_TYPES):
        return True
    if t in (list, tuple, set, frozenset):
        return len(value) <= 1000 and all(_is_simple_constant(v) for v in value)
    if t is dict:
        return len(value) <= 1000 and all(
            _is_simple_constant(k) and _is_simple_constant(v) for k, v in value.items()
        )
    return False


def _unwrap_task(obj: Any) -> Any:
    """The plain function behind a task object (its ``fn``), a ``functools.partial`` (its
    ``func``) or a C-level wrapper such as ``functools.lru_cache`` (its ``__wrapped__``)."""
    for _ in range(10):  # wrappers of wrappers, but never a loop
        if isinstance(obj, (type, types.FunctionType, types.ModuleType, *_PRIMITIVES)):
            return obj
        inner = None
        for attr in ("fn", "func", "__wrapped__"):
            try:
                inner = getattr(obj, attr, None)
            except Exception:  # noqa: BLE001 - a proxy object with a hostile __getattr__
                inner = None
            if isinstance(inner, (types.FunctionType, type)) or callable(inner):
                break
            inner = None
        if inner is None:
            return obj
        obj = inner
    return obj


def code_closure_digest(fn: Callable[..., Any]) -> str:
    """Digest of ``fn`` and everything in its module it reaches by global name.

    Followed: functions and classes whose ``__module__`` is ``fn``'s module (transitively,
    through their own global names and closures and, for classes, their methods and
    bases), through task objects, ``functools.wraps``/``lru_cache``/``partial`` wrappers.
    Included by value: module-level constants that are numbers, strings, bytes, paths,
    dates, enums, or small containers of those. Not followed: imported modules and objects
    from other modules (their version is their own business).
    The module's own name is left out, so a script run as ``__main__`` and the same script
    imported under its file name share their keys.
    """
    fn = _unwrap_task(fn)
    parts: list[str] = []
    if not isinstance(fn, (types.FunctionType, type)):
        # a callable object: its class's code, and its own state by value
        state = getattr(fn, "__dict__", None)
        parts.append(f"instance {digest(state if type(state) is dict else fn)}")
        fn = type(fn)
    module = getattr(fn, "__module__", None)
    h = new_hasher()
    seen: set[int] = set()
    stack: list[Any] = [fn]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            parts.append(f"fn {obj.__qualname__} {function_digest(obj)}")
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                stack.append(_unwrap_task(wrapped))
            for cell in obj.__closure__ or ():
                try:
                    value = _unwrap_task(cell.cell_contents)
                except ValueError:  # an empty cell (a name not assigned yet)
                    continue
                if isinstance(value, (types.FunctionType, type)):
                    if getattr(value, "__module__", None) == module:
                        stack.append(value)
                elif _is_simple_constant(value):
                    parts.append(f"cell {obj.__qualname__} {digest(value)}")
            g = obj.__globals__
            for name in sorted(_global_names(obj.__code__, set())):
                if name not in g:
                    continue  # a builtin, an attribute name or a local
                value = _unwrap_task(g[name])
                if isinstance(value, (types.FunctionType, type)):
                    if getattr(value, "__module__", None) == module and id(value) not in seen:
                        stack.append(value)
                elif _is_simple_constant(value):
                    parts.append(f"const {name} {digest(value)}")
        elif isinstance(obj, type):
            parts.append(f"class {obj.__qualname__}")
            bases = [
                b.__qualname__ if b.__module__ == module else f"{b.__module__}.{b.__qualname__}"
                for b in obj.__mro__
            ]
            parts.append("bases " + ",".join(bases))
            for name, value in _class_members(obj):
                values = value if isinstance(value, tuple) else (value,)
                for v in values:
                    if isinstance(v, types.FunctionType):
                        stack.append(v)
                        parts.append(f"member {name} -> {v.__qualname__}")
                    elif _is_simple_constant(v) and not name.startswith("__"):
                        parts.append(f"member {name} = {digest(v)}")
            for base in obj.__mro__[1:]:
                if getattr(base, "__module__", None) == module:
                    stack.append(base)
    for part in sorted(set(parts)):  # order-free: the walk order must not matter
        _tag(h, b"p", part.encode())
    return h.hexdigest()
