"""Output capture: what a task run writes to ``sys.stdout``/``sys.stderr`` (``print`` included)
and the ``logging`` records of libraries it calls become ``log`` events of that task run.

One stream proxy replaces ``sys.stdout`` and one ``sys.stderr``, process-wide, the first time a
capturing run starts in the process (the flow process, a pool worker, a Dask worker). A write
looks up the calling code's run context (a contextvar, so concurrent task runs on threads each
get their own output); code outside capturing runs writes through to the stream that was
there before, unchanged. Text is kept per run and stream until a line ends, so a ``print``
is one record whatever pieces it is written in.

Logging: what a notebook shows of ``logging`` is what stream handlers write to its stdout and
stderr (a library's own handler, ``basicConfig``, or ``logging.lastResort``, which prints
warnings and errors when nothing is configured). A record a handler writes to a proxied stream
inside a capturing run is taken as the record, not as text: its level and logger name are
kept, and it is recorded once however many handlers write it. Records nothing would show
(no handler for their level, or a file handler) are not captured, as the notebook showed
nothing of them. Stream handlers that held the original ``sys.stdout``/``sys.stderr`` when
capture was installed are pointed at the proxies: they print as before outside runs.

A task that prints nothing pays a check of the proxies when it starts and of its context's
output when it ends: its :class:`Output` is only made when it writes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any

from nb2flow.runtime.core.context import RUN

#: the loggers that name captured text
STDOUT, STDERR = "stdout", "stderr"
#: level of captured text (stderr is where warnings and progress go)
_LEVEL = {STDOUT: logging.INFO, STDERR: logging.WARNING}
#: bytes of text and log records one run may capture; the rest is dropped (one warning)
MAX_BYTES = 4 * 1024 * 1024
#: a line longer than this is cut into records of this size
MAX_LINE = 64 * 1024


class Output:
    """The captured output of one run context (a task run, or a flow body): pending partial
    lines per stream, and how much was captured (for :data:`MAX_BYTES`). Made for every
    capturing run, so it costs nothing until something is written."""

    __slots__ = (
        "sink",
        "flow_run_id",
        "task_run_id",
        "pending",
        "used",
        "dropped",
        "artifacts",
        "artifacts_dropped",
    )

    def __init__(self, sink: Any, flow_run_id: str, task_run_id: str | None) -> None:
        self.sink = sink
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        #: stream -> text after its last newline (None until the run writes)
        self.pending: dict[str, str] | None = None
        self.used = 0
        self.dropped = 0
        #: artifacts recorded / dropped over the cap (nb2flow.runtime.observation.artifacts)
        self.artifacts = 0
        self.artifacts_dropped = 0

    def write(self, stream: str, text: str) -> None:
        # a task's own threads may share its context (contextvars.copy_context)
        with _lock:
            pending = self.pending
            if pending is None:
                pending = self.pending = {}
            buf = pending.get(stream, "") + text
            if "\n" not in buf and len(buf) < MAX_LINE:
                pending[stream] = buf
                return
            head, _, tail = buf.rpartition("\n")
            if len(tail) >= MAX_LINE:  # a line too long to wait for its end
                head, tail = buf, ""
            pending[stream] = tail
        self._emit_text(stream, head)

    def flush(self) -> None:
        """Emit what is pending (a last line without its newline) and the drop warnings."""
        if self.pending is None and not self.dropped and not self.artifacts_dropped:
            return  # the common case: the run wrote nothing
        with _lock:
            pending, self.pending = self.pending or {}, None
        for stream, text in pending.items():
            if text:
                self._emit_text(stream, text)
        warnings = []
        if self.dropped:
            warnings.append(
                f"{self.dropped} more bytes of output and log records were not kept (at most "
                f"{MAX_BYTES} bytes per run)"
            )
        if self.artifacts_dropped:
            warnings.append(
                f"{self.artifacts_dropped} more artifacts were not kept (at most "
                f"{self.artifacts} per run)"
            )
        self.dropped = self.artifacts_dropped = 0
        for text in warnings:
            self._event(logging.WARNING, f"output capture: {text}", "nb2flow.capture", time.time())

    def _emit_text(self, stream: str, text: str) -> None:
        # a progress bar redraws its line with \r: keep what the terminal would show
        if "\r" in text:
            text = "\n".join(_last_segment(line) for line in text.split("\n"))
        if not text.strip():
            return
        self._record(_LEVEL[stream], text, stream, time.time())

    def record(self, record: logging.LogRecord) -> None:
        """A logging record, once (several handlers may hand over the same record)."""
        if getattr(record, "_nb2flow_captured", False):
            return
        record._nb2flow_captured = True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            message += "\n" + record.exc_text
        self._record(record.levelno, message, record.name, record.created, record.levelname)

    def _record(
        self, level: int, message: str, logger: str, ts: float, levelname: str | None = None
    ) -> None:
        n = len(message)
        if self.used + n > MAX_BYTES:
            self.dropped += n
            return
        self.used += n
        self._event(level, message, logger, ts, levelname)

    def _event(
        self, level: int, message: str, logger: str, ts: float, levelname: str | None = None
    ) -> None:
        from nb2flow.runtime.core import events

        ev = events.log(
            self.flow_run_id, self.task_run_id, level, message, logger, levelname=levelname, ts=ts
        )
        # what the sink and its subscribers write is not the run's output (and capturing
        # it would loop)
        _emitting.on = True
        try:
            self.sink(ev)
        finally:
            _emitting.on = False


_emitting = threading.local()
_emitting.on = False


_lock = threading.Lock()


def _last_segment(line: str) -> str:
    parts = [p for p in line.split("\r") if p]
    return parts[-1] if parts else ""


#: ``RunContext.output`` of a capturing run that has written nothing yet: its
#: :class:`Output` is made on the first write (a task that prints nothing allocates nothing)
CAPTURING = True


def output_of(ctx: Any) -> Output:
    """The :class:`Output` of a capturing run context, made on first use."""
    out = ctx.output
    if type(out) is Output:
        return out
    with _lock:
        out = ctx.output
        if type(out) is not Output:
            out = ctx.output = Output(ctx.sink, ctx.flow_run_id, ctx.task_run_id)
    return out


def flush(ctx: Any) -> None:
    """At the end of a run: what it left pending (a last line without a newline)."""
    out = ctx.output
    if type(out) is Output:
        out.flush()


# ----------------------------------------------------------------------- the stream proxies


#: the :class:`~nb2flow.runtime.observation.captured.CapturedIO` of the ``capture_output()``
#: block the calling code runs in (``%%capture``), which holds its writes; None: none
HELD: ContextVar[Any] = ContextVar("nb2flow_held_output", default=None)


class CapturingStream:
    """Stands in for ``sys.stdout`` or ``sys.stderr``: inside a capturing run, writes go to
    the run's :class:`Output`; elsewhere to the stream it replaced. Inside a
    ``capture_output()`` block (``%%capture``), they go to the block's buffer instead.
    Everything else (``fileno``, ``isatty``, ``encoding``...) is the replaced stream's."""

    def __init__(self, name: str, original: Any) -> None:
        self._name = name
        self._original = original

    def write(self, text: str) -> int:
        held = HELD.get()
        if held is not None:
            buffer = held.stream(self._name)
            if buffer is not None:
                return buffer.write(text)
        ctx = RUN.get()
        if ctx is None or ctx.output is None or getattr(_emitting, "on", False):
            return self._original.write(text)
        out = ctx.output if type(ctx.output) is Output else output_of(ctx)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        record = _logging_record(sys._getframe(1))
        if record is not None:
            out.record(record)
        else:
            out.write(self._name, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        ctx = RUN.get()
        if ctx is None or ctx.output is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    def __repr__(self) -> str:
        return f"<nb2flow capture of {self._original!r}>"


def _logging_record(frame: Any) -> logging.LogRecord | None:
    """The record being emitted when a write comes from a logging handler (a few frames up:
    ``StreamHandler.emit`` or a stream wrapper it calls)."""
    for _ in range(8):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "emit" and "record" in code.co_varnames:
            record = frame.f_locals.get("record")
            if isinstance(record, logging.LogRecord):
                return record
        frame = frame.f_back
    return None


_install_lock = threading.Lock()


def underlying(stream: Any) -> Any:
    """The stream under a capturing proxy (``stream`` itself otherwise): where nb2flow's own
    console output goes, so it is never captured as a run's output."""
    while type(stream) is CapturingStream:
        stream = stream._original
    return stream


def installed() -> bool:
    return type(sys.stdout) is CapturingStream and type(sys.stderr) is CapturingStream


def ensure_installed() -> None:
    """Put the stream proxies in place (again, if something replaced ``sys.stdout`` or
    ``sys.stderr`` since). Cheap when already done."""
    if type(sys.stdout) is CapturingStream and type(sys.stderr) is CapturingStream:
        return
    with _install_lock:
        replaced = {}
        for name in (STDOUT, STDERR):
            current = getattr(sys, name)
            if type(current) is not CapturingStream and current is not None:
                proxy = CapturingStream(name, current)
                setattr(sys, name, proxy)
                replaced[id(_base(current))] = proxy
        if replaced:
            _repoint_stream_handlers(replaced)


def _base(stream: Any) -> Any:
    """The stream at the bottom of the wrappers around it (ours, rich's live display's)."""
    for _ in range(16):
        inner = getattr(stream, "_original", None) if type(stream) is CapturingStream else None
        inner = inner if inner is not None else getattr(stream, "rich_proxied_file", None)
        if inner is None:
            return stream
        stream = inner
    return stream


def _repoint_stream_handlers(replaced: dict[int, CapturingStream]) -> None:
    """Point the stream handlers that write to the terminal the proxies replace (directly,
    or through an older wrapper) at the proxies: what they print then goes where everything
    else written to stdout/stderr goes (captured in runs, above a live display otherwise)."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if hasattr(lg, "handlers")]
    for lg in loggers:
        for h in list(getattr(lg, "handlers", ())):
            stream = getattr(h, "stream", None)
            proxy = replaced.get(id(_base(stream))) if stream is not None else None
            if isinstance(h, logging.StreamHandler) and proxy is not None and stream is not proxy:
                h.setStream(proxy)
