"""Read a notebook file: parse, upgrade to nbformat 4, check it is a Python notebook.

Every failure is an :class:`~nb2flow.errors.Nb2flowError` naming the file (and the cell when
there is one); nothing here ever shows a traceback to the user.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2flow.errors import Nb2flowError, where

#: kernel languages that run Python code
PYTHON_LANGUAGES = {"python", "python3", "python2", "ipython", "ipython3"}

#: how deeply a notebook's JSON may nest (objects in arrays in objects...). Real notebooks
#: stay far below; far deeper JSON would overflow Python's stack in nbformat, copy or json.
MAX_NESTING = 100

#: notebook metadata entries nb2flow reads, which must then be JSON objects
_OBJECT_METADATA = ("kernelspec", "language_info", "nb2flow")


@dataclass(frozen=True)
class Cell:
    """One notebook cell as the converter sees it. ``number`` counts every cell from 1."""

    number: int
    kind: str  # "code", "markdown" or "raw"
    source: str
    tags: tuple[str, ...] = ()


@dataclass
class Notebook:
    """A notebook read from disk: its version-4 JSON, its cells, and (lazily) the nbformat
    node, for code that writes it back or runs it."""

    path: Path
    data: Any  # the notebook as version-4 JSON (a dict, or nbformat's NotebookNode)
    cells: list[Cell]
    sha256: str
    original_version: int
    warnings: list[str] = field(default_factory=list)

    @property
    def node(self) -> Any:
        """The notebook as an ``nbformat.NotebookNode`` (imports nbformat on first use)."""
        import nbformat

        if not isinstance(self.data, nbformat.NotebookNode):
            self.data = nbformat.from_dict(self.data)
        return self.data


def _text(value: Any) -> str:
    """nbformat allows a source as a string or a list of lines (checked by :func:`_cells`)."""
    if isinstance(value, list):
        return "".join(value)
    return "" if value is None else value


def read_notebook(path: str | Path, *, strict: bool = False) -> Notebook:
    """Read, upgrade (nbformat 3 -> 4) and check the notebook at ``path``.

    Version-4 notebooks are read as plain JSON and checked for what conversion needs
    (cells, their types, sources and tags): importing nbformat costs more than a whole
    conversion (its JSON-schema stack). ``strict=True`` also validates against nbformat's
    schema (a warning when it fails); nbformat 3 notebooks always go through nbformat's
    upgrade.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Nb2flowError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise Nb2flowError(f"{path}: is a directory, not a notebook") from None
    except OSError as exc:
        raise Nb2flowError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Nb2flowError(f"{path}: not a notebook (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Nb2flowError(
            f"{where(path)}: not a notebook: invalid JSON at line {exc.lineno}, "
            f"column {exc.colno} ({exc.msg})"
        ) from None
    except RecursionError:
        raise _too_deep(path) from None
    if _deeper_than(data, MAX_NESTING):
        raise _too_deep(path)
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        raise Nb2flowError(f"{path}: not a notebook (JSON without an 'nbformat' version)")
    version = data["nbformat"]
    if version < 3 or version > 4:
        raise Nb2flowError(f"{path}: nbformat {version} is not supported (3 and 4 are)")
    key = "cells" if version == 4 else "worksheets"
    if not isinstance(data.get(key), list):
        raise Nb2flowError(f"{path}: not a notebook (no '{key}' list)")

    if version == 4:  # before nbformat sees it: its errors for these are cryptic
        _check_metadata(path, data)
        _cells(path, data)
    notes: list[str] = []
    node: Any = data
    if version == 3 or strict:
        import nbformat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                node = nbformat.reads(text, as_version=4)
            except Exception as exc:  # nbformat raises many types for malformed input
                raise Nb2flowError(f"{path}: not a valid notebook ({_first_line(exc)})") from None
            try:
                nbformat.validate(node)
            except Exception as exc:
                # Jupyter opens many slightly-off notebooks; convert them, but say so.
                notes.append(f"{path}: notebook does not fully validate ({_first_line(exc)})")
    if version == 3:
        notes.append(f"{path}: upgraded from nbformat 3 to 4 for conversion")

    _check_language(path, node)
    cells = _cells(path, node)
    return Notebook(
        path=path,
        data=node,
        cells=cells,
        sha256=hashlib.sha256(raw).hexdigest(),
        original_version=version,
        warnings=notes,
    )


def notebook_from_json(data: Any, path: str | Path) -> Notebook:
    """A version-4 notebook given as JSON data (the unsaved content of a notebook open in
    Jupyter), checked as :func:`read_notebook` checks a file; ``path`` names it in messages
    and decides the flow's name. Its ``sha256`` is that of the canonical JSON."""
    path = Path(path)
    if not isinstance(data, dict) or data.get("nbformat") != 4:
        raise Nb2flowError(f"{path}: not a version-4 notebook")
    if not isinstance(data.get("cells"), list):
        raise Nb2flowError(f"{path}: not a notebook (no 'cells' list)")
    _check_language(path, data)
    cells = _cells(path, data)
    raw = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return Notebook(
        path=path,
        data=data,
        cells=cells,
        sha256=hashlib.sha256(raw).hexdigest(),
        original_version=4,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _too_deep(path: Path) -> Nb2flowError:
    return Nb2flowError(f"{path}: not a notebook: its JSON nests deeper than {MAX_NESTING} levels")


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether the JSON value nests more than `limit` containers deep (iteratively: the
    point is to never recurse on such input)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages: ``an array``, ``a string``..."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _check_metadata(path: Path, node: Any) -> None:
    """The notebook metadata nb2flow reads has the JSON types it expects."""
    meta = node.get("metadata", {})
    if not isinstance(meta, dict):
        raise Nb2flowError(
            f"{path}: the notebook's metadata must be a JSON object, not {_json_type(meta)}"
        )
    for key in _OBJECT_METADATA:
        if key in meta and not isinstance(meta[key], dict):
            raise Nb2flowError(
                f"{path}: notebook metadata {key!r} must be a JSON object, "
                f"not {_json_type(meta[key])}"
            )


def _check_language(path: Path, node: Any) -> None:
    _check_metadata(path, node)
    meta = node.get("metadata", {})
    kernelspec = meta.get("kernelspec") or {}
    language = kernelspec.get("language") or (meta.get("language_info") or {}).get("name")
    if isinstance(language, str) and language.strip().lower() not in PYTHON_LANGUAGES:
        kernel = kernelspec.get("name") or language
        raise Nb2flowError(
            f"{path}: the notebook's kernel is {kernel!s} ({language}); nb2flow converts "
            "Python notebooks only"
        )


def _cells(path: Path, node: Any) -> list[Cell]:
    cells = []
    for index, cell in enumerate(node.get("cells") or []):
        number = index + 1
        if not isinstance(cell, dict):
            raise Nb2flowError(f"{where(path, number)}: not a cell")
        kind = cell.get("cell_type")
        if kind not in ("code", "markdown", "raw"):
            raise Nb2flowError(f"{where(path, number)}: unknown cell type {kind!r}")
        meta = cell.get("metadata", {})
        if not isinstance(meta, dict):
            raise Nb2flowError(
                f"{where(path, number)}: cell metadata must be a JSON object, "
                f"not {_json_type(meta)}"
            )
        tags = meta.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise Nb2flowError(f"{where(path, number)}: cell metadata 'tags' must be strings")
        source = cell.get("source", "")
        lines = source if isinstance(source, list) else [source]
        bad = next((line for line in lines if not isinstance(line, str)), "")
        if not isinstance(bad, str):
            found = _json_type(bad) if bad is source else f"an array holding {_json_type(bad)}"
            raise Nb2flowError(
                f"{where(path, number)}: cell source must be text (a string or an array of "
                f"strings), not {found}"
            )
        cells.append(Cell(number, kind, _text(source), tuple(tags)))
    return cells
