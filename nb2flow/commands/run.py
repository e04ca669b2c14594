"""``nb2flow run SCRIPT.py [flow options]``: import a flow script and run its flow.

The same command line as ``python SCRIPT.py`` (one implementation: ``run_cli``), for
scripts without the ``__main__`` block or holding several flows (pick one with ``--flow``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nb2flow.errors import Nb2flowError, where

if TYPE_CHECKING:  # the command imports the runtime when it runs
    from nb2flow.runtime.api import Flow

HELP = "run the flow of a script (python file), with the flow's own options"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--flow",
        metavar="NAME",
        help="the flow to run when the script defines several (flow name or variable name)",
    )
    p.add_argument("script", help="a Python file defining a @flow (e.g. converted_scripts/x.py)")
    p.add_argument(
        "flow_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="options of the flow and the runtime (see: nb2flow run SCRIPT.py --help)",
    )


def load_flows(path: Path) -> dict[str, Flow]:
    """Execute the script (not as ``__main__``) and return its flows by variable name."""
    import runpy

    from nb2flow.runtime.api import Flow

    if not path.is_file():
        raise Nb2flowError(f"{path}: no such file")
    if path.suffix == ".ipynb":
        raise Nb2flowError(f"{path}: a notebook; convert it first: nb2flow convert {path}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as `python SCRIPT.py` does, for the script's own imports
    try:
        namespace = runpy.run_path(str(path), run_name="__nb2flow_run__")
    except SyntaxError as exc:
        raise Nb2flowError(f"{where(path, line=exc.lineno)}: syntax error: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - the script's own code failed at import
        from nb2flow.runtime.core.tracebacks import error_line

        line = None
        tb = exc.__traceback__
        while tb is not None:  # the deepest frame in the script itself
            if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
                line = tb.tb_lineno
            tb = tb.tb_next
        raise Nb2flowError(
            f"{where(path, line=line)}: the script failed while loading: {error_line(exc)}"
        ) from None
    return {k: v for k, v in namespace.items() if isinstance(v, Flow)}


def pick_flow(flows: dict[str, Flow], name: str | None, path: Path) -> Flow:
    if name is not None:
        for var, fl in flows.items():
            if name in (var, getattr(fl, "name", None)):
                return fl
        known = ", ".join(sorted(getattr(f, "name", v) for v, f in flows.items())) or "none"
        raise Nb2flowError(f"{path}: no flow named {name!r} (flows: {known})")
    distinct = {id(f): f for f in flows.values()}
    if not distinct:
        raise Nb2flowError(f"{path}: defines no @flow function")
    if len(distinct) > 1:
        known = ", ".join(sorted(getattr(f, "name", "?") for f in distinct.values()))
        raise Nb2flowError(f"{path}: defines several flows ({known}); choose one with --flow")
    return next(iter(distinct.values()))


def run(args: argparse.Namespace) -> int:
    from nb2flow.runtime.api import run_cli
    from nb2flow.runtime.cli.folder import cwd_option
    from nb2flow.runtime.cli.run import stdout_to_stderr

    path = Path(args.script)
    argv = list(args.flow_args)
    given = cwd_option(argv)
    if given is not None:
        # --cwd DIR: the script's module level (setup code) runs there too, as the flow does
        path = path.resolve()
        folder = Path(given).resolve()
        argv = _without_cwd(argv) + ["--cwd", str(folder)]
        try:
            os.chdir(folder)
        except OSError as exc:
            raise Nb2flowError(f"--cwd {given}: cannot go there ({exc.strerror})") from None
    # what the script prints as it loads must not come before the JSON either
    with stdout_to_stderr("--json" in argv):
        flows = load_flows(path)
    flow = pick_flow(flows, args.flow, path)
    return run_cli(flow, argv, exit=False, prog=f"nb2flow run {args.script}")


def _without_cwd(argv: list[str]) -> list[str]:
    """``argv`` without its ``--cwd DIR`` / ``--cwd=DIR`` (before any ``--``)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        if word == "--cwd":
            i += 2
            continue
        if not word.startswith("--cwd="):
            out.append(word)
        i += 1
    return out
