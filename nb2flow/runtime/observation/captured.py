"""IPython's ``%%capture [--no-stdout] [--no-stderr] [--no-display] [var]`` without IPython:
:func:`capture_output` runs a block with what it writes to ``sys.stdout``/``sys.stderr`` and
what it displays kept, not shown, and gives a :class:`CapturedIO` with IPython's fields
(``stdout``, ``stderr``, ``outputs``, ``show()``).

Generated scripts may not import IPython (it is not part of nb2flow's core install). Unlike
IPython's ``capture_output``, which swaps ``sys.stdout`` for the whole process, what is held is
the writes of the code running inside the block (a context variable read by nb2flow's stream
proxies, :mod:`nb2flow.runtime.observation.capture`): a task running on another thread at the
same time keeps its own output.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RichOutput:
    """One displayed value, as IPython keeps it: its MIME bundle (``data``) and ``metadata``;
    displayed again (``display(output)``) it shows that bundle."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", ""))

    def _repr_html_(self) -> str | None:
        return self.data.get("text/html")

    def _repr_markdown_(self) -> str | None:
        return self.data.get("text/markdown")

    def _repr_png_(self) -> bytes | None:
        return self.data.get("image/png")


class CapturedIO:
    """What a ``capture_output()`` block wrote and displayed (IPython's ``CapturedIO``)."""

    def __init__(self, stdout: bool = True, stderr: bool = True, display: bool = True) -> None:
        self._out = io.StringIO() if stdout else None
        self._err = io.StringIO() if stderr else None
        self.keeps_display = display
        self.outputs: list[RichOutput] = []

    @property
    def stdout(self) -> str:
        return self._out.getvalue() if self._out is not None else ""

    @property
    def stderr(self) -> str:
        return self._err.getvalue() if self._err is not None else ""

    def stream(self, name: str) -> io.StringIO | None:
        """The buffer holding stream ``name`` (``stdout``/``stderr``), None when not held."""
        return self._out if name == "stdout" else self._err

    def keep(self, bundle: dict[str, Any]) -> None:
        """Keep a displayed value's MIME bundle (``display()`` inside the block)."""
        self.outputs.append(RichOutput(bundle))

    def show(self) -> None:
        """Write the held text to ``sys.stdout``/``sys.stderr`` and display the outputs again
        (in a run: recorded as the task's artifacts)."""
        from nb2flow.runtime.observation.artifacts import ipython_display

        sys.stdout.write(self.stdout)
        sys.stderr.write(self.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        ipython_display(*self.outputs)

    __call__ = show

    def __repr__(self) -> str:
        return (
            f"<CapturedIO: {len(self.stdout)} characters of stdout, {len(self.stderr)} of "
            f"stderr, {len(self.outputs)} outputs>"
        )


@contextmanager
def capture_output(
    stdout: bool = True, stderr: bool = True, display: bool = True
) -> Iterator[CapturedIO]:
    """Hold what the block writes to ``sys.stdout`` / ``sys.stderr`` and what it displays
    (``display()`` in a generated script), each unless turned off, as IPython's
    ``%%capture`` does; the :class:`CapturedIO` it gives has them."""
    from nb2flow.runtime.observation import capture

    captured = CapturedIO(stdout, stderr, display)
    capture.ensure_installed()
    token = capture.HELD.set(captured)
    try:
        yield captured
    finally:
        capture.HELD.reset(token)
