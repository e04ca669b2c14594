"""``nb2flow convert NB.ipynb``: write the flow script for a notebook."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nb2flow.codegen import Conversion

HELP = "convert a notebook into a flow script (converted_scripts/<name>.py)"

MAX_TASK_LINES = 20
MAX_WARNING_LINES = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebooks", nargs="+", metavar="NB.ipynb", help="notebook(s) to convert")
    p.add_argument(
        "-o",
        "--output-dir",
        default="converted_scripts",
        metavar="DIR",
        help="directory for the scripts (default: converted_scripts)",
    )
    p.add_argument(
        "--split",
        choices=("auto", "tags", "headings", "cells"),
        default="auto",
        help="how to cut the notebook into tasks: by task tags, markdown headings or one "
        "task per code cell (default auto: tags if any, else headings, else cells)",
    )
    p.add_argument(
        "--check-only",
        action="store_true",
        help="convert and check the script compiles, write nothing; exit 1 if the file on "
        "disk is missing or differs",
    )
    p.add_argument("--force", action="store_true", help="overwrite a file nb2flow did not generate")
    p.add_argument("--cache", action="store_true", help="turn on caching for every task")
    p.add_argument(
        "--outputs",
        type=output_names,
        metavar="NAMES",
        help="the variables the flow returns, comma-separated ('' for none); default: the "
        "notebook's output:NAME tags, else the values its last cell showing values shows",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")


def run(args: argparse.Namespace) -> int:
    from nb2flow.codegen import convert_notebook, script_path, write_script
    from nb2flow.errors import Nb2flowError

    targets: dict[object, str] = {}
    for notebook in args.notebooks:
        target = script_path(notebook, args.output_dir).resolve()
        if target in targets and targets[target] != notebook:
            raise Nb2flowError(
                f"{notebook} and {targets[target]} would both be written to "
                f"{script_path(notebook, args.output_dir)}; convert them into different -o DIRs"
            )
        targets[target] = notebook
    status = 0
    for notebook in args.notebooks:
        conversion = convert_notebook(
            notebook,
            split=args.split,
            cache_all=args.cache,
            out_dir=args.output_dir,
            outputs=args.outputs,
        )
        target = script_path(notebook, args.output_dir)
        if args.check_only:
            try:
                current = target.read_text(encoding="utf-8")
            except OSError:
                current = None
            if current == conversion.script:
                verdict = "up to date"
            else:
                verdict = "missing" if current is None else "out of date"
                status = 1
            if not args.quiet or status:
                print(f"{notebook} -> {target}: {verdict} (not written)")
        else:
            written = write_script(conversion, args.output_dir, force=args.force)
            if not args.quiet:
                print(f"{notebook} -> {written}")
        if not args.quiet:
            print(summary(conversion))
        print_warnings(conversion.warnings)
    return status


def output_names(text: str) -> tuple[str, ...]:
    """``--outputs a,b``: variable names (argparse reports a bad one as a usage error)."""
    from nb2flow.notebook.tags import is_variable_name

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not is_variable_name(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a variable name")
    return names


def summary(conversion: Conversion) -> str:
    """A one-screen summary: counts, then one line per task."""
    plan = conversion.plan
    tasks = conversion.tasks
    counts = [
        _plural(len(tasks), "task"),
        _plural(plan.graph.number_of_edges(), "edge"),
        _plural(len(plan.parameters), "parameter"),
        _plural(len(conversion.warnings), "warning"),
    ]
    lines = [f"  {', '.join(counts)} (split: {plan.split})"]
    returned = _names(list(plan.outputs)) if plan.outputs else "nothing"
    lines.append(f"  returns: {returned} ({plan.outputs_rule})")
    width = max((len(t.name) for t in tasks[:MAX_TASK_LINES]), default=0)
    for t in tasks[:MAX_TASK_LINES]:
        line = f"  {t.name:<{width}}  {cells_text(t.cells)}"
        if t.inputs:
            line += "  in: " + _names(t.inputs)
        if t.outputs:
            line += "  out: " + _names(t.outputs)
        lines.append(line)
    if len(tasks) > MAX_TASK_LINES:
        lines.append(f"  ... and {len(tasks) - MAX_TASK_LINES} more (nb2flow inspect lists all)")
    return "\n".join(lines)


def _names(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c, d, e (+3 more)``: whole names only, so the line stays short and true."""
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cells_text(cells: Sequence[int]) -> str:
    if not cells:
        return "no cells"
    if len(cells) == 1:
        return f"cell {cells[0]}"
    if list(cells) == list(range(cells[0], cells[-1] + 1)):
        return f"cells {cells[0]}-{cells[-1]}"
    return "cells " + ",".join(map(str, cells))


def print_warnings(warnings: Sequence[str], limit: int = MAX_WARNING_LINES) -> None:
    for message in warnings[:limit]:
        print(f"warning: {message}", file=sys.stderr)
    if len(warnings) > limit:
        print(
            f"warning: ... and {len(warnings) - limit} more (nb2flow inspect lists all)",
            file=sys.stderr,
        )
