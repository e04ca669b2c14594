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

Reading is done from bytes: every file is read once, checked against the SHA-256 digest
the caller recorded when it wrote it (:func:`write_value` returns them), and only then
unpickled or decoded, so what is loaded is exactly what was checked. A frame or array
being read while another thread imports pandas or numpy waits for that import.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import sys
import threading
from pathlib import Path
from typing import Any

from nb2flow import files

VALUE_FILE = "value.pkl"
#: arrays smaller than this stay inside the pickle (a file each would cost more than it saves)
NPY_MIN_BYTES = 1 << 16
FILE_MODE = files.FILE_MODE
#: the digest of every file of an entry (``meta.json`` records them)
DIGEST = "sha256"


class DamagedEntry(ValueError):
    """A file of an entry is missing, not what was written (digest), or not listed."""


def _open_private(path: Path) -> Any:
    return files.open_private(path)


def _loaded(name: str) -> Any:
    """The module ``name`` if it is imported, else ``None``. A module another thread is still
    importing is waited for (``import`` blocks until that import ends): looking at a
    half-initialised pandas would fail with "partially initialized module"."""
    module = sys.modules.get(name)
    if module is None:
        return None
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        module = importlib.import_module(name)
    return module


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, DIGEST).hexdigest()


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
    blobs: dict[str, bytearray] | None = getattr(_reading, "blobs", None)
    if blobs is None:
        raise pickle.UnpicklingError(f"part {name!r} read outside read_value")
    data = blobs.get(name)
    if data is None:
        raise DamagedEntry(f"part {name!r} is not one the entry lists")
    if kind == "parquet":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data))
    if kind == "npy":
        return _npy_from(data)
    raise pickle.UnpicklingError(f"unknown part kind {kind!r}")


def _npy_from(data: bytearray) -> Any:
    """The array of ``.npy`` bytes, sharing their buffer (no second copy of a big array)."""
    import numpy as np
    from numpy.lib import format as npy

    head = io.BytesIO(bytes(memoryview(data)[: 1 << 16]))
    version = npy.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(head)
    else:  # rare (utf-8 field names): numpy's own reader, with a copy
        return np.load(io.BytesIO(data), allow_pickle=False)
    if dtype.hasobject:
        raise DamagedEntry("an array of Python objects where plain data was written")
    count = 1
    for n in shape:
        count *= n
    array = np.frombuffer(data, dtype=dtype, count=count, offset=head.tell())
    return array.reshape(shape, order="F" if fortran else "C")


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
        pd = _loaded("pandas")
        np = _loaded("numpy")
        self._frame_type = getattr(pd, "DataFrame", None)
        self._array_type = getattr(np, "ndarray", None)

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

    Returns ``{"serializer": "pickle" | "cloudpickle", "parts": [...], "size": bytes,
    "digests": {file name: sha256 hex}}``.
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
    digests = {VALUE_FILE: hashlib.new(DIGEST, buf.getbuffer()).hexdigest()}
    for name in pickler.parts:
        digests[name] = file_digest(directory / name)
    size = sum((directory / name).stat().st_size for name in [*pickler.parts, VALUE_FILE])
    return {
        "serializer": serializer,
        "parts": list(pickler.parts),
        "size": size,
        "digests": digests,
    }


def read_value(
    directory: Path, digests: dict[str, str] | None = None, root: Path | None = None
) -> Any:
    """Read back what :func:`write_value` wrote (a fresh object on every call).

    With ``digests`` (what :func:`write_value` returned), each file must have its recorded
    digest (else :class:`DamagedEntry`) and only the files listed are read. With ``root``,
    each file and every folder up to ``root`` must pass :func:`nb2flow.files.untrusted`
    (else ``PermissionError``). Nothing is unpickled before every file passed.
    """
    names = list(digests) if digests is not None else [VALUE_FILE, *_part_names(directory)]
    if VALUE_FILE not in names:
        raise DamagedEntry(f"{VALUE_FILE} is not listed")
    blobs: dict[str, bytearray] = {}
    for name in names:
        if "/" in name or name.startswith("."):
            raise DamagedEntry(f"{name!r} is not a file name nb2flow writes")
        path = directory / name
        try:
            data = files.read_trusted(path, root) if root is not None else _read(path)
        except FileNotFoundError:
            raise DamagedEntry(f"{name} is missing") from None
        if digests is not None and hashlib.new(DIGEST, data).hexdigest() != digests[name]:
            raise DamagedEntry(f"{name} is not the file that was written (its digest differs)")
        blobs[name] = data
    previous = getattr(_reading, "blobs", None)
    _reading.blobs = blobs
    try:
        return pickle.loads(blobs.pop(VALUE_FILE))
    finally:
        _reading.blobs = previous


def _read(path: Path) -> bytearray:
    with open(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(data)
        return data


def _part_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".npy", ".parquet"))
