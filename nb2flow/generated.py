"""The ownership marker of the scripts nb2flow writes.

``nb2flow convert`` puts :data:`MARKER` on a line of its own near the top of every script and
refuses to overwrite a file without it; the Dask runner uploads a script that carries it to
the workers (its module level then runs there too). Both read it here, so neither the
converter nor the runtime depends on the other for it. The same holds for
:func:`installation_roots`: the converter keeps a script from being named like a module
found there, the Dask runner imports by name on the workers the modules found there.
"""

from __future__ import annotations

import functools
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
