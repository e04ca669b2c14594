"""The rich console the commands print tables with."""

from __future__ import annotations

import os
from typing import Any

#: width of tables written to a file or a pipe (rich would use 80 and cut columns short)
PIPE_WIDTH = 160


def rich_console(**kwargs: Any) -> Any:
    """A ``rich.console.Console``; when output is not a terminal (a log, a pipe, CI) and
    ``COLUMNS`` is not set, tables get :data:`PIPE_WIDTH` columns instead of 80."""
    from rich.console import Console

    console = Console(**kwargs)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console
