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
    """nbformat allows a source as a string or a list of lines."""
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return "" if value is None else str(value)


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
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        raise Nb2flowError(f"{path}: not a notebook (JSON without an 'nbformat' version)")
    version = data["nbformat"]
    if version < 3 or version > 4:
        raise Nb2flowError(f"{path}: nbformat {version} is not supported (3 and 4 are)")
    key = "cells" if version == 4 else "worksheets"
    if not isinstance(data.get(key), list):
        raise Nb2flowError(f"{path}: not a notebook (no '{key}' list)")

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_language(path: Path, node: Any) -> None:
    meta = node.get("metadata") or {}
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
        meta = cell.get("metadata") or {}
        tags = meta.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise Nb2flowError(f"{where(path, number)}: cell metadata 'tags' must be strings")
        cells.append(Cell(number, kind, _text(cell.get("source")), tuple(tags)))
    return cells
