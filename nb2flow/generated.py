"""The ownership marker of the scripts nb2flow writes.

``nb2flow convert`` puts :data:`MARKER` on a line of its own near the top of every script and
refuses to overwrite a file without it; the Dask runner uploads a script that carries it to
the workers (its module level then runs there too). Both read it here, so neither the
converter nor the runtime depends on the other for it. The same holds for
:data:`RESERVED_PARAMETERS` (the runtime's own option names, which the converter keeps
parameters from taking) and :func:`installation_roots`: the converter keeps a script from being
named like a module found there, the Dask runner imports by name on the workers the modules
found there. And for the source map the converter writes at the end of a script (which
notebook cell each line comes from), read by the runtime to tell errors in the notebook's terms.
"""

from __future__ import annotations

import functools
from pathlib import Path

MARKER = "# nb2flow: generated"

#: names a flow parameter cannot have: keyword arguments of the flow call itself
#: (``my_flow(..., return_state=True)``); ``@flow`` refuses them, ``convert`` too
RESERVED_PARAMETERS = frozenset({"return_state"})


def is_generated(path: str | Path) -> bool:
    """True when the file at ``path`` carries the ``# nb2flow: generated`` marker."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(8192)
    except OSError:
        return False
    return any(line.strip() == MARKER for line in head.splitlines())


@functools.cache
def installation_roots() -> tuple[str, ...]:
    """The folders of the Python installation's modules: the standard library and the
    site-packages folders (never the working directory)."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # some virtualenvs lack these
        pass
    return tuple(sorted(r for r in roots if r))


# -- the source map: script lines -> notebook cells ------------------------------------------

#: the comment line that starts the source map at the end of a script; the notebook's path
#: follows as a JSON string, then lines of entries ``#   S+N=C:L`` (script lines S..S+N-1 are
#: lines L..L+N-1 of cell C)
SOURCE_MAP = "# nb2flow: source map of "
_ENTRIES = "#   "

#: (first script line, number of lines, cell number, first line in the cell)
Entry = tuple[int, int, int, int]


def format_source_map(notebook: str, entries: list[Entry], width: int = 96) -> str:
    """The comment block that ends a script: which notebook cell each line comes from."""
    import json

    lines = [f"{SOURCE_MAP}{json.dumps(notebook)} (script line+count=cell:line)"]
    current = _ENTRIES
    for start, count, cell, line in entries:
        item = f"{start}+{count}={cell}:{line}"
        if len(current) + len(item) + 1 > width and current != _ENTRIES:
            lines.append(current.rstrip())
            current = _ENTRIES
        current += item + " "
    if current != _ENTRIES:
        lines.append(current.rstrip())
    return "\n".join(lines) + "\n"


def parse_source_map(lines: list[str]) -> tuple[str, list[Entry]] | None:
    """(notebook, entries sorted by script line) from a script's lines, or None."""
    import json

    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(SOURCE_MAP):
            break
    else:
        return None
    head = lines[i][len(SOURCE_MAP) :]
    try:
        notebook, _ = json.JSONDecoder().raw_decode(head)
    except ValueError:
        return None
    entries: list[Entry] = []
    for text in lines[i + 1 :]:
        if not text.startswith(_ENTRIES):
            break
        for item in text[len(_ENTRIES) :].split():
            try:
                span, _, where = item.partition("=")
                start, _, count = span.partition("+")
                cell, _, line = where.partition(":")
                entries.append((int(start), int(count), int(cell), int(line)))
            except ValueError:
                return None
    return str(notebook), sorted(entries)


def locate(entries: list[Entry], lineno: int) -> tuple[int, int] | None:
    """(cell, line in the cell) of script line ``lineno``, or None (generated code)."""
    import bisect

    i = bisect.bisect_right(entries, (lineno, float("inf"))) - 1
    if i < 0:
        return None
    start, count, cell, line = entries[i]
    if lineno >= start + count:
        return None
    return cell, line + lineno - start
