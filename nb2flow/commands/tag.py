"""``nb2flow tag NB.ipynb``: add or remove cell tags, make literals parameters, or tag a
notebook from its headings.

The edits are :func:`nb2flow.notebook.edit.edit_cells` (shared with the Jupyter extension).
The notebook is written back with nbformat (outputs and metadata kept), atomically, keeping
its mode and group.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

HELP = (
    "add/remove cell tags (--cell 9,10 --add TAG), make a literal a parameter "
    "(--param NAME=VALUE), or tag tasks from headings (--auto)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NB.ipynb")
    p.add_argument(
        "--cell",
        metavar="N",
        help="the cells, counting every cell from 1: 9, 9,10 or 3-5 (with --param: where to "
        "look for the literal; default every code cell)",
    )
    p.add_argument("--add", action="append", default=[], metavar="TAG", help="tag to add")
    p.add_argument("--remove", action="append", default=[], metavar="TAG", help="tag to remove")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="turn the literal VALUE the cells read (a path, a number) into the flow "
        "parameter NAME with that default; repeatable",
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="tag the first cell of each task found by --split (default: headings) with task:NAME",
    )
    p.add_argument(
        "--split",
        choices=("auto", "headings", "cells"),
        default="auto",
        help="with --auto: how to find the tasks (default auto: headings, else cells)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from nb2flow.errors import Nb2flowError
    from nb2flow.notebook.edit import edit_cells, parse_cell_numbers
    from nb2flow.notebook.reader import read_notebook

    editing = bool(args.cell is not None or args.add or args.remove or args.param)
    if args.auto == editing:
        raise Nb2flowError(
            "use either --auto, or --cell N with --add/--remove TAG, or --param NAME=VALUE"
        )
    if not args.auto and not (args.add or args.remove or args.param):
        raise Nb2flowError("give --add TAG, --remove TAG or --param NAME=VALUE with --cell")
    params = []
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise Nb2flowError(f"bad --param {item!r}: expected NAME=VALUE")
        params.append((name.strip(), value))
    nb = read_notebook(args.notebook, strict=True)
    path = nb.path
    check_writable(path)  # before any change is printed
    node = nb.node
    if args.auto:
        changes = auto_tags(nb, args.split)
        for number, tag in changes:
            cell = node.cells[number - 1]
            cell.setdefault("metadata", {}).setdefault("tags", []).append(tag)
        if not changes:
            print("nothing to tag: every task already has a task tag")
            return 0
        lines = [f"cell {number}: + {tag}" for number, tag in changes]
    else:
        cells = parse_cell_numbers(args.cell, len(node.cells), str(path)) if args.cell else []
        edit = edit_cells(
            node, cells=cells, add=args.add, remove=args.remove, params=params, label=str(path)
        )
        for warning in edit.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        node, lines = edit.notebook, edit.changes
    write_notebook(node, path)
    for line in lines:
        print(line)
    return 0


def auto_tags(nb: Any, split: str) -> list[tuple[int, str]]:
    """(cell number, ``task:NAME``) for the first cell of every task not tagged yet."""
    from nb2flow.analysis.cells import prepare
    from nb2flow.analysis.grouping import group

    units, _ = prepare(nb)
    if split == "auto":
        split = "headings" if any(u.heading for u in units) else "cells"
    grouping = group(nb, units, split)
    changes = []
    for task in grouping.tasks:
        first = task.units[0]
        if first.tags.role == "task" or first.tags.role == "parameters":
            continue
        changes.append((first.cell, f"task:{task.name}"))
    return changes


def write_notebook(node: Any, path: Path) -> None:
    """Write with nbformat, atomically (temp file beside ``path``, then rename), keeping the
    file's mode and group; a read-only notebook is not rewritten."""
    import nbformat

    from nb2flow.codegen import atomic_write
    from nb2flow.errors import Nb2flowError

    text = nbformat.writes(node)
    if not text.endswith("\n"):
        text += "\n"
    try:
        before = check_writable(path)
        atomic_write(path.resolve(), text, like=before)
    except OSError as exc:
        raise Nb2flowError(f"{path}: cannot write ({exc.strerror or exc}): not changed") from None


def check_writable(path: Path) -> os.stat_result:
    """Refuse a notebook we may not, or should not, rewrite; its stat otherwise. Root may
    write anything, but a file without any write bit was made read-only on purpose."""
    from nb2flow.errors import Nb2flowError

    st = path.stat()
    mode = f"mode {st.st_mode & 0o777:04o}"
    if not st.st_mode & 0o222:
        raise Nb2flowError(
            f"{path}: is read-only ({mode}): not changed; make it writable (chmod u+w) to tag it"
        )
    if not os.access(path, os.W_OK):
        raise Nb2flowError(f"{path}: you may not write it ({mode}): not changed")
    return st
