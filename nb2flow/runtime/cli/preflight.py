"""The first thing a generated script does when run: check its command line.

A notebook's imports and ``setup`` cells can take seconds (pandas, mlflow, xgboost) and
touch files. The converter writes the flow's signature at the top of the script, before
them, and :func:`preflight_cli` answers ``--help`` and bad options from it, so they are
answered at once, and without the notebook's libraries. When the options are fine it
returns; the script's body runs and ``run_cli`` parses them again, with the flow itself.
Imports only the standard library and the parser.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.cli.parser import build_parser


def preflight_cli(
    parameters: Callable[..., Any],
    flow_name: str,
    argv: list[str] | None = None,
    prog: str | None = None,
) -> None:
    """Parse the command line of the flow ``flow_name`` whose parameters are those of the
    function ``parameters`` (the flow's signature, the first line of its docstring as
    docstring): print the help and exit 0 for ``--help``, print the error and exit 2 for a
    bad option, return when the options are fine. ``run_cli`` builds the same parser from
    the same signature, so the help is the same."""
    flow = SimpleNamespace(
        name=flow_name,
        description=inspect.getdoc(parameters),
        fn=parameters,
        signature=inspect.signature(parameters),
    )
    try:
        parser, _ = build_parser(flow, prog)
    except Nb2flowError:
        return  # run_cli reports it, with the flow itself
    parser.parse_args(argv)
