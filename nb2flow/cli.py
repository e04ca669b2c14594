"""The ``nb2flow`` command line.

Every sub-command lives in its own module under :mod:`nb2flow.commands`, which defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Those modules import
only the standard library at module level, so ``nb2flow --help`` stays fast; the work (and
the heavy imports) happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from nb2flow import __version__
from nb2flow.errors import Nb2flowError

#: sub-command name -> module under nb2flow.commands, in the order --help lists them
COMMANDS = {
    "convert": "convert",
    "inspect": "inspect",
    "tag": "tag",
    "check": "check",
    "run": "run",
    "runs": "runs",
    "show": "show",
    "report": "report",
    "cache": "cache",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nb2flow",
        description="Turn a tagged Jupyter notebook into a production flow, and run it.",
    )
    parser.add_argument("--version", action="version", version=f"nb2flow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"nb2flow.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except Nb2flowError as exc:
        from nb2flow.console import printable

        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and the like: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
