"""nb2flow: turn a tagged Jupyter notebook into a production flow, and run it.

The public API is imported lazily so that ``import nb2flow`` (and the CLI) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["flow", "task", "get_run_logger", "run_cli", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from nb2flow.runtime.api import flow, get_run_logger, run_cli, task


def __getattr__(name: str) -> Any:
    if name in ("flow", "task", "get_run_logger", "run_cli"):
        from nb2flow.runtime import api

        return getattr(api, name)
    raise AttributeError(f"module 'nb2flow' has no attribute {name!r}")
