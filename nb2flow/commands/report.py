"""``nb2flow report RUN [-o run.html]``: a recorded run as one self-contained HTML page."""

from __future__ import annotations

import argparse

HELP = "write a recorded flow run as one self-contained HTML page (graph, timeline, tasks, logs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run name, run id or a unique prefix of the id")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the page (default: <flow>-<run name>.html here; '-' for stdout)",
    )


def default_name(flow_name: str, run_name: str, run_id: str) -> str:
    """A file name made of the flow and run names, safe on every file system."""
    import re

    stem = "-".join(p for p in (flow_name, run_name or run_id[:8]) if p) or "run"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") + ".html"


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from nb2flow.errors import Nb2flowError
    from nb2flow.jupyter.render import report_html
    from nb2flow.store import db, recording

    recording.replay_pending_for_reading()
    view = db.load_recorded_run(args.run)
    cached = {t.cached_from for t in view.tasks.values() if t.cached_from}
    names: dict[str, str] = {}
    if cached:
        with db.Store(sweep=False) as store:
            names = store.run_names(cached)
    page = report_html(view, names=names)
    if args.output == "-":
        sys.stdout.write(page)
        return 0
    out = Path(args.output or default_name(view.flow_name, view.run_name, view.id))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise Nb2flowError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    print(f"wrote {out} ({len(page.encode()) // 1024 + 1} KiB): run {view.id} {view.state}")
    return 0
