"""Record what a task shows, with its task run (as Prefect's artifacts, and as a notebook cell
would have displayed it): shown in the panel's Outputs tab, by ``nb2flow show`` and in the
report, and kept in the run store.

>>> from nb2flow import artifacts
>>> artifacts.table(df.head(20), name="sample")      # a DataFrame, a list of dicts, ...
>>> artifacts.markdown(f"**RMSE** {rmse:.3f}")
>>> artifacts.image(fig)                              # a matplotlib figure, PNG bytes, PIL image
>>> artifacts.display(df.describe())                  # what ``display(x)`` / a cell's last value shows
>>> artifacts.last_value(x, "cell 9")                 # a cell's last expression (None shows nothing)
>>> artifacts.ipython_display(df, fig)                # IPython's display(*objs) in a script
>>> with artifacts.capture_output() as out:           # IPython's %%capture out
...     print("hidden")

Each call records one artifact for the calling task run (or the flow body) and returns
whether it did; outside a run it displays the value when in IPython and records nothing.
Parts are size-capped (text 16 KiB, HTML 512 KiB, markdown 256 KiB, PNG 4 MiB; tables keep
200 rows and 50 columns), at most 100 artifacts per task run. Figures a task leaves open are
recorded (and closed) without any call, when output capture is on (the default).
"""

from __future__ import annotations

from typing import Any

from nb2flow.runtime.observation import artifacts as _a
from nb2flow.runtime.observation.captured import CapturedIO, capture_output

__all__ = [
    "CapturedIO",
    "capture_output",
    "display",
    "end_of_cell",
    "image",
    "ipython_display",
    "last_value",
    "markdown",
    "table",
]

end_of_cell = _a.end_of_cell
ipython_display = _a.ipython_display


def display(obj: Any, name: str | None = None) -> bool:
    """Record ``obj`` as a notebook shows a value: its text, and its HTML (a DataFrame's
    table), markdown or PNG representation where it has one; a figure as an image."""
    kind, bundle = _a.value_bundle(obj)
    return _a.record(kind, bundle, name)


def last_value(obj: Any, name: str | None = None) -> bool:
    """Record what a notebook shows below a cell whose last expression is ``obj``: nothing
    for None (IPython's display hook), else as :func:`display`. The converter wraps a task
    cell's last expression in it (``artifacts.last_value((len(df), len(dv)), "cell 9")``)."""
    if obj is None:
        return False
    return display(obj, name)


def table(data: Any, name: str | None = None) -> bool:
    """Record a table: a pandas DataFrame (anything with ``to_html``), a list of dicts (rows),
    a dict of lists (columns) or a list of lists."""
    return _a.record(_a.TABLE, _a.table_bundle(data), name)


def markdown(text: str, name: str | None = None) -> bool:
    """Record markdown text (rendered in the panel and the report, raw HTML not allowed)."""
    return _a.record(_a.MARKDOWN, _a.markdown_bundle(text), name)


def image(image: Any, name: str | None = None) -> bool:
    """Record an image: a matplotlib figure (as PNG; the figure stays open), PNG bytes, a PIL
    image, or anything with ``_repr_png_``."""
    return _a.record(_a.IMAGE, _a.image_bundle(image), name)
