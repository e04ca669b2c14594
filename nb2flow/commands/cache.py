"""``nb2flow cache ls|clear``: see stored task results and reclaim their space."""

from __future__ import annotations

import argparse
import re
import time

from nb2flow.errors import Nb2flowError

HELP = "list or clear cached task results (ls | clear [--flow NAME] [--older-than 7d])"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """``7d`` / ``12h`` / ``30m`` / ``45s`` / ``2w`` -> seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise Nb2flowError(
            f"--older-than {text!r}: expected a number and a unit, like 7d, 12h, 30m, 45s or 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["ls", "clear"], help="ls: list entries; clear: delete them")
    p.add_argument("--flow", metavar="NAME", help="only entries stored by this flow")
    p.add_argument("--task", metavar="NAME", help="only entries of this task")
    p.add_argument(
        "--older-than",
        metavar="D",
        type=parse_duration_arg,
        help="only entries created more than D ago (7d, 12h, 30m, 45s, 2w)",
    )
    p.add_argument("--json", action="store_true", help="ls: print JSON lines, one entry each")


def parse_duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except Nb2flowError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(max(seconds, 0))}s ago"


def run(args: argparse.Namespace) -> int:
    from nb2flow.console import dumps, printable
    from nb2flow.runtime.cache import entries

    filters = {"flow": args.flow, "task": args.task, "older_than": args.older_than}
    if args.action == "clear":
        count, freed = entries.clear(**filters)
        print(f"removed {count} cache entr{'y' if count == 1 else 'ies'}, {human_size(freed)}")
        left = entries.left_alone()
        if left:
            print(
                f"left alone {len(left)} folder{'' if len(left) == 1 else 's'} nb2flow cannot "
                f"prove it wrote (damaged, another version's or another account's), e.g. "
                f"{left[0]}: remove {'it' if len(left) == 1 else 'them'} yourself if "
                f"{'it is' if len(left) == 1 else 'they are'} yours to remove"
            )
        return 0
    found = entries.list_entries(**filters)
    if args.json:
        for e in found:
            print(
                dumps(
                    {
                        "key": e.key,
                        "flow": e.flow,
                        "task": e.task,
                        "size": e.size,
                        "created": e.created,
                        "flow_run_id": e.flow_run_id,
                        "expires": e.expires,
                        "path": str(e.path),
                        "proven": e.proven,
                    }
                )
            )
        return 0
    if not found:
        print(f"no cache entries in {entries.results_dir()}")
        return 0
    now = time.time()
    rows = [("KEY", "FLOW", "TASK", "SIZE", "CREATED", "SOURCE RUN")]
    for e in found:
        created = human_age(now - e.created) + (" (expired)" if e.expired else "")
        rows.append(
            (
                e.key[:12],
                printable(e.flow or "-"),
                printable(e.task or ("-" if e.proven else "(not proven)")),
                human_size(e.size),
                created,
                (e.flow_run_id or "-")[:8],  # as the runtime prints run ids
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    total = sum(e.size for e in found)
    print(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}, {human_size(total)}")
    return 0
