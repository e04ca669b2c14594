"""Notebooks in: reading (nbformat 3 and 4), the tag grammar, IPython syntax -> Python."""

from __future__ import annotations

from nb2flow.notebook.magics import to_python
from nb2flow.notebook.reader import Cell, Notebook, read_notebook
from nb2flow.notebook.tags import CellTags, parse_tags

__all__ = ["Cell", "CellTags", "Notebook", "parse_tags", "read_notebook", "to_python"]
