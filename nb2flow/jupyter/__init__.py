"""Jupyter integration: the live run panel, ``show(run)``, ``runs()`` and the HTML report.

Importing this package is cheap; ipywidgets is imported when a panel is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["show", "runs"]


def show(run: Any) -> None:
    """Display the panel of a finished FlowRun, a RunView or a stored run reference."""
    from nb2flow.jupyter.panel import show as _show

    _show(run)


def runs(flow: str | None = None, limit: int = 50) -> Any:
    """A browser of the run history in the store (newest first, optionally of one flow)."""
    from nb2flow.jupyter.panel import runs as _runs

    return _runs(flow=flow, limit=limit)
