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
    "run_in_folder",
    "unmapped",
    "UNSET",
    "preflight_cli",
    "__version__",
]
_API = frozenset(__all__) - {"__version__", "UNSET", "preflight_cli"}

if TYPE_CHECKING:  # pragma: no cover
    from nb2flow.runtime.api import (
        flow,
        get_run_context,
        get_run_logger,
        run_cli,
        run_in_folder,
        task,
        unmapped,
    )
    from nb2flow.runtime.cli.preflight import preflight_cli
    from nb2flow.runtime.core.unset import UNSET


def __getattr__(name: str) -> Any:
    if name in _API:
        from nb2flow.runtime import api

        return getattr(api, name)
    if name == "preflight_cli":  # a script's first check of its options: no engine import
        from nb2flow.runtime.cli.preflight import preflight_cli

        return preflight_cli
    if name == "UNSET":  # what a task returns for a name its code left unbound
        from nb2flow.runtime.core.unset import UNSET

        return UNSET
    raise AttributeError(f"module 'nb2flow' has no attribute {name!r}")


# --------------------------------------------------------------------------- Jupyter hooks
# (plain functions: Jupyter and IPython look them up by name; nothing heavy is imported)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nb2flow``: register the ``%nb2flow`` magics (run, inspect, convert)."""
    from nb2flow.extensions.magics import register

    register(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension answering the JupyterLab/Notebook 7 extension."""
    return [{"module": "nb2flow.extensions.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab 4 / Notebook 7 extension lives in the package."""
    return [{"src": "labextension", "dest": "nb2flow"}]
