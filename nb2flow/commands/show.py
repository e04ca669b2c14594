"""``nb2flow show RUN``: one recorded flow run: tasks, graph, error, logs."""

from __future__ import annotations

import argparse

HELP = "show one recorded flow run: its tasks, graph, error and logs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run name, run id or a unique prefix of the id")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p.add_argument(
        "--all",
        action="store_true",
        help="list every task, graph node and log line (default: the first 200 of each)",
    )


def run(args: argparse.Namespace) -> int:
    from nb2flow.console import dumps
    from nb2flow.store import db, recording, terminal

    recording.replay_pending_for_reading()
    view = db.load_recorded_run(args.run)
    if args.json:
        print(dumps(terminal.view_to_dict(view), fallback=str, indent=2))
        return 0
    terminal.print_run(view, limit=None if args.all else 200)
    return 0
