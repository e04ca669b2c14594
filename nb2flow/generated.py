"""The ownership marker of the scripts nb2flow writes.

``nb2flow convert`` puts :data:`MARKER` on a line of its own near the top of every script and
refuses to overwrite a file without it; the Dask runner uploads a script that carries it to
the workers (its module level then runs there too). Both read it here, so neither the
converter nor the runtime depends on the other for it.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "# nb2flow: generated"


def is_generated(path: str | Path) -> bool:
    """True when the file at ``path`` carries the ``# nb2flow: generated`` marker."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(8192)
    except OSError:
        return False
    return any(line.strip() == MARKER for line in head.splitlines())
