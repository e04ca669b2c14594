"""``nb2flow tag NB.ipynb``: add or remove cell tags, or tag a notebook from its headings.

The notebook is written back with nbformat (outputs and metadata kept), atomically.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

HELP = "add/remove cell tags (--cell N --add TAG), or tag tasks from headings (--auto)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NB.ipynb")
    p.add_argument("--cell", type=int, metavar="N", help="the cell, counting every cell from 1")
    p.add_argument("--add", action="append", default=[], metavar="TAG", help="tag to add")
    p.add_argument("--remove", action="append", default=[], metavar="TAG", help="tag to remove")
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
    from nb2flow.errors import Nb2flowError, where
    from nb2flow.notebook.reader import read_notebook
    from nb2flow.notebook.tags import is_known_tag, parse_tags

    if args.auto == bool(args.cell is not None or args.add or args.remove):
        raise Nb2flowError("use either --auto, or --cell N with --add/--remove TAG")
    nb = read_notebook(args.notebook, strict=True)
    path = nb.path
    check_writable(path)  # before any change is printed
    node = nb.node
    if args.auto:
        changes = auto_tags(nb, args.split)
        for number, tag in changes:
            cell = node.cells[number - 1]
            cell.setdefault("metadata", {}).setdefault("tags", []).append(tag)
            print(f"cell {number}: + {tag}")
        if not changes:
            print("nothing to tag: every task already has a task tag")
            return 0
    else:
        if args.cell is None or not (args.add or args.remove):
            raise Nb2flowError("give --cell N and at least one --add TAG or --remove TAG")
        if not 1 <= args.cell <= len(node.cells):
            raise Nb2flowError(
                f"{path}: no cell {args.cell} (the notebook has {len(node.cells)} cells, "
                "counted from 1)"
            )
        cell = node.cells[args.cell - 1]
        tags: list[str] = list(cell.get("metadata", {}).get("tags", []))
        loc = where(path, args.cell)
        for tag in args.add:
            if not tag.strip() or tag != tag.strip() or "\n" in tag:
                raise Nb2flowError(f"{loc}: malformed tag {tag!r}")
            parse_tags([tag], loc)  # raises on a malformed option
            if not is_known_tag(tag):
                print(f"warning: {loc}: {tag!r} is not an nb2flow tag (added anyway)")
            if tag not in tags:
                tags.append(tag)
        for tag in args.remove:
            if tag not in tags:
                print(f"warning: {loc}: no tag {tag!r} to remove")
            tags = [t for t in tags if t != tag]
        parse_tags(tags, loc)  # the result must make sense as a whole (one role)
        cell.setdefault("metadata", {})["tags"] = tags
        if not tags:
            del cell["metadata"]["tags"]
        print(f"cell {args.cell}: tags {', '.join(tags) if tags else '(none)'}")
    write_notebook(node, path)
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
