"""``nb2flow check``: run the notebook and its generated flow, and compare their values."""

from __future__ import annotations

import argparse

HELP = "run the notebook and its generated flow; check they compute the same values"

#: exit statuses: as pytest's "no tests collected", a check that compared nothing is
#: neither a pass nor a failure
EXIT_PASS, EXIT_FAIL, EXIT_NOTHING_COMPARED, EXIT_TERMINATED = 0, 1, 5, 143


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the notebook (.ipynb) to check")
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter for both runs (a Python literal, else text); repeatable",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds each notebook cell, and the flow as a whole, may take (default 600)",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="NAME",
        help="report but do not compare this value (differs by design: ids, timestamps)",
    )
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    p.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance (default 1e-9)")
    p.add_argument(
        "--kernel", default="python3", metavar="NAME", help="Jupyter kernel (default python3)"
    )
    p.add_argument(
        "--split",
        choices=["auto", "tags", "headings", "cells"],
        default="auto",
        help="how the converter cuts the notebook into tasks (as nb2flow convert; default auto)",
    )
    p.add_argument(
        "--repeat-notebook",
        choices=["auto", "always", "never"],
        default="auto",
        help="run the notebook a second time to tell values it does not itself compute the "
        "same twice (reported 'nondeterministic in the notebook', not failing): when values "
        "differ (auto, the default), for every value (always), or never",
    )
    p.add_argument(
        "--parallel",
        action="store_true",
        help="run the notebook and the flow at the same time (faster; not for notebooks "
        "whose runs write the same files, such as a new SQLite database)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import math
    import sys

    from nb2flow.check import check_notebook, parse_parameters
    from nb2flow.check.compare import Tolerance
    from nb2flow.check.processes import Terminated
    from nb2flow.errors import Nb2flowError

    if not 0 < args.timeout < math.inf:
        raise Nb2flowError(f"--timeout must be more than 0 seconds, not {args.timeout:g}")
    for option, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if not 0 <= value < math.inf:
            raise Nb2flowError(f"{option} must be a finite number, 0 or more, not {value:g}")
    try:
        report = check_notebook(
            args.notebook,
            parse_parameters(args.parameter),
            timeout=args.timeout,
            kernel_name=args.kernel,
            ignore=args.ignore,
            tol=Tolerance(rtol=args.rtol, atol=args.atol),
            split=args.split,
            repeat_notebook=args.repeat_notebook,
            parallel=args.parallel,
        )
    except Terminated:
        print("terminated: the notebook and the flow were stopped", file=sys.stderr)
        return EXIT_TERMINATED
    if args.json:
        from nb2flow.console import dumps

        print(dumps(report.to_json(), fallback=str, indent=2))
    else:
        from nb2flow.check.report import print_report

        print_report(report)
    if report.verdict == "nothing compared":
        return EXIT_NOTHING_COMPARED
    return EXIT_PASS if report.ok else EXIT_FAIL
