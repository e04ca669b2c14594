"""Run logging: ``get_run_logger()`` and the stderr echo (what runs print and other loggers
log is captured by :mod:`nb2flow.runtime.observation.capture`).

Records of the run logger become ``log`` run events carrying the flow run, the task run and
the level; they reach the terminal, the store and the panel like every other event. The
event is built where the code runs (a worker thread, a pool process) and goes through that
run's sink, so logs of a task in another process are forwarded like its states.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from nb2flow.console import printable
from nb2flow.runtime.core import events
from nb2flow.runtime.core.context import RUN, RunContext
from nb2flow.runtime.core.events import RunEvent, subscribe, unsubscribe
from nb2flow.runtime.observation import capture

#: Parent of every run logger (``nb2flow.run.<flow or task name>``). It does not propagate
#: to the root logger: its records reach the console through run events. Add handlers to
#: it to send them elsewhere as well.
ROOT_NAME = "nb2flow.run"


class _EventHandler(logging.Handler):
    """Turns a run logger's records into ``log`` events of the run that logged them."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        ctx: RunContext | None = getattr(record, "nb2flow_ctx", None) or RUN.get()
        if ctx is None:
            return
        try:
            message = self.format(record)
        except Exception:  # noqa: BLE001
            message = str(record.msg)
        ctx.sink(
            events.log(
                ctx.flow_run_id,
                ctx.task_run_id,
                record.levelno,
                message,
                record.name,
                levelname=record.levelname,
                ts=record.created,
            )
        )


_root = logging.getLogger(ROOT_NAME)
if not any(isinstance(h, _EventHandler) for h in _root.handlers):
    _root.addHandler(_EventHandler())
_root.propagate = False
if _root.level == logging.NOTSET:
    _root.setLevel(logging.INFO)


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one flow or task run (the standard ``Logger`` methods)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return msg, kwargs


def get_run_logger() -> RunLogger:
    """The logger of the current flow or task run (Prefect's name).

    Its records become ``log`` run events: shown on the terminal, kept in the store, shown
    in the panel. Raises ``RuntimeError`` outside a flow or task run.
    """
    ctx = RUN.get()
    if ctx is None:
        raise RuntimeError("get_run_logger() can only be called inside a flow or a task run")
    return RunLogger(logging.getLogger(f"{ROOT_NAME}.{ctx.name}"), {"nb2flow_ctx": ctx})


# --------------------------------------------------------------------------------- echo


def format_log(ev: RunEvent, task_name: str | None = None) -> str:
    """``12:00:01 INFO    train | message``; the lines of a multi-line message after the
    first are indented under it."""
    d = ev.data
    stamp = time.strftime("%H:%M:%S", time.localtime(ev.ts))
    where = task_name or (ev.task_run_id or "flow")
    head = f"{stamp} {d.get('levelname', 'INFO'):<7} {where} | "
    message = str(d.get("message", "")).rstrip("\n")
    if "\n" in message:
        message = message.replace("\n", "\n" + " " * len(head))
    return printable(head + message)  # a log may carry escape sequences: never raw to a terminal


#: task run id -> the name its log lines show, for the runs being echoed
_echo_names: dict[str, str] = {}


def echo_to_stderr(ev: RunEvent) -> None:
    """Subscriber printing log events to stderr (when no terminal reporter shows them)."""
    if ev.kind == "task_run" and ev.task_run_id is not None:
        _echo_names[ev.task_run_id] = ev.data.get("task_key") or ev.data.get("task_name", "?")
    elif ev.kind == "log":
        who = _echo_names.get(ev.task_run_id or "", "flow") if ev.task_run_id else "flow"
        # the stream under the capture: a subscriber may run inside a capturing task run
        print(format_log(ev, who), file=capture.underlying(sys.stderr))


_echo_lock = threading.Lock()
_echo_users = 0


def echo(on: bool) -> None:
    """Count one more (``True``) or one fewer (``False``) top-level run wanting log lines on
    stderr; the echo subscriber is there while at least one does."""
    global _echo_users
    with _echo_lock:
        _echo_users += 1 if on else -1
        if on and _echo_users == 1:
            subscribe(echo_to_stderr)
        elif not on and _echo_users == 0:
            unsubscribe(echo_to_stderr)
            _echo_names.clear()
