"""Build small notebooks for the converter's tests (imported as ``notebooks.nbbuild``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def code(source: str, *tags: str) -> Any:
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def md(source: str) -> Any:
    return new_markdown_cell(source)


def write(path: Path, cells: list[Any], **metadata: Any) -> Path:
    """Write a version-4 notebook with ``cells`` to ``path`` (cell ids fixed: deterministic)."""
    nb = new_notebook(cells=cells, metadata=metadata)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    nbformat.write(nb, str(path))
    return Path(path)
