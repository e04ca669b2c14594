"""The one error type users see: a clear message, no traceback."""

from __future__ import annotations


class Nb2flowError(Exception):
    """An error caused by the user's input (a notebook, a tag, an option, an address).

    The CLI prints ``error: <message>`` and exits with status 2; it never shows a traceback.
    The message names the file and, where there is one, the cell (``notebook.ipynb, cell 7``).
    """


def where(path: object, cell: int | None = None, line: int | None = None) -> str:
    """Format a location as used in every error message: ``file, cell N, line M``."""
    text = str(path)
    if cell is not None:
        text += f", cell {cell}"
    if line is not None:
        text += f", line {line}"
    return text
