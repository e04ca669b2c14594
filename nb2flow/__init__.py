"""nb2flow: turn a tagged Jupyter notebook into a production flow, and run it.

The public API is imported lazily so that ``import nb2flow`` (and the CLI) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "flow",
    "task",
    "get_run_logger",
    "get_run_context",
    "run_cli",
    "unmapped",
    "UNSET",
    "__version__",
]
_API = frozenset(__all__) - {"__version__", "UNSET"}

if TYPE_CHECKING:  # pragma: no cover
    from nb2flow.runtime.api import (
        flow,
        get_run_context,
        get_run_logger,
        run_cli,
        task,
        unmapped,
    )
    from nb2flow.runtime.core.unset import UNSET


def __getattr__(name: str) -> Any:
    if name in _API:
        from nb2flow.runtime import api

        return getattr(api, name)
    if name == "UNSET":  # what a task returns for a name its code left unbound
        from nb2flow.runtime.core.unset import UNSET

        return UNSET
    raise AttributeError(f"module 'nb2flow' has no attribute {name!r}")
