"""``nb2flow runs``: list the flow runs recorded in the run store."""

from __future__ import annotations

import argparse

HELP = "list recorded flow runs, most recent first"

#: the largest integer SQLite stores (a larger --limit cannot even be passed to a query)
SQLITE_MAX_INT = 2**63 - 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flow", metavar="NAME", help="only runs of this flow")
    p.add_argument("--state", metavar="STATE", help="only runs in this state (e.g. Failed)")
    p.add_argument("--tag", metavar="TAG", help="only runs with this tag (--tag of the run)")
    p.add_argument(
        "--limit", "-n", type=int, default=20, metavar="N", help="at most N runs (default 20)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from nb2flow.console import dumps
    from nb2flow.errors import Nb2flowError
    from nb2flow.runtime.core.states import ALL_STATES
    from nb2flow.store import db, terminal

    if args.limit is not None and not 1 <= args.limit <= SQLITE_MAX_INT:
        raise Nb2flowError(f"--limit must be from 1 to {SQLITE_MAX_INT}, not {args.limit}")
    state = None
    if args.state is not None:
        by_lower = {s.lower(): s for s in ALL_STATES}
        state = by_lower.get(args.state.lower().replace("_", "").replace("-", ""))
        if state is None:
            raise Nb2flowError(f"--state {args.state!r} is not one of: {', '.join(ALL_STATES)}")
    path = db.default_path()
    if not path.exists():
        if args.json:
            print("[]")
        else:
            print(f"No runs recorded yet ({path} does not exist).")
        return 0
    from nb2flow.store import recording

    recording.replay_pending_for_reading()
    with db.Store(path) as store:
        runs = store.list_runs(flow=args.flow, limit=args.limit, state=state, tag=args.tag)
    if args.json:
        print(dumps([r.to_dict() for r in runs], indent=2))
        return 0
    terminal.print_runs(runs, path)
    return 0
