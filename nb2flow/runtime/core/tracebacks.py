"""How an error is told: one ``Type: message`` line, and the traceback without the engine's
own frames."""

from __future__ import annotations

#: files whose frames start a task's traceback without telling the user anything (the
#: engine modules that call user code add themselves)
INTERNAL_FILES: set[str] = set()


def error_line(exc: BaseException) -> str:
    """``Type: message`` on one line (at most 500 characters)."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 500 else line[:497] + "..."


def format_traceback(exc: BaseException) -> str:
    """The traceback text, without the engine's own frames at the top (a traceback sent
    from another process, kept as ``exc._nb2flow_traceback``, as it came)."""
    remote = getattr(exc, "_nb2flow_traceback", None)
    if remote:
        return str(remote)
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in INTERNAL_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
