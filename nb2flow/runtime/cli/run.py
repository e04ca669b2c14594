"""``run_cli(flow)``: the command line of every generated script and of ``nb2flow run``.

The options come from :mod:`.parser`. A failed run exits 1 with one ``error:`` line (the
traceback is in the run store), Ctrl-C exits 130, SIGTERM 143, a bad option 2.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from nb2flow import settings
from nb2flow.console import printable
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.cli.parser import build_parser
from nb2flow.runtime.core.exceptions import Terminated


def _jsonable(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()  # numpy scalars
        except Exception:  # noqa: BLE001
            pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _on_sigterm_cancel() -> Any:
    """Make SIGTERM (what schedulers send before SIGKILL) cancel the run like Ctrl-C, so it
    ends Cancelled in the store rather than Crashed. Returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # no signals here (e.g. an embedded interpreter)
        return None


@contextlib.contextmanager
def stdout_to_stderr(on: bool = True) -> Iterator[None]:
    """While on, what is written to stdout goes to stderr: ``sys.stdout`` and file descriptor
    1 (what subprocesses and C libraries write), so that ``--json`` leaves only the JSON on
    stdout, whatever the flow prints."""
    if not on:
        yield
        return
    saved = sys.stdout
    real = None
    try:
        saved.flush()
        fd = saved.fileno()
        real = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
    except (AttributeError, OSError, ValueError):  # no real descriptor (an embedding app)
        fd = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        finally:
            sys.stdout = saved
            if real is not None and fd is not None:
                os.dup2(real, fd)
                os.close(real)


def run_cli(
    flow: Any,
    argv: list[str] | None = None,
    *,
    exit: bool = True,
    prog: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """See :func:`nb2flow.runtime.api.run_cli`. ``cwd``: the folder the flow runs in (the
    process goes back to its own folder afterwards); ``--cwd DIR`` overrides it."""
    from nb2flow.runtime.cli import folder

    given = folder.cwd_option(sys.argv[1:] if argv is None else argv)
    if folder.entered is not None and argv is None:
        target = None  # run_in_folder() already went where this command line says
    elif given is not None:
        target = os.path.abspath(given)
    else:
        target = os.fspath(cwd) if cwd is not None else None
    back = os.getcwd()
    try:
        if target is not None:
            os.chdir(target)
    except OSError as exc:
        print(f"error: cannot run the flow in {target}: {exc.strerror}", file=sys.stderr)
        code = 2
    else:
        try:
            code = _run(flow, argv, prog)
        finally:
            if target is not None:
                os.chdir(back)
    if exit:
        sys.exit(code)
    return code


def _run(flow: Any, argv: list[str] | None, prog: str | None) -> int:
    from nb2flow.runtime.observation import hooks
    from nb2flow.runtime.observation.reporter import TerminalReporter, summary_line

    try:
        parser, dests = build_parser(flow, prog)
    except Nb2flowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ns = parser.parse_args(argv)  # exits 2 with argparse's message on bad options
    params = {name: getattr(ns, dest) for name, dest in dests.items()}
    if ns.nb2flow_no_store:
        flow = flow.with_options(persist=False)
    if ns.nb2flow_task_runner:
        flow = flow.with_options(task_runner=ns.nb2flow_task_runner)
    if ns.nb2flow_tags:
        flow = flow.with_options(tags=[*flow.tags, *ns.nb2flow_tags])
    if ns.nb2flow_no_capture:
        flow = flow.with_options(log_prints=False)
    elif flow.log_prints is None and settings.capture() is not False:
        # the script's output goes to its run record and, readable, to the terminal
        flow = flow.with_options(log_prints=True)
    if ns.nb2flow_quiet:
        mode = "quiet"
    elif sys.stderr.isatty() and sys.stdout.isatty():
        mode = "live"
    else:
        mode = "plain"
    reporter = TerminalReporter(mode)
    hooks.register("terminal", reporter.observe)  # it shows the logs: no stderr echo
    previous = _on_sigterm_cancel()
    try:
        with stdout_to_stderr(ns.nb2flow_json):
            reporter.start()
            try:
                run = flow(**params, return_state=True)
            finally:
                reporter.stop()
    except Terminated:
        print(f"cancelled: flow {flow.name!r} was terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"cancelled: flow {flow.name!r} was interrupted", file=sys.stderr)
        return 130
    except Nb2flowError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        hooks.unregister("terminal")
    if mode != "quiet":
        print(printable(summary_line(run.view)), file=sys.stderr)
    failed = run.state not in ("Completed", "Cached")
    if failed and run.runner_error is not None and run.exc is run.runner_error:
        print(f"error: {printable(run.runner_error)}", file=sys.stderr)  # e.g. no Dask there
        return 2
    if failed:
        where = f"run {run.name}"
        if run.recorded:
            where += f"; details: nb2flow show {run.id[:8]}"
        error = printable(run.error)
        print(f"error: flow {flow.name!r} {run.state}: {error} ({where})", file=sys.stderr)
        return 1
    if ns.nb2flow_json:
        from nb2flow.console import NotJSON, dumps

        try:
            text = dumps(run.value, fallback=_jsonable, indent=2)
        except NotJSON as exc:
            print(f"error: --json: the flow's result has no JSON form: {exc}", file=sys.stderr)
            return 2
        print(text)
    return 0
