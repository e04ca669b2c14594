"""Jupyter integration: the live run panel, ``show(run)``, ``runs()`` and the HTML report.

Importing this package is cheap; ipywidgets is imported when a panel is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["show", "runs", "panel"]


def show(run: Any) -> None:
    """Display the panel of a finished FlowRun, a RunView or a stored run reference."""
    from nb2flow.jupyter.panel import show as _show

    _show(run)


def panel(run: Any) -> Any:
    """The :class:`~nb2flow.jupyter.panel.RunPanel` of a run, not displayed."""
    from nb2flow.jupyter.panel import panel as _panel

    return _panel(run)


def runs(**filters: Any) -> Any:
    """Browse the run history in the store (a widget; ``filters`` go to ``Store.list_runs``)."""
    from nb2flow.jupyter.panel import runs as _runs

    return _runs(**filters)
