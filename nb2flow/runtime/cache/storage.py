"""Writing task results to a directory and reading them back.

One result is one directory: ``value.pkl``, a protocol-5 pickle of the value in which every
pandas DataFrame that parquet can hold faithfully is replaced by a reference to a
``N.parquet`` file beside it, and every large numpy array (including the blocks of frames
parquet cannot hold, and the arrays inside scipy matrices or models) by a reference to a
``N.npy`` file. Nesting is free: a tuple of two
frames, a dict holding an array, a model object holding arrays all work the same way.
What plain pickle cannot serialise (lambdas, classes defined in ``__main__`` by a
notebook), cloudpickle does.

Files are created readable by the owner only (0600). The caller writes into a private
temporary directory and renames it into place, which is what makes an entry appear whole
or not at all.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import threading
from pathlib import Path
from typing import Any

VALUE_FILE = "value.pkl"
#: arrays smaller than this stay inside the pickle (a file each would cost more than it saves)
NPY_MIN_BYTES = 1 << 16
FILE_MODE = 0o600


def _open_private(path: Path) -> io.BufferedWriter:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    return os.fdopen(fd, "wb")


def parquet_can_hold(df: Any) -> bool:
    """True when a parquet round trip gives back an equal frame with the same dtypes.

    Parquet needs unique string column names; object columns (mixed Python objects) and
    frame ``attrs`` do not survive it faithfully, so those frames are pickled instead.
    """
    import numpy as np
    import pandas as pd

    cols = df.columns
    if isinstance(cols, pd.MultiIndex) or not cols.is_unique or df.attrs:
        return False
    if not all(type(c) is str for c in cols):
        return False
    if any(isinstance(dt, np.dtype) and dt.hasobject for dt in df.dtypes):
        return False
    index = df.index
    levels = (
        [index.get_level_values(i) for i in range(index.nlevels)]
        if isinstance(index, pd.MultiIndex)
        else [index]
    )
    for level in levels:
        if isinstance(level.dtype, np.dtype) and level.dtype.hasobject:
            return False
        if level.name is not None and type(level.name) is not str:
            return False
        if level.name in cols:
            return False
    return True


_reading = threading.local()


def _part(kind: str, name: str) -> Any:
    """Unpickling side of a part reference: load ``name`` from the entry being read."""
    directory: Path | None = getattr(_reading, "directory", None)
    if directory is None or "/" in name or name.startswith("."):
        raise pickle.UnpicklingError(f"part {name!r} read outside read_value")
    path = directory / name
    if kind == "parquet":
        import pandas as pd

        return pd.read_parquet(path)
    if kind == "npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    raise pickle.UnpicklingError(f"unknown part kind {kind!r}")


class _PartsMixin:
    """``reducer_override`` that moves frames and large arrays out of the pickle into files.

    ``reducer_override`` (not ``persistent_id``) because the C pickler calls it only for
    objects that are not built-in atoms or containers, so a list of a million dicts costs no
    Python call per element, and a frame referenced twice is written once (memoised).
    """

    directory: Path
    parts: list[str]

    def _setup_parts(self, directory: Path) -> None:
        self.directory = directory
        self.parts = []
        pd = sys.modules.get("pandas")
        np = sys.modules.get("numpy")
        self._frame_type = pd.DataFrame if pd is not None else None
        self._array_type = np.ndarray if np is not None else None

    def _as_part(self, obj: Any) -> Any:
        t = type(obj)
        if t is self._frame_type and parquet_can_hold(obj):
            name = f"{len(self.parts)}.parquet"
            path = self.directory / name
            try:
                obj.to_parquet(path)
            except Exception:  # noqa: BLE001 - a dtype parquet cannot store: pickle it
                path.unlink(missing_ok=True)
                return NotImplemented
            os.chmod(path, FILE_MODE)
            self.parts.append(name)
            return (_part, ("parquet", name))
        if t is self._array_type and not obj.dtype.hasobject and obj.nbytes >= NPY_MIN_BYTES:
            import numpy as np

            name = f"{len(self.parts)}.npy"
            with _open_private(self.directory / name) as f:
                np.save(f, obj, allow_pickle=False)
            self.parts.append(name)
            return (_part, ("npy", name))
        return NotImplemented


class _Pickler(_PartsMixin, pickle.Pickler):
    def __init__(self, file: Any, directory: Path) -> None:
        pickle.Pickler.__init__(self, file, protocol=5)
        self._setup_parts(directory)

    def reducer_override(self, obj: Any) -> Any:
        return self._as_part(obj)


def _cloud_pickler(file: Any, directory: Path) -> Any:
    import cloudpickle

    class _CloudPickler(_PartsMixin, cloudpickle.CloudPickler):
        def __init__(self, file: Any, directory: Path) -> None:
            cloudpickle.CloudPickler.__init__(self, file, protocol=5)
            self._setup_parts(directory)

        def reducer_override(self, obj: Any) -> Any:
            found = self._as_part(obj)
            return super().reducer_override(obj) if found is NotImplemented else found

    return _CloudPickler(file, directory)


def _clear_parts(directory: Path, parts: list[str]) -> None:
    for name in parts:
        (directory / name).unlink(missing_ok=True)


def write_value(value: Any, directory: Path) -> dict[str, Any]:
    """Serialise ``value`` into the (new, empty, private) ``directory``.

    Returns ``{"serializer": "pickle" | "cloudpickle", "parts": [...], "size": bytes}``.
    Raises the serialiser's error when neither pickle nor cloudpickle can handle the value.
    """
    serializer = "pickle"
    buf = io.BytesIO()
    pickler: Any = _Pickler(buf, directory)
    try:
        pickler.dump(value)
    except Exception:  # noqa: BLE001 - e.g. a lambda or a class only defined in __main__
        _clear_parts(directory, pickler.parts)
        serializer = "cloudpickle"
        buf = io.BytesIO()
        pickler = _cloud_pickler(buf, directory)
        try:
            pickler.dump(value)
        except Exception:
            _clear_parts(directory, pickler.parts)
            raise
    with _open_private(directory / VALUE_FILE) as f:
        f.write(buf.getbuffer())
    size = sum((directory / name).stat().st_size for name in [*pickler.parts, VALUE_FILE])
    return {"serializer": serializer, "parts": list(pickler.parts), "size": size}


def read_value(directory: Path) -> Any:
    """Read back what :func:`write_value` wrote (a fresh object on every call)."""
    previous = getattr(_reading, "directory", None)
    _reading.directory = directory
    try:
        with open(directory / VALUE_FILE, "rb") as f:
            return pickle.load(f)
    finally:
        _reading.directory = previous
