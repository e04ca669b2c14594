"""How an error is told: one ``Type: message`` line, and the traceback in the user's terms.

The user's terms: no frame of nb2flow's own code (the engine, the runners, the API between
the user's flow and task code), and a frame in a script nb2flow generated says which
notebook cell and line it comes from, read from the source map the converter writes at the
end of the script (:mod:`nb2flow.generated`)::

      File "notebooks/taxi.ipynb", cell 14, line 20, in train_model (converted_scripts/taxi.py:147)
        booster = xgb.train(

The same rules apply to the traceback recorded with a failed run and to the exception the
flow raises into the caller (Jupyter shows it): :func:`for_the_user` strips nb2flow's frames
from it and adds a note naming the notebook cell.
"""

from __future__ import annotations

import os
import traceback
from types import CodeType, TracebackType
from typing import Any

#: files whose frames are not the user's beyond nb2flow's own package (none by default;
#: kept for code that calls user code from elsewhere)
INTERNAL_FILES: set[str] = set()

_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def error_line(exc: BaseException) -> str:
    """``Type: message`` on one line (at most 500 characters)."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 500 else line[:497] + "..."


def is_internal(filename: str) -> bool:
    """Whether a frame of ``filename`` is nb2flow's own code."""
    return filename.startswith(_PACKAGE) or filename in INTERNAL_FILES


# -- where a line of a generated script comes from -------------------------------------------

_maps: dict[str, tuple[float, Any]] = {}


def notebook_location(filename: str, lineno: int | None) -> tuple[str, int, int] | None:
    """(notebook, cell, line) of line ``lineno`` of ``filename`` when it is a script nb2flow
    generated from a notebook and the line is the notebook's code; else None."""
    if lineno is None or not filename.endswith(".py"):
        return None
    try:
        mtime = os.stat(filename).st_mtime
    except OSError:
        return None
    cached = _maps.get(filename)
    if cached is None or cached[0] != mtime:
        cached = (mtime, _read_map(filename))
        _maps[filename] = cached
    found = cached[1]
    if found is None:
        return None
    from nb2flow.generated import locate

    notebook, entries = found
    where = locate(entries, lineno)
    return None if where is None else (notebook, where[0], where[1])


def _read_map(filename: str) -> Any:
    from nb2flow.generated import MARKER, parse_source_map

    try:
        with open(filename, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not any(line.strip() == MARKER for line in lines[:60]):
        return None
    return parse_source_map(lines)


def _shown_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


class _UserStack(traceback.StackSummary):
    """Frames as the user knows them: a generated script's frame names its notebook cell."""

    def format_frame_summary(self, frame: traceback.FrameSummary) -> str:
        text = super().format_frame_summary(frame)
        where = notebook_location(frame.filename, frame.lineno)
        if where is None:
            return text
        notebook, cell, line = where
        first, _, rest = text.partition("\n")
        return (
            f'  File "{notebook}", cell {cell}, line {line}, in {frame.name} '
            f"({_shown_path(frame.filename)}:{frame.lineno})\n{rest}"
        )


def _user_stack(stack: traceback.StackSummary) -> _UserStack:
    mine = [f for f in stack if not is_internal(f.filename)]
    out = _UserStack()  # (StackSummary.from_list makes a plain StackSummary)
    out.extend(mine if mine else stack)
    return out


def _in_user_terms(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = _user_stack(te.stack)
    for other in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if other is not None:
            _in_user_terms(other, seen)


def format_traceback(exc: BaseException) -> str:
    """The traceback text in the user's terms (a traceback sent from another process, kept
    as ``exc._nb2flow_traceback``, as it came)."""
    remote = getattr(exc, "_nb2flow_traceback", None)
    if remote:
        return str(remote)
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    _in_user_terms(te, set())
    return "".join(te.format())


# -- the exception a flow raises into its caller ---------------------------------------------


def _strip(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without nb2flow's frames (unchanged when they are all it has)."""
    kept = []
    t = tb
    while t is not None:
        if not is_internal(t.tb_frame.f_code.co_filename):
            kept.append(t)
        t = t.tb_next
    if not kept or len(kept) == _length(tb):
        return tb
    out = None
    for t in reversed(kept):
        out = TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _length(tb: TracebackType | None) -> int:
    n = 0
    while tb is not None:
        n += 1
        tb = tb.tb_next
    return n


def for_the_user(exc: BaseException) -> BaseException:
    """``exc`` (and the exceptions it chains) without nb2flow's frames in its traceback, and
    with a note naming the notebook cell its deepest generated-script frame comes from;
    returned for ``raise``. Done once per exception."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if not getattr(e, "_nb2flow_user_terms", False):
            e.__traceback__ = _strip(e.__traceback__)
            _note_cell(e)
            try:
                e._nb2flow_user_terms = True  # type: ignore[attr-defined]
            except AttributeError:  # an exception type with __slots__
                pass
        todo += [e.__cause__, e.__context__]
    return exc


def cell_of(exc: BaseException) -> tuple[tuple[str, int, int], str] | None:
    """((notebook, cell, line), function) of the deepest frame of ``exc``'s traceback that is
    a generated script's line from a notebook cell, or None."""
    where = None
    t = exc.__traceback__
    while t is not None:
        found = notebook_location(t.tb_frame.f_code.co_filename, t.tb_lineno)
        if found is not None:
            where = (found, t.tb_frame.f_code.co_name)
        t = t.tb_next
    return where


def _note_cell(exc: BaseException) -> None:
    where = cell_of(exc)
    if where is None:
        return
    (notebook, cell, line), name = where
    try:
        exc.add_note(f"in {notebook}, cell {cell}, line {line} ({name})")
    except (AttributeError, TypeError):
        pass


# -- functions pickled by value keep their file name ------------------------------------------

#: the file name cloudpickle gives the code of a function it pickles by value (a script's
#: ``__main__`` functions sent to a pool or Dask worker)
_PICKLED_CODE = "<dynamic-code>"


def code_file(fn: Any) -> str | None:
    """The absolute file name of ``fn``'s code, to send with ``fn`` when it may be pickled by
    value (cloudpickle drops it: :func:`restore_code_file` puts it back), or None."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_filename.startswith("<"):
        return None
    return os.path.abspath(code.co_filename)


def restore_code_file(fn: Any, filename: str | None) -> None:
    """Give ``fn``'s code (and the code nested in it), when cloudpickle rebuilt it by value,
    back the file name it had where it was pickled: its frames in a worker's tracebacks then
    name their file and line, and a generated script's their notebook cell, as in the flow
    process."""
    if filename is None or not _rebuilt(fn):
        return
    _set_file(fn, filename)
    # the module's other functions it calls came with it (in its globals), rebuilt alike
    module = getattr(fn, "__module__", None)
    for value in list(getattr(fn, "__globals__", {}).values()):
        if _rebuilt(value) and getattr(value, "__module__", None) == module:
            _set_file(value, filename)


def _rebuilt(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    return isinstance(code, CodeType) and code.co_filename == _PICKLED_CODE


def _set_file(fn: Any, filename: str) -> None:
    try:
        fn.__code__ = _with_file(fn.__code__, filename)
    except (AttributeError, TypeError, ValueError):  # a read-only wrapper
        pass


def _with_file(code: CodeType, filename: str) -> CodeType:
    consts = tuple(
        _with_file(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)
